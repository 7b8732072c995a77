package scanner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aquasecurity/trivy/pkg/report"
	"github.com/aquasecurity/trivy/pkg/report/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/report/spdx"
	"github.com/aquasecurity/trivy/pkg/types"
)

// Report formats WriteReport knows.
const (
	FormatJSON      = "json"      // Trivy's JSON report schema
	FormatSARIF     = "sarif"     // SARIF 2.1.0, as GitHub code scanning takes it
	FormatCycloneDX = "cyclonedx" // CycloneDX SBOM of the packages found
	FormatSPDX      = "spdx"      // SPDX 2.3 JSON SBOM of the packages found
)

// WriteReport writes a scan report in one of Trivy's formats with Trivy's own writers.
func WriteReport(ctx context.Context, w io.Writer, format string, r types.Report) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatSARIF:
		return (&report.SarifWriter{Output: w, Version: "goldproxy", Target: r.ArtifactName}).Write(ctx, r)
	case FormatCycloneDX:
		return cyclonedx.NewWriter(w, "goldproxy").Write(ctx, r)
	case FormatSPDX:
		return spdx.NewWriter(w, "goldproxy", types.FormatSPDXJSON).Write(ctx, r)
	}
	return fmt.Errorf("unknown report format %q (json, sarif, cyclonedx, spdx)", format)
}

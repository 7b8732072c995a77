package scanner

import (
	"context"
	"fmt"

	asbom "github.com/aquasecurity/trivy/pkg/fanal/artifact/sbom"
)

// ScanSBOM detects vulnerabilities in the packages an SBOM file lists — CycloneDX or
// SPDX (JSON, or wrapped in a cosign/in-toto attestation), as `cosign download sbom`
// writes it — with the same DB, detectors and options as Scan. Trivy's SBOM artifact
// decodes it; nothing is read but the file. The result has no executables: an SBOM
// lists packages, not files.
func (s *Scanner) ScanSBOM(ctx context.Context, path string) (*Result, error) {
	java, releaseJava := s.db.acquireJava()
	defer releaseJava()
	opt := artifactOption(java)
	inner, err := asbom.NewArtifact(path, s.cache, opt)
	if err != nil {
		return nil, fmt.Errorf("scanner: sbom %s: %w", path, err)
	}
	inspected, err := inner.Inspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("scanner: sbom %s: %w", path, err)
	}
	res, err := s.detect(ctx, inner, inspected, java, opt)
	if err != nil {
		return nil, fmt.Errorf("scanner: sbom %s: %w", path, err)
	}
	return res, nil
}

package cli

import (
	"encoding/json"
	"fmt"

	"github.com/aquasecurity/trivy/pkg/types"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/scanner"
)

// The conversion below is where Trivy's report becomes policy input for the commands in
// this package. cmd/goldproxy's gate.go (the proxy's adapter) still holds its own copy
// of these functions; it should call these instead once it can be edited, so the proxy
// and the CLI cannot judge one report differently.

// ToScanResult is the proxy's and the policy's view of a Trivy scan.
func ToScanResult(res *scanner.Result) (*gate.ScanResult, error) {
	report, err := json.Marshal(res.Report)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	key, err := json.Marshal(res.Key)
	if err != nil {
		return nil, err
	}
	out := &gate.ScanResult{
		Key:             key,
		OS:              osName(res.Report),
		Vulnerabilities: vulnerabilities(res.Report),
		OSPackages:      osPackages(res.Report),
		Executables:     res.Executables,
		UnanalysedJARs:  res.UnanalysedJARs,
		Report:          report,
		DBVersion:       res.DB.ID(),
	}
	if os := res.Report.Metadata.OS; os != nil {
		out.EOSL = os.Eosl
	}
	cfg := res.Report.Metadata.ImageConfig
	out.User, out.Created = cfg.Config.User, cfg.Created.Time
	return out, nil
}

// PolicyInput is the policy's view of a scan of repo, pulled by tag (or by digest when
// tag is "").
func PolicyInput(res *gate.ScanResult, repo, tag, digest string) policy.Input {
	return policy.Input{Repository: repo, Tag: tag, Digest: digest, OS: res.OS, EOSL: res.EOSL, Vulnerabilities: res.Vulnerabilities,
		User: res.User, Created: res.Created, OSPackages: res.OSPackages, Executables: res.Executables, UnanalysedJARs: res.UnanalysedJARs}
}

func osPackages(r types.Report) int {
	n := 0
	for _, res := range r.Results {
		if res.Class == types.ClassOSPkg {
			n += len(res.Packages)
		}
	}
	return n
}

func osName(r types.Report) string {
	if r.Metadata.OS == nil {
		return ""
	}
	return string(r.Metadata.OS.Family) + " " + r.Metadata.OS.Name
}

func vulnerabilities(r types.Report) []policy.Vulnerability {
	var out []policy.Vulnerability
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			out = append(out, policy.Vulnerability{
				ID:               v.VulnerabilityID,
				Package:          v.PkgName,
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
				Severity:         v.Severity,
				Title:            v.Title,
				Target:           res.Target,
			})
		}
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/scanner"
)

// trivyGate adapts the Trivy scanner to the proxy's Scanner: the one place where Trivy's
// report becomes policy input, so neither package knows the other.
type trivyGate struct{ s *scanner.Scanner }

func (g trivyGate) Scan(ctx context.Context, img v1.Image, ref string) (*proxy.ScanResult, error) {
	res, err := g.s.Scan(ctx, img, ref)
	if err != nil {
		return nil, err
	}
	return toScanResult(res)
}

// Ready reports whether a DB is loaded.
func (g trivyGate) Ready() error { return g.s.Ready() }

func toScanResult(res *scanner.Result) (*proxy.ScanResult, error) {
	report, err := json.Marshal(res.Report)
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return &proxy.ScanResult{
		OS:              osName(res.Report),
		Vulnerabilities: vulnerabilities(res.Report),
		Report:          report,
		DBVersion:       res.DB.ID(),
	}, nil
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

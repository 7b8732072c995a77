package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/scanner"
)

// trivyGate adapts the Trivy scanner to the proxy's Scanner: the one place where Trivy's
// report becomes policy input, so neither package knows the other.
type trivyGate struct{ s *scanner.Scanner }

func (g trivyGate) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	res, err := g.s.Scan(ctx, img, ref)
	if err != nil {
		return nil, err
	}
	return toScanResult(res)
}

// Ready reports whether a DB is loaded.
func (g trivyGate) Ready() error { return g.s.Ready() }

// DBVersion names the loaded DB: facts made with another are detected again.
func (g trivyGate) DBVersion() (string, error) {
	info, err := g.s.DB().Info()
	if err != nil {
		return "", err
	}
	return info.ID(), nil
}

// Redetect detects vulnerabilities again from the stored layer analysis.
func (g trivyGate) Redetect(ctx context.Context, key, report json.RawMessage) (*gate.ScanResult, error) {
	var k scanner.Key
	if err := json.Unmarshal(key, &k); err != nil {
		return nil, fmt.Errorf("scan key: %w", err)
	}
	var old types.Report
	if err := json.Unmarshal(report, &old); err != nil {
		return nil, fmt.Errorf("stored report: %w", err)
	}
	res, err := g.s.Redetect(ctx, k, old)
	if err != nil {
		return nil, err
	}
	return toScanResult(res)
}

// DBStatus describes the loaded vulnerability DB for /api/v1/db.
func (g trivyGate) DBStatus() (any, error) {
	info, err := g.s.DB().Info()
	if err != nil {
		return nil, err
	}
	return dbStatus(info), nil
}

func dbStatus(info scanner.DBInfo) map[string]any {
	return map[string]any{
		"schemaVersion": info.Version,
		"updatedAt":     info.UpdatedAt,
		"age":           time.Since(info.UpdatedAt).Round(time.Second).String(),
		"ageSeconds":    int64(time.Since(info.UpdatedAt).Seconds()),
		"source":        info.Source,
		"dir":           info.Dir,
		"version":       info.ID(),
	}
}

func toScanResult(res *scanner.Result) (*gate.ScanResult, error) {
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

// policyInput is the policy's view of a scan.
func policyInput(res *gate.ScanResult, repo, tag, digest string) policy.Input {
	return policy.Input{Repository: repo, Tag: tag, Digest: digest, OS: res.OS, EOSL: res.EOSL, Vulnerabilities: res.Vulnerabilities,
		User: res.User, Created: res.Created, OSPackages: res.OSPackages, Executables: res.Executables}
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

// Forget drops the cached analysis of evicted images.
func (g trivyGate) Forget(ctx context.Context, gone, kept []json.RawMessage, layers []string) error {
	keys := func(raw []json.RawMessage) []scanner.Key {
		out := make([]scanner.Key, 0, len(raw))
		for _, r := range raw {
			var k scanner.Key
			if json.Unmarshal(r, &k) == nil {
				out = append(out, k)
			}
		}
		return out
	}
	if err := g.s.Forget(ctx, keys(gone), keys(kept)); err != nil {
		return err
	}
	return g.s.ForgetLayers(layers)
}

// FormatReport renders a stored Trivy report with Trivy's writers (sarif, cyclonedx).
func (g trivyGate) FormatReport(ctx context.Context, w io.Writer, format string, report json.RawMessage) error {
	var r types.Report
	if err := json.Unmarshal(report, &r); err != nil {
		return fmt.Errorf("stored report: %w", err)
	}
	return scanner.WriteReport(ctx, w, format, r)
}

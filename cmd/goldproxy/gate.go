package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aquasecurity/trivy/pkg/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
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
	return cli.ToScanResult(res)
}

// Ready reports whether a DB is loaded.
func (g trivyGate) Ready() error { return g.s.Ready() }

// NeedsAnalysis reports whether a stored analysis is not what a scan would make now.
func (g trivyGate) NeedsAnalysis(key json.RawMessage) bool {
	var k scanner.Key
	if json.Unmarshal(key, &k) != nil {
		return true
	}
	return g.s.NeedsAnalysis(k)
}

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
	return cli.ToScanResult(res)
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

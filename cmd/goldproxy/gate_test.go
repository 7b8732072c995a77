package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// gated is a goldproxy with the real Trivy scanner in front of a test upstream.
type gated struct {
	up  *proxytest.Upstream
	app *app
	url string
}

func startGated(t *testing.T, cfg *config.Config, up *proxytest.Upstream, loadDB bool) *gated {
	t.Helper()
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	if loadDB {
		if err := a.dbs.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(a.srv)
	t.Cleanup(srv.Close)
	return &gated{up: up, app: a, url: srv.URL}
}

func (g *gated) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(g.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// pull pulls an image through the proxy with go-containerregistry, reading every layer.
func (g *gated) pull(t *testing.T, ref string) error {
	t.Helper()
	return proxytest.PullAll(strings.TrimPrefix(g.url, "http://"), ref)
}

func testImages(t *testing.T, up *proxytest.Upstream) map[string]v1.Hash {
	return map[string]v1.Hash{
		"alpine-vuln":  up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true)),
		"alpine-fixed": up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false)),
		"debian":       up.Push(t, "team/debian:12", scannertest.DebianImage(t, false)),
		"distroless":   up.Push(t, "team/distroless:12", scannertest.DebianImage(t, true)),
		"goapp":        up.Push(t, "team/goapp:1", scannertest.GoBinaryImage(t)),
	}
}

func TestTrivyGateThroughProxy(t *testing.T) {
	up := proxytest.NewUpstream(t)
	digests := testImages(t, up)
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	g := startGated(t, cfg, up, true)

	for _, tc := range []struct {
		name, path string
		want, not  []string
	}{
		{"alpine apk", "/team/alpine/manifests/vuln",
			[]string{"CVE-2024-5535 in libcrypto3 3.1.4-r2 → 3.1.6-r0 (CRITICAL)", "CVE-2024-6119 in libssl3 3.1.4-r2 → 3.1.7-r0 (HIGH)", "/api/v1/images/" + digests["alpine-vuln"].String() + "/report"},
			[]string{"CVE-2024-0727", "CVE-2023-42363"}},
		{"debian dpkg", "/team/debian/manifests/12", []string{"CVE-2023-4911 in libc6 2.36-9+deb12u1 → 2.36-9+deb12u3 (HIGH)", "CVE-2024-6119 in libssl3"}, nil},
		{"distroless status.d", "/team/distroless/manifests/12", []string{"CVE-2023-4911 in libc6"}, nil},
		{"go binary", "/team/goapp/manifests/1", []string{"CVE-2021-38561 in golang.org/x/text v0.3.6 → 0.3.7 (HIGH)", "CVE-2022-32149"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := g.get(t, "/v2/"+up.Name+tc.path)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"DENIED"`) {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var env struct{ Errors []struct{ Message string } }
			_ = json.Unmarshal([]byte(body), &env)
			msg := env.Errors[0].Message
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("denial lacks %q:\n%s", w, msg)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n) {
					t.Errorf("denial cites %q, which the default policy does not deny on:\n%s", n, msg)
				}
			}
		})
	}
	if err := g.pull(t, up.Name+"/team/alpine:fixed"); err != nil {
		t.Fatalf("clean image: %v", err)
	}
	scans := g.app.srv.Scans()
	if scans != 5 {
		t.Fatalf("%d scans, want 5", scans)
	}
	// The same digests again: answered from the verdict cache, no scan.
	if err := g.pull(t, up.Name+"/team/alpine@"+digests["alpine-fixed"].String()); err != nil {
		t.Fatal(err)
	}
	if resp, _ := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/"+digests["alpine-vuln"].String()); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cached verdict: %d", resp.StatusCode)
	}
	if n := g.app.srv.Scans(); n != scans {
		t.Fatalf("repeat pulls ran %d more scans", n-scans)
	}
	// The stored report is Trivy's JSON report.
	resp, body := g.get(t, "/api/v1/images/"+digests["alpine-vuln"].String()+"/report")
	var report struct {
		SchemaVersion int
		ArtifactName  string
		Results       []struct {
			Vulnerabilities []struct{ VulnerabilityID string }
		}
	}
	if err := json.Unmarshal([]byte(body), &report); err != nil || resp.StatusCode != 200 || report.SchemaVersion != 2 || len(report.Results) == 0 {
		t.Fatalf("report: %d %v %.200s", resp.StatusCode, err, body)
	}
	if resp, body := g.get(t, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz with a DB: %d %s", resp.StatusCode, body)
	}
}

func TestNoDBDeniesEverything(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false))
	cfg := proxytest.Config(t, up)
	cfg.DB.Repository = up.Name + "/aquasecurity/trivy-db:2" // not there
	g := startGated(t, cfg, up, false)
	if err := g.app.dbs.Load(context.Background()); err == nil {
		t.Fatal("loadDB found a DB that does not exist")
	}
	resp, body := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/fixed")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no usable vulnerability DB") {
		t.Fatalf("without a DB: %d %s", resp.StatusCode, body)
	}
	resp, body = g.get(t, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "vulnerability DB") {
		t.Fatalf("readyz without a DB: %d %s", resp.StatusCode, body)
	}
}

func TestDBFetchedThroughUpstream(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	up.Push(t, "team/java:1", scannertest.JavaImage(t))
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Now())
	up.Push(t, "aquasecurity/trivy-db:2", scannertest.DBArtifact(t, dbDir))
	javaDir := t.TempDir()
	scannertest.BuildJavaDB(t, javaDir)
	up.Push(t, "aquasecurity/trivy-java-db:1", scannertest.JavaDBArtifact(t, javaDir))
	cfg := proxytest.Config(t, up)
	cfg.DB.Repository = up.Name + "/aquasecurity/trivy-db:2"
	cfg.DB.JavaRepository = up.Name + "/aquasecurity/trivy-java-db:1"
	g := startGated(t, cfg, up, true)
	if resp, body := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/vuln"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CVE-2024-5535") {
		t.Fatalf("with a fetched DB: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.get(t, "/v2/"+up.Name+"/team/java/manifests/1"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CVE-2021-44228 in org.apache.logging.log4j:log4j-core 2.14.1 → 2.15.0, 2.12.2, 2.3.1 (CRITICAL)") {
		t.Fatalf("a JAR with the fetched Java DB: %d %s", resp.StatusCode, body)
	}
	// A restart uses the downloaded DB without fetching again.
	up.ResetCounts()
	g.app.Close()
	a2, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if err := a2.dbs.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := up.Total(); n != 0 {
		t.Fatalf("restart fetched the DB again (%d upstream requests)", n)
	}
}

func TestScanCommandFromRegistry(t *testing.T) {
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Now())
	cfg, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir, cfg.DB.Dir = t.TempDir(), dbDir
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/debian:12", scannertest.DebianImage(t, false))
	var stdout strings.Builder
	err = cli.RunScan(context.Background(), &stdout, cfg, cli.ScanOptions{Image: up.Host + "/team/debian:12", OutDir: t.TempDir(), Insecure: true})
	var ee *exitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(stdout.String(), "HIGH: 2 (2 fixable)") {
		t.Fatalf("scan --image: %v\n%s", err, stdout.String())
	}
}

func TestScanCommand(t *testing.T) {
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Now())
	cfg, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DB.Dir = dbDir
	for _, tc := range []struct {
		name     string
		vuln     bool
		wantCode int
	}{{"vulnerable", true, 1}, {"fixed", false, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			tarPath := filepath.Join(t.TempDir(), "image.tar")
			ref, _ := name.ParseReference("example.com/team/alpine:1")
			if err := tarball.WriteToFile(tarPath, ref, scannertest.AlpineImage(t, tc.vuln)); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			var stdout strings.Builder
			err := cli.RunScan(context.Background(), &stdout, cfg, cli.ScanOptions{Input: tarPath, OutDir: out})
			code := 0
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.Code
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %v\n%s", code, tc.wantCode, err, stdout.String())
			}
			js, err := os.ReadFile(filepath.Join(out, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			md, _ := os.ReadFile(filepath.Join(out, "report.md"))
			has := strings.Contains(string(js), "CVE-2024-6119")
			if has != tc.vuln || strings.Contains(string(md), "CVE-2024-6119") != tc.vuln {
				t.Fatalf("reports mention CVE-2024-6119: %v, want %v", has, tc.vuln)
			}
			if !strings.Contains(stdout.String(), "CRITICAL: ") || !strings.Contains(stdout.String(), "alpine 3.19.1") {
				t.Fatalf("summary: %s", stdout.String())
			}
		})
	}
}

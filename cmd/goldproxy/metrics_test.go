package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// requireTool finds a command, skipping when absent unless GOLDPROXY_E2E=1 (CI).
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if os.Getenv("GOLDPROXY_E2E") == "1" {
		t.Fatalf("GOLDPROXY_E2E=1 but %s is not installed (.ci/setup installs it)", tool)
	}
	t.Skipf("needs %s; set GOLDPROXY_E2E=1 to require it", tool)
	return ""
}

func scrape(t *testing.T, g *gated) []byte {
	t.Helper()
	srv := httptest.NewServer(g.app.metricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func TestMetricsAreCleanAndDashboardMatches(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now().Add(-3*time.Hour))
	g := startGated(t, cfg, up, true)
	if err := g.pull(t, up.Name+"/team/alpine:fixed"); err != nil {
		t.Fatal(err)
	}
	g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/vuln")
	text := scrape(t, g)
	for _, want := range []string{
		`goldproxy_denials_total{audit="false",policy="default",rule="vulnerabilities"} 1`,
		`goldproxy_scans_total{result="scanned"} 2`,
		`goldproxy_verdicts{state="denied"} 1`,
		`goldproxy_vulnerability_db_info{`,
		`goldproxy_scan_queue_depth 0`,
		`go_goroutines`,
	} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^goldproxy_vulnerability_db_age_seconds (\S+)$`).FindSubmatch(text); m == nil || !strings.HasPrefix(string(m[1]), "108") {
		t.Errorf("db age: %q", m)
	}
	// Every metric the Grafana dashboard and the alert rules use exists.
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "goldproxy-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	rules, _ := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "goldproxy-alerts.yml"))
	exprs := []string{string(rules)}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, e := range exprs {
		for _, name := range regexp.MustCompile(`goldproxy_[a-z_]+`).FindAllString(e, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if !bytes.Contains(text, []byte("# TYPE "+base+" ")) {
				t.Errorf("the dashboard or alerts use %s, which goldproxy does not export", name)
			}
		}
	}

	promtool := requireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "check", "rules", filepath.Join("..", "..", "deploy", "prometheus", "goldproxy-alerts.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

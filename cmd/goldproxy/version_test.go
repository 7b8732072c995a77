package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// trivyRequire is the Trivy version go.mod requires: what `goldproxy version` must print.
func trivyRequire(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/aquasecurity/trivy (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod requires no github.com/aquasecurity/trivy")
	}
	return string(m[1])
}

// TestVersionCommand runs `goldproxy version` in process: the Trivy version comes from
// the binary's dependency list and the DB from --db-dir. (The commit a real build
// stamps is asserted on the built binary in cmd/goldproxy-image's tests.)
func TestVersionCommand(t *testing.T) {
	dbDir := t.TempDir()
	updated := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	scannertest.BuildDB(t, dbDir, updated)
	for _, args := range [][]string{{"version"}, {"version", "--db-dir", dbDir}, {"version", "--db-dir", dbDir, "--json"}} {
		root := newRootCmd()
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		s := out.String()
		trivy := trivyRequire(t)
		if strings.Contains(strings.Join(args, " "), "--json") {
			var bi cli.BuildInfo
			if err := json.Unmarshal([]byte(s), &bi); err != nil || bi.Trivy != trivy || bi.DB != "v2@2026-03-01T06:00:00Z" || bi.Commit == "" {
				t.Fatalf("--json: %v %+v\n%s", err, bi, s)
			}
			continue
		}
		if !strings.Contains(s, "trivy:      "+trivy+"\n") || !strings.Contains(s, "commit:     ") {
			t.Fatalf("%v lacks trivy %s or the commit:\n%s", args, trivy, s)
		}
		if len(args) > 1 && !strings.Contains(s, "db:         v2@2026-03-01T06:00:00Z from dir:"+dbDir) {
			t.Fatalf("%v lacks the DB:\n%s", args, s)
		}
	}
	labels := cli.Build().Labels()
	if labels["trivy_version"] != trivyRequire(t) || labels["version"] == "" {
		t.Fatalf("metric labels: %v", labels)
	}
}

// TestVersionEndpointAndMetric checks what the proxy serves at /api/v1/version
// (cli.VersionHandler over the loaded DB) and exports as goldproxy_build_info
// (cli.BuildInfoCollector), promtool-clean.
func TestVersionEndpointAndMetric(t *testing.T) {
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC))
	db := scanner.NewDB()
	defer db.Close()
	if _, err := db.Load(dbDir, "dir:"+dbDir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cli.VersionHandler(db))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	var bi cli.BuildInfo
	err = json.NewDecoder(resp.Body).Decode(&bi)
	resp.Body.Close()
	if err != nil || resp.Header.Get("Content-Type") != "application/json" || bi.Trivy != trivyRequire(t) || bi.DB != "v2@2026-03-01T06:00:00Z" {
		t.Fatalf("/api/v1/version: %v %+v", err, bi)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(cli.BuildInfoCollector())
	msrv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer msrv.Close()
	mresp, err := http.Get(msrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_, _ = text.ReadFrom(mresp.Body)
	mresp.Body.Close()
	if !regexp.MustCompile(`goldproxy_build_info\{commit="[^"]+",date="[^"]+",goversion="go1[^"]*",trivy_version="` + regexp.QuoteMeta(trivyRequire(t)) + `",version="[^"]+"\} 1`).Match(text.Bytes()) {
		t.Fatalf("metric:\n%s", text.String())
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(p, "check", "metrics")
		cmd.Stdin = bytes.NewReader(text.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

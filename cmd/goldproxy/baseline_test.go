package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got (with the test registry's host replaced by REGISTRY) to a file
// under testdata, or rewrites it with -update.
func golden(t *testing.T, name, got, host string) {
	t.Helper()
	got = strings.ReplaceAll(got, host, "REGISTRY")
	got = strings.ReplaceAll(got, strings.ReplaceAll(host, ":", "_"), "REGISTRY")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the golden file (run with -update after checking):\n%s", name, got)
	}
}

func baselineSetup(t *testing.T) (*proxytest.Upstream, string, string, string) {
	t.Helper()
	up := proxytest.NewUpstream(t)
	up.Push(t, "library/debian:12", scannertest.DebianImage(t, false))
	up.Push(t, "library/alpine:3.19", scannertest.AlpineImage(t, true))
	up.Push(t, "distroless/base-debian12:nonroot", scannertest.DebianImage(t, true))
	up.Push(t, "chainguard/static:latest", scannertest.AlpineImage(t, false))
	dir := t.TempDir()
	standard := write(t, dir, "standard.txt", "# standard bases\n"+up.Host+"/library/debian:12\n"+up.Host+"/library/alpine:3.19\n"+up.Host+"/library/gone:1  # not there\n")
	hardened := write(t, dir, "hardened.txt", up.Host+"/distroless/base-debian12:nonroot\n"+up.Host+"/chainguard/static:latest\n"+up.Host+"/chainguard/python:latest\n")
	db := filepath.Join(dir, "db")
	scannertest.BuildDB(t, db, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	return up, standard, hardened, db
}

func TestBaseline(t *testing.T) {
	up, standard, hardened, db := baselineSetup(t)
	out := t.TempDir()
	o := cli.BaselineOptions{Images: standard, Hardened: hardened, HardenedLimit: 2, OutDir: out, DBDir: db, Insecure: true,
		Now: func() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }}
	var stdout strings.Builder
	err := cli.RunBaseline(context.Background(), &stdout, o)
	var ee *exitError
	if !errorsAs(err, &ee) || ee.Code != 1 || !strings.Contains(err.Error(), "1 of 5 images could not be scanned") {
		t.Fatalf("exit: %v\n%s", err, stdout.String())
	}
	js, _ := os.ReadFile(filepath.Join(out, "baseline.json"))
	md, _ := os.ReadFile(filepath.Join(out, "baseline.md"))
	html, _ := os.ReadFile(filepath.Join(out, "baseline.html"))
	if !strings.Contains(string(js), `"error": "`) || !strings.Contains(string(md), "library/gone:1 | standard | own | failed:") {
		t.Fatalf("the unreachable image's row does not record the failure:\n%s", md)
	}
	golden(t, "baseline.golden.md", string(md), up.Host)
	golden(t, "baseline.golden.json", string(js), up.Host)
	if !strings.Contains(string(html), `<table id="images">`) || !strings.Contains(string(html), `class="bar"`) || strings.Contains(string(html), "src=\"http") {
		t.Fatal("baseline.html is not the self-contained sortable page")
	}
	for _, f := range []string{"report.json", "report.md"} {
		if _, err := os.Stat(filepath.Join(out, "images", cli.SafeName(up.Host+"/library/alpine:3.19"), f)); err != nil {
			t.Fatalf("per-image report: %v", err)
		}
	}
}

func TestBaselineEnvEqualsFlags(t *testing.T) {
	_, standard, hardened, db := baselineSetup(t)
	flagsOut, envOut := t.TempDir(), t.TempDir()
	if out, code := runCLI(t, "baseline", "--images", standard, "--hardened", hardened, "--hardened-limit", "1", "--db-dir", db, "--insecure", "--output-dir", flagsOut); code != 1 {
		t.Fatalf("flags: %d %s", code, out)
	}
	t.Setenv("BASELINE_IMAGES", standard)
	t.Setenv("BASELINE_IMAGES_HARDENED", hardened)
	t.Setenv("BASELINE_HARDENED_LIMIT", "1")
	if out, code := runCLI(t, "baseline", "--db-dir", db, "--insecure", "--output-dir", envOut); code != 1 {
		t.Fatalf("env: %d %s", code, out)
	}
	a, _ := os.ReadFile(filepath.Join(flagsOut, "baseline.json"))
	b, _ := os.ReadFile(filepath.Join(envOut, "baseline.json"))
	norm := func(s []byte, dir string) string { return strings.ReplaceAll(string(s), dir, "OUT") }
	if norm(a, flagsOut) != norm(b, envOut) || !strings.Contains(string(a), "distroless") || strings.Contains(string(a), "chainguard/static") {
		t.Fatalf("env form differs from flag form:\n%s\n---\n%s", a, b)
	}
}

func errorsAs(err error, target **exitError) bool {
	e, ok := err.(*exitError)
	if ok {
		*target = e
	}
	return ok
}

func TestBaselineThroughProxy(t *testing.T) {
	up, standard, hardened, db := baselineSetup(t)
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = db
	// Storing the comparison changes the proxy: an admin does it; pulls stay anonymous.
	hash, _ := bcrypt.GenerateFromPassword([]byte("ops-pw"), bcrypt.MinCost)
	cfg.Auth.Htpasswd = write(t, t.TempDir(), "htpasswd", "ops:"+string(hash)+"\n")
	cfg.Auth.Admins = []string{"ops"}
	anonymous := true
	cfg.Auth.Anonymous = &anonymous
	t.Setenv("GOLDPROXY_PASSWORD", "ops-pw")
	g := startGated(t, cfg, up, true)
	// Lists name the images as clients do through the proxy: the upstream by its name.
	rename := func(path string) string {
		b, _ := os.ReadFile(path)
		return write(t, t.TempDir(), filepath.Base(path), strings.ReplaceAll(string(b), up.Host, up.Name))
	}
	out := t.TempDir()
	o := cli.BaselineOptions{Images: rename(standard), Hardened: rename(hardened), OutDir: out, ProxyURL: g.url, User: "ops",
		Now: func() time.Time { return time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) }}
	var stdout strings.Builder
	err := cli.RunBaseline(context.Background(), &stdout, o)
	if err == nil || !strings.Contains(err.Error(), "2 of 6 images could not be scanned") {
		t.Fatalf("exit: %v\n%s", err, stdout.String())
	}
	md, _ := os.ReadFile(filepath.Join(out, "baseline.md"))
	for _, want := range []string{"/library/alpine:3.19 | standard | alpine | alpine 3.19.1 |", "| 2 | 2 | 3 | 0 | 2/2/3/0 | no | yes | yes | 906 | denied (vulnerabilities) |",
		"/chainguard/static:latest | hardened | chainguard | alpine 3.19.1 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("baseline through the proxy lacks %q:\n%s", want, md)
		}
	}
	resp, body := g.get(t, "/api/v1/baselines/latest")
	if resp.StatusCode != 200 || !strings.Contains(body, `"kind":"chainguard"`) {
		t.Fatalf("stored comparison: %d %.300s", resp.StatusCode, body)
	}
	resp, page := g.get(t, "/ui/baseline")
	if resp.StatusCode != 200 || !strings.Contains(page, up.Name+"/library/alpine:3.19") || !strings.Contains(page, "badge-denied") || !strings.Contains(page, "failed:") {
		t.Fatalf("dashboard baseline page: %d %.500s", resp.StatusCode, page)
	}
}

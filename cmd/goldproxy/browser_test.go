package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// chromium runs headless Chromium as the workplace allows it: no sandbox (root), no
// background networking, a fresh profile.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := requireTool(t, "chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--no-first-run", "--disable-sync", "--user-data-dir=" + t.TempDir(), "--window-size=1400,1000"}
	out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return out
}

// TestDashboardInChromium opens the dashboard of a running proxy in a real browser: the
// denied image's page shows its CVEs; screenshots are saved for people to look at.
func TestDashboardInChromium(t *testing.T) {
	up := proxytest.NewUpstream(t)
	d := up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	g := startGated(t, cfg, up, true)
	g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/vuln")
	if err := g.pull(t, up.Name+"/team/alpine:fixed"); err != nil {
		t.Fatal(err)
	}

	dom := string(chromium(t, "--dump-dom", g.url+"/ui/images/"+d.String()))
	for _, want := range []string{"CVE-2024-5535", "CVE-2024-6119", "libcrypto3", "denied", "vulnerabilities"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the image page in the browser lacks %q", want)
		}
	}
	home := string(chromium(t, "--dump-dom", g.url+"/ui/?denied=true"))
	if !strings.Contains(home, up.Name+"/team/alpine") || strings.Contains(home, ">fixed<") {
		t.Errorf("denied-only list in the browser: %.500s", home)
	}
	shots := os.Getenv("GOLDPROXY_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	for name, page := range map[string]string{"dashboard.png": "/ui/", "denied-image.png": "/ui/images/" + d.String()} {
		path := filepath.Join(shots, name)
		chromium(t, "--screenshot="+path, g.url+page)
		if fi, err := os.Stat(path); err != nil || fi.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v", path, err)
		}
	}
}

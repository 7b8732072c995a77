package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// TestCheckDockerfilePinning runs check-dockerfile (embedded config: docker.io/library/*
// allowed) on the four ways to name a base: unpinned ones are warnings, errors with
// --require-digest or a policy whose scope has pinned: true, and a digest passes.
func TestCheckDockerfilePinning(t *testing.T) {
	dir := t.TempDir()
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	pinned := write(t, dir, "pinned.yaml", "policies:\n  - name: loose\n  - name: strict\n    pinned: true\nscopes:\n  - match: [docker.io/library/*]\n    policy: strict\n")
	audit := write(t, dir, "audit.yaml", "policies:\n  - name: strict\n    mode: audit\n    pinned: true\n")
	forms := []struct {
		from, want, suggest string // want: what the finding says; "" for none
	}{
		{"alpine:latest", "FROM alpine:latest: the latest tag moves (DL3007", "write FROM alpine:latest@sha256:<digest>"},
		{"alpine", "FROM alpine: no tag means :latest, which moves (DL3007", "write FROM alpine:latest@sha256:<digest>"},
		{"alpine:3.20", `FROM alpine:3.20: tag "3.20" is not pinned by digest`, "write FROM alpine:3.20@sha256:<digest>"},
		{"alpine@" + digest, "", ""},
		{"alpine:3.20@" + digest, "", ""},
	}
	modes := []struct {
		name  string
		flags []string
		level string // how an unpinned base is reported
		code  int
	}{
		{"default", nil, "warning", 0},
		{"require-digest", []string{"--require-digest"}, "error", 1},
		{"policy pinned", []string{"--policy", pinned}, "error", 1},
		{"policy pinned in audit mode", []string{"--policy", audit}, "warning", 0},
	}
	for _, f := range forms {
		for _, m := range modes {
			t.Run(f.from+"/"+m.name, func(t *testing.T) {
				df := write(t, t.TempDir(), "Dockerfile", "FROM "+f.from+"\nRUN true\n")
				out, code := runCLI(t, append(append([]string{"check-dockerfile"}, m.flags...), df)...)
				if f.want == "" {
					if code != 0 || strings.Contains(out, "FROM") {
						t.Fatalf("a base pinned by digest is reported: exit %d\n%s", code, out)
					}
					return
				}
				wantLine := df + ":1: " + m.level + ": " + f.want
				if code != m.code || !strings.Contains(out, wantLine) || !strings.Contains(out, f.suggest) {
					t.Fatalf("exit %d (want %d), output lacks %q or %q:\n%s", code, m.code, wantLine, f.suggest, out)
				}
			})
		}
	}
}

// TestCheckDockerfileSuggestsDigestViaProxy resolves the digest to suggest with a GET
// through a running goldproxy.
func TestCheckDockerfileSuggestsDigestViaProxy(t *testing.T) {
	up := proxytest.NewUpstream(t)
	want := up.Push(t, "library/alpine:3.20", scannertest.AlpineImage(t, false))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	g := startGated(t, cfg, up, true)
	dir := t.TempDir()
	df := write(t, dir, "Dockerfile", "FROM "+up.Name+"/library/alpine:3.20\nFROM "+up.Name+"/library/alpine:9.99\n")
	conf := write(t, dir, "goldproxy.yaml", "upstreams:\n  - {name: "+up.Name+", url: "+up.URL+"}\nallow:\n  repositories: [\"**\"]\n")
	out, code := runCLI(t, "check-dockerfile", "--config", conf, "--proxy", g.url, df)
	if code != 0 {
		t.Fatalf("warnings only, yet exit %d:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "use FROM "+up.Name+"/library/alpine:3.20@"+want.String()) {
		t.Fatalf("no digest suggested for the tag the proxy knows (%s):\n%s", want, out)
	}
	if !strings.Contains(lines[1], "its digest could not be resolved through the proxy") {
		t.Fatalf("an unknown tag does not say its digest could not be resolved:\n%s", out)
	}
}

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const hardenedPolicy = `
contact: "Ask #platform-security for an exception."
policies:
  - name: hardened
    vulnerabilities: {severity: HIGH, only_fixable: true}
    non_root: true
    no_shell: true
    no_package_manager: true
    max_os_packages: 2
    max_age: 30d
    pinned: true
`

// TestDenialNamesEveryReason pulls a vulnerable alpine-like image through the real gate
// under a hardened policy: the DENIED message carries every failed rule with evidence.
func TestDenialNamesEveryReason(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	cfg.Policy = write(t, t.TempDir(), "policy.yaml", hardenedPolicy)
	g := startGated(t, cfg, up, true)
	resp, body := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/vuln")
	if resp.StatusCode != 403 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`policy \"hardened\"`,
		`rule \"vulnerabilities\"`, "CVE-2024-5535 in libcrypto3 3.1.4-r2 → 3.1.6-r0 (CRITICAL)",
		`rule \"non-root\"`, "user: (unset: root)",
		`rule \"no-shell\"`, "/bin/sh", "/bin/busybox",
		`rule \"no-package-manager\"`, "/sbin/apk",
		`rule \"minimal-base\"`, "4 OS packages",
		`rule \"freshness\"`, "created: 2024-06-01",
		`rule \"pinned\"`, "must be pulled by digest",
		"Ask #platform-security for an exception.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("denial lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestPolicyReloadRejectsBadFile(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	pfile := write(t, t.TempDir(), "policy.yaml", "policies:\n  - name: loose\n    vulnerabilities: {severity: CRITICAL, only_fixable: true, max: {CRITICAL: 5}}\n")
	cfg.Policy = pfile
	g := startGated(t, cfg, up, true)
	url := "/v2/" + up.Name + "/team/alpine/manifests/vuln"
	if resp, _ := g.get(t, url); resp.StatusCode != 403 {
		t.Fatalf("loose policy still denies CRITICAL: %d", resp.StatusCode)
	}
	// A strict policy that allows nothing of this: then a broken file, which is rejected.
	write(t, filepath.Dir(pfile), "policy.yaml", "policies:\n  - name: anything\n")
	if err := g.app.reloadPolicy(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := g.get(t, url); resp.StatusCode != 200 {
		t.Fatalf("after reload to an empty policy: %d", resp.StatusCode)
	}
	write(t, filepath.Dir(pfile), "policy.yaml", "policies:\n  - name: broken\n    mode: loud\n")
	err := g.app.reloadPolicy()
	if err == nil || !strings.Contains(err.Error(), "policies[0].mode") {
		t.Fatalf("bad file: %v", err)
	}
	if resp, _ := g.get(t, url); resp.StatusCode != 200 {
		t.Fatalf("a rejected file changed the verdict: %d", resp.StatusCode)
	}
	// The watcher picks a change up by itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.app.watchPolicy(ctx, make(chan os.Signal), 20*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	write(t, filepath.Dir(pfile), "policy.yaml", "policies:\n  - name: strict\n    vulnerabilities: {severity: HIGH}\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if resp, _ := g.get(t, url); resp.StatusCode == 403 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file watcher did not apply the new policy")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckDockerfile(t *testing.T) {
	cfg, err := config.Parse([]byte(`
upstreams:
  - {name: docker.io, url: "https://registry-1.docker.io"}
  - {name: cgr.dev, url: "https://cgr.dev"}
  - {name: gcr.io, url: "https://gcr.io"}
allow:
  repositories: [cgr.dev/chainguard/*, gcr.io/distroless/*]
`), "")
	if err != nil {
		t.Fatal(err)
	}
	lists := []string{}
	allow, err := gate.NewAllowlist(cfg.Allow.Repositories, lists)
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.23
ARG BASE=gcr.io/distroless/static-debian12
ARG UNSET
FROM cgr.dev/chainguard/go:${GO_VERSION} AS build
RUN go build -o /app .

FROM --platform=linux/amd64 golang:1.23 \
    AS tools
FROM build AS test
FROM ${BASE}:nonroot
COPY --from=build /app /app
FROM scratch AS empty
FROM ${UNSET}
FROM ubuntu:24.04
FROM ${MISSING:-cgr.dev/chainguard/static}:latest
`
	all, err := checkDockerfile(strings.NewReader(dockerfile), allow, nil, pinCheck{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var problems []fromProblem
	for _, p := range all {
		if !p.warning { // pinning warnings: TestCheckDockerfilePinning
			got = append(got, p.msg)
			problems = append(problems, p)
		}
	}
	want := []string{
		"FROM golang:1.23: docker.io/library/golang is not on the allowlist of approved base images",
		"FROM ${UNSET}: ARG UNSET has no value, so the base image cannot be checked",
		"FROM ubuntu:24.04: docker.io/library/ubuntu is not on the allowlist of approved base images",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if problems[0].line != 8 || problems[2].line != 15 {
		t.Fatalf("lines %d %d", problems[0].line, problems[2].line)
	}
	// --build-arg overrides a default.
	problems, _ = checkDockerfile(strings.NewReader("ARG BASE=cgr.dev/chainguard/static@sha256:"+strings.Repeat("a", 64)+"\nFROM ${BASE}\n"), allow, map[string]string{"BASE": "alpine@sha256:" + strings.Repeat("a", 64)}, pinCheck{})
	if len(problems) != 1 || !strings.Contains(problems[0].msg, "docker.io/library/alpine") {
		t.Fatalf("build-arg: %+v", problems)
	}
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out strings.Builder
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String() + err.Error(), ee.Code
	default:
		return out.String() + err.Error(), 1
	}
}

func TestPolicyCommands(t *testing.T) {
	out, code := runCLI(t, "policy", "check", filepath.Join("..", "..", "configs", "policy.yaml"))
	if code != 0 || !strings.Contains(out, "ok: 3 policies") {
		t.Fatalf("policy check: %d %s", code, out)
	}
	bad := write(t, t.TempDir(), "bad.yaml", "policies:\n  - name: a\n    non_root: maybe\n")
	if out, code := runCLI(t, "policy", "check", bad); code != 1 || !strings.Contains(out, "line 3") {
		t.Fatalf("bad policy check: %d %s", code, out)
	}

	// A report from `scan`, judged by two policies.
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Now())
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	ref, _ := name.ParseReference("docker.io/library/alpine:3.19")
	if err := tarball.WriteToFile(tarPath, ref, scannertest.AlpineImage(t, true)); err != nil {
		t.Fatal(err)
	}
	reports := t.TempDir()
	if out, code := runCLI(t, "scan", "--input", tarPath, "--db-dir", dbDir, "--output-dir", reports); code != 1 {
		t.Fatalf("scan: %d %s", code, out)
	}
	report := filepath.Join(reports, "report.json")
	loose := write(t, t.TempDir(), "loose.yaml", "policies:\n  - name: loose\n    vulnerabilities: {severity: CRITICAL, only_fixable: true}\nexceptions:\n  - id: CVE-2024-5535\n    reason: test\n    expires: 2099-01-01\n")
	out, code = runCLI(t, "policy", "test", "--policy", loose, "--report", report, "--repository", "docker.io/library/alpine")
	if code != 0 || !strings.Contains(out, "exception CVE-2024-5535 applied") || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("policy test (loose): %d %s", code, out)
	}
	out, code = runCLI(t, "policy", "test", "--policy", write(t, t.TempDir(), "strict.yaml", "policies:\n  - name: strict\n    vulnerabilities: {severity: MEDIUM}\n"), "--report", report)
	if code != 1 || !strings.Contains(out, `DENIED by policy "strict"`) || !strings.Contains(out, "and 2 more") {
		t.Fatalf("policy test (strict): %d %s", code, out)
	}
	// By image: the shell and package-manager rules need the scan's file list.
	out, code = runCLI(t, "policy", "test", "--policy", write(t, t.TempDir(), "h.yaml", "policies:\n  - name: h\n    no_shell: true\n"), "--db-dir", dbDir, tarPath)
	if code != 1 || !strings.Contains(out, "/bin/busybox") {
		t.Fatalf("policy test (image): %d %s", code, out)
	}
}

func TestRobotCommands(t *testing.T) {
	cfg := write(t, t.TempDir(), "goldproxy.yaml", "data_dir: "+t.TempDir()+"\nupstreams:\n  - {name: r.test, url: \"http://127.0.0.1:1\"}\n")
	out, code := runCLI(t, "robot", "add", "ci", "--scope", "r.test/team/**", "--expires", "30d", "--config", cfg)
	if code != 0 || !strings.Contains(out, "username: robot$ci") || !regexpMatch(out, `token:\s+\S{40,}`) {
		t.Fatalf("robot add: %d %s", code, out)
	}
	if out, code := runCLI(t, "robot", "add", "ci", "--config", cfg); code != 1 || !strings.Contains(out, "exists") {
		t.Fatalf("duplicate robot: %d %s", code, out)
	}
	out, code = runCLI(t, "robot", "list", "--config", cfg)
	if code != 0 || !regexpMatch(out, `robot\$ci\s+r.test/team/\*\*\s+\S+\s+\d{4}-\d\d-\d\d`) || strings.Contains(out, "hash") {
		t.Fatalf("robot list: %d %s", code, out)
	}
	if out, code := runCLI(t, "robot", "revoke", "ci", "--config", cfg); code != 0 {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if out, code := runCLI(t, "robot", "revoke", "ci", "--config", cfg); code != 1 {
		t.Fatalf("revoke twice: %d %s", code, out)
	}
}

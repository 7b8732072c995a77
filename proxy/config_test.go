package proxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

func TestDefaultConfig(t *testing.T) {
	cfg, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":5000" || cfg.DataDir != "./data" {
		t.Errorf("listen %q data_dir %q", cfg.Listen, cfg.DataDir)
	}
	if cfg.UpstreamIdleTimeout != 30*time.Second || cfg.UpstreamBackoff != 30*time.Second ||
		cfg.Limits.ManifestBytes != 4<<20 || cfg.Limits.Layers != 500 {
		t.Errorf("upstream_idle_timeout %s upstream_backoff %s limits %+v", cfg.UpstreamIdleTimeout, cfg.UpstreamBackoff, cfg.Limits)
	}
	var names []string
	for _, u := range cfg.Upstreams {
		names = append(names, u.Name)
	}
	if got := strings.Join(names, ","); got != "docker.io,cgr.dev,gcr.io,quay.io,ghcr.io,registry.access.redhat.com" {
		t.Errorf("upstreams %s", got)
	}
	a, err := gate.NewAllowlist(cfg.Allow.Repositories, nil)
	if err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]bool{
		"cgr.dev/chainguard/static":                   true,
		"gcr.io/distroless/static-debian12":           true,
		"docker.io/library/alpine":                    true,
		"registry.access.redhat.com/ubi9/ubi-minimal": true,
		"docker.io/someone/alpine":                    false,
		"quay.io/anything/else":                       false,
		"gcr.io/distroless/nested/deeper":             false,
	} {
		if got := a.Allowed(repo); got != want {
			t.Errorf("default allowlist: %s allowed=%v, want %v", repo, got, want)
		}
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	const base = "upstreams:\n  - name: r.test\n    url: http://127.0.0.1:1\n"
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown key", base + "colour: blue\n", `unknown key "colour"`},
		{"inline password", "upstreams:\n  - name: r.test\n    url: http://x\n    auth:\n      username: a\n      password: hunter2\n", "secrets are never inline"},
		{"bad listen", base + "listen: nope\n", "listen:"},
		{"bad url", "upstreams:\n  - name: r.test\n    url: ftp://x\n", "upstreams[0].url"},
		{"name with scheme", "upstreams:\n  - name: https://r.test\n    url: http://x\n", "upstreams[0].name"},
		{"duplicate host", base + "  - name: r.test\n    url: http://x\n", "upstreams[1]"},
		{"no upstreams", "listen: :5000\n", "upstreams:"},
		{"bad ttl", base + "tags:\n  ttl: soon\n", "soon"},
		{"bad log format", base + "log:\n  format: xml\n", "log.format"},
		{"unsupported driver", base + "storage:\n  driver: s4\n", "storage.driver"},
		{"alias to unknown upstream", base + "aliases:\n  cg: nowhere.test/x\n", "aliases.cg"},
		{"password without username", "upstreams:\n  - name: r.test\n    url: http://x\n    auth:\n      password_env: X\n", "auth.username"},
		{"missing list file", base + "allow:\n  lists: [/nonexistent/list.txt]\n", "allow.lists[0]"},
		{"missing ca file", "upstreams:\n  - name: r.test\n    url: https://x\n    ca_file: /nonexistent.pem\n", "upstreams[0].ca_file"},
		{"negative idle timeout", base + "upstream_idle_timeout: -1s\n", "upstream_idle_timeout"},
		{"negative backoff", base + "upstream_backoff: -1s\n", "upstream_backoff"},
		{"missing trusted root", base + "trust:\n  trusted_root: /nonexistent/trusted_root.json\n", "trust.trusted_root"},
		{"trust refresh too often", base + "trust:\n  refresh: 10ms\n", "trust.refresh"},
		{"unknown trust key", base + "trust:\n  rekor_url: https://rekor.sigstore.dev\n", `unknown key "rekor_url"`},
		{"negative layers", base + "limits:\n  layers: -1\n", "limits.layers"},
		{"bad manifest size", base + "limits:\n  manifest_bytes: lots\n", "lots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigListsAndSecrets(t *testing.T) {
	dir := t.TempDir()
	list := "# gold images\ncgr.dev/chainguard/static:latest\n\n  alpine:3.20   # official\ngcr.io/distroless/base@sha256:" + strings.Repeat("a", 64) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "gold.txt"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "goldproxy.yaml")
	yaml := "upstreams:\n  - name: r.test\n    url: http://127.0.0.1:1\n    auth:\n      username: bot\n      password_file: " + filepath.Join(dir, "pw") + "\nallow:\n  lists: [gold.txt]\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := gate.NewAllowlist(nil, []string{filepath.Join(dir, cfg.Allow.Lists[0])})
	if err != nil {
		t.Fatal(err)
	}
	for repo, want := range map[string]bool{
		"cgr.dev/chainguard/static": true,
		"docker.io/library/alpine":  true,
		"gcr.io/distroless/base":    true,
		"cgr.dev/chainguard/python": false,
	} {
		if got := a.Allowed(repo); got != want {
			t.Errorf("%s allowed=%v, want %v", repo, got, want)
		}
	}
	if _, err := gate.NewAllowlist(nil, []string{writeFile(t, "bad.txt", "ok:1\nNOT A REF!!\n")}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad list line: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGlobs(t *testing.T) {
	for _, tc := range []struct {
		glob, repo string
		want       bool
	}{
		{"docker.io/library/*", "docker.io/library/alpine", true},
		{"docker.io/library/*", "docker.io/library/a/b", false},
		{"cgr.dev/**", "cgr.dev/chainguard/static", true},
		{"registry.access.redhat.com/ubi*/*", "registry.access.redhat.com/ubi9/ubi-minimal", true},
		{"registry.access.redhat.com/ubi*/*", "registry.access.redhat.com/rhel9/x", false},
		{"gcr.io/distroless/static?debian12", "gcr.io/distroless/static-debian12", true},
		{"a.io/x.y", "a.io/xzy", false},
	} {
		a, err := gate.NewAllowlist([]string{tc.glob}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Allowed(tc.repo); got != tc.want {
			t.Errorf("%s ~ %s = %v, want %v", tc.glob, tc.repo, got, tc.want)
		}
	}
}

package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// hubConfig is a config whose upstreams are a test "docker.io" (hub) and a second
// registry reachable by host, alias and ?ns=, with a real allowlist.
func hubConfig(t *testing.T, hub, other *proxytest.Upstream) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:0
data_dir: %s
upstreams:
  - name: docker.io
    url: %s
    aliases: [index.docker.io]
  - name: %s
    url: %s
    aliases: [%q]
aliases:
  short: %s/team
allow:
  repositories:
    - docker.io/library/*
    - %s/team/**
`, t.TempDir(), hub.URL, other.Name, other.URL, other.Host, other.Name, other.Name)
	cfg, err := config.Parse([]byte(yaml), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRoutingAllThreeWays(t *testing.T) {
	hub, other := proxytest.NewUpstream(t), proxytest.NewUpstream(t)
	hubImg := randomImage(t, 1)
	hubDigest := hub.Push(t, "library/alpine:3", hubImg)
	otherDigest := other.Push(t, "team/app:1", randomImage(t, 1))
	p := proxytest.Start(t, hubConfig(t, hub, other))

	for _, tc := range []struct {
		name, path string
		want       string
	}{
		{"docker mirror: single component gets library/", "/v2/alpine/manifests/3", hubDigest.String()},
		{"docker mirror: library/ spelled out", "/v2/library/alpine/manifests/3", hubDigest.String()},
		{"containerd ns=docker.io", "/v2/library/alpine/manifests/3?ns=docker.io", hubDigest.String()},
		{"containerd ns=docker.io single component", "/v2/alpine/manifests/3?ns=docker.io", hubDigest.String()},
		{"containerd ns=host:port", "/v2/team/app/manifests/1?ns=" + other.Host, otherDigest.String()},
		{"host in path", "/v2/" + other.Name + "/team/app/manifests/1", otherDigest.String()},
		{"alias host in path", "/v2/" + other.Host + "/team/app/manifests/1", otherDigest.String()},
		{"short alias", "/v2/short/app/manifests/1", otherDigest.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, http.MethodGet, p.URL+tc.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != tc.want {
				t.Fatalf("digest %s, want %s", got, tc.want)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	hub, other := proxytest.NewUpstream(t), proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	hub.Push(t, "library/alpine:3", img)
	other.Push(t, "secret/app:1", img)
	other.ResetCounts()
	p := proxytest.Start(t, hubConfig(t, hub, other))
	zero := "sha256:" + strings.Repeat("0", 64)

	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
		msg                string
	}{
		{"repository not on allowlist", "GET", "/v2/" + other.Name + "/secret/app/manifests/1", 403, "DENIED", other.Name + "/secret/app is not on the allowlist"},
		{"hub repository not on allowlist", "GET", "/v2/someone/tool/manifests/1", 403, "DENIED", "docker.io/someone/tool is not on the allowlist"},
		{"blob of repository not on allowlist", "GET", "/v2/" + other.Name + "/secret/app/blobs/" + zero, 403, "DENIED", ""},
		{"unknown upstream host", "GET", "/v2/nowhere.example/x/manifests/1", 404, "NAME_UNKNOWN", "nowhere.example"},
		{"unknown ns", "GET", "/v2/x/manifests/1?ns=nowhere.example", 404, "NAME_UNKNOWN", "nowhere.example"},
		{"unknown tag", "GET", "/v2/library/alpine/manifests/nope", 404, "MANIFEST_UNKNOWN", ""},
		{"unknown manifest digest", "GET", "/v2/library/alpine/manifests/" + zero, 404, "MANIFEST_UNKNOWN", ""},
		{"unknown manifest HEAD", "HEAD", "/v2/library/alpine/manifests/" + zero, 404, "", ""},
		{"unknown blob", "GET", "/v2/library/alpine/blobs/" + zero, 404, "BLOB_UNKNOWN", ""},
		{"bad digest", "GET", "/v2/library/alpine/manifests/sha256:baddigeststring", 400, "DIGEST_INVALID", ""},
		{"bad blob digest", "GET", "/v2/library/alpine/blobs/nope", 400, "DIGEST_INVALID", ""},
		{"invalid name", "GET", "/v2/library/Alpine/manifests/3", 400, "NAME_INVALID", ""},
		{"push manifest", "PUT", "/v2/library/alpine/manifests/3", 405, "UNSUPPORTED", "read-only"},
		{"delete manifest", "DELETE", "/v2/library/alpine/manifests/3", 405, "UNSUPPORTED", ""},
		{"delete blob", "DELETE", "/v2/library/alpine/blobs/" + zero, 405, "UNSUPPORTED", ""},
		{"start upload", "POST", "/v2/library/alpine/blobs/uploads/", 405, "UNSUPPORTED", "uploads"},
		{"patch upload", "PATCH", "/v2/library/alpine/blobs/uploads/abc", 405, "UNSUPPORTED", ""},
		{"unknown endpoint", "GET", "/v2/_catalog", 404, "UNSUPPORTED", "no such endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.method, p.URL+tc.path, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.method == "HEAD" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if code := errCode(t, body); code != tc.code {
				t.Errorf("code %s, want %s (%s)", code, tc.code, body)
			}
			if !strings.Contains(string(body), tc.msg) {
				t.Errorf("message %s lacks %q", body, tc.msg)
			}
		})
	}
	if n := other.Total(); n != 0 {
		t.Errorf("the proxy asked the upstream %d times about repositories it does not allow", n)
	}
}

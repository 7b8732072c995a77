package proxy_test

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// TestUpstreamCredentialsAndCA pulls through an HTTPS upstream with a private CA that
// requires basic auth; the password comes from an environment variable.
func TestUpstreamCredentialsAndCA(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "robot" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	ref, _ := name.ParseReference(host + "/private/app:1")
	img := randomImage(t, 1)
	if err := remote.Write(ref, img, remote.WithTransport(srv.Client().Transport), remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOLDPROXY_TEST_PASSWORD", "s3cret")
	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"right credentials", "username: robot\n      password_env: GOLDPROXY_TEST_PASSWORD", http.StatusOK},
		{"no credentials", "username: \"\"", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
data_dir: %s
upstreams:
  - name: private.test
    url: %s
    ca_file: %s
    auth:
      %s
allow:
  repositories: ["**"]
`, t.TempDir(), srv.URL, caFile, tc.auth)), "")
			if err != nil {
				t.Fatal(err)
			}
			p := proxytest.Start(t, cfg)
			resp, body := get(t, http.MethodGet, p.URL+"/v2/private.test/private/app/manifests/1", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusOK {
				if err := pullAll("private.test/private/app:1", p); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

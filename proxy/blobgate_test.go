package proxy_test

import (
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// blobsOf are an image's config and layer digests.
func blobsOf(t testing.TB, img v1.Image) []v1.Hash {
	t.Helper()
	cfg, _ := img.ConfigName()
	out := []v1.Hash{cfg}
	ls, _ := img.Layers()
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, d)
	}
	return out
}

// No blob leaves the proxy without an allowed manifest of the same repository that
// references it: not a denied image's, by any route, nor one of an image nobody pulled.
func TestBlobsAreGated(t *testing.T) {
	hub, other := proxytest.NewUpstream(t), proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	denied := vulnImage(t, sc)
	hub.Push(t, "library/vuln:1", denied)
	other.Push(t, "team/vuln:1", denied)
	other.Push(t, "team/clean:1", denied) // the same blobs under another repository…
	allowed := randomImage(t, 1)
	other.Push(t, "team/ok:1", allowed)
	never := randomImage(t, 1)
	other.Push(t, "team/never:1", never)
	p := proxytest.Start(t, hubConfig(t, hub, other), proxy.WithScanner(sc, policy.DefaultSet()))

	for _, path := range []string{"/v2/vuln/manifests/1", "/v2/" + other.Name + "/team/vuln/manifests/1"} {
		if resp, body := get(t, http.MethodGet, p.URL+path, nil); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	for _, b := range blobsOf(t, denied) {
		for _, tc := range []struct{ name, path string }{
			{"docker.io default", "/v2/vuln/blobs/"},
			{"docker.io library/", "/v2/library/vuln/blobs/"},
			{"?ns=docker.io", "/v2/library/vuln/blobs/" + b.String() + "?ns=docker.io#"},
			{"host in path", "/v2/" + other.Name + "/team/vuln/blobs/"},
			{"alias host in path", "/v2/" + other.Host + "/team/vuln/blobs/"},
			{"configured alias", "/v2/short/vuln/blobs/"},
			{"?ns=host", "/v2/team/vuln/blobs/" + b.String() + "?ns=" + other.Host + "#"},
			{"another repository holding the same blobs", "/v2/" + other.Name + "/team/clean/blobs/"},
			{"another repository with an allowed image", "/v2/" + other.Name + "/team/ok/blobs/"},
		} {
			url := p.URL + tc.path
			if url[len(url)-1] == '/' {
				url += b.String()
			} else {
				url = url[:len(url)-1]
			}
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, body := get(t, method, url, nil)
				if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s %s (%s): %d %s", method, tc.name, b, resp.StatusCode, body)
				}
			}
		}
	}
	// A blob of an image nobody pulled is refused without asking the upstream.
	before := other.Total()
	for _, b := range blobsOf(t, never) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := get(t, method, p.URL+"/v2/"+other.Name+"/team/never/blobs/"+b.String(), nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s never-pulled blob %s: %d %s", method, b, resp.StatusCode, body)
			}
		}
	}
	if n := other.Total() - before; n != 0 {
		t.Fatalf("%d upstream requests for blobs of a never-judged image, want 0", n)
	}
	// The allowed image pulls whole, as a client pulls it.
	if err := pullAll(other.Name+"/team/ok:1", p); err != nil {
		t.Fatalf("allowed image: %v", err)
	}
}

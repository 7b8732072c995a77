package proxy_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/storage"
)

// pullAll pulls an image through the proxy and reads every blob to the end.
func pullAll(ref string, p *proxytest.Proxy) error { return proxytest.PullAll(p.Host, ref) }

func TestConcurrentColdPullsShareOneFetch(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	up.Push(t, "test/app:1", img)
	up.ResetCounts()
	p := proxytest.Start(t, proxytest.Config(t, up))

	const clients = 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pullAll(up.Name+"/test/app:1", p)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	cfgName, _ := img.ConfigName()
	layers, _ := img.Layers()
	blobs := []v1.Hash{cfgName}
	for _, l := range layers {
		d, _ := l.Digest()
		blobs = append(blobs, d)
	}
	for _, d := range blobs {
		if n := up.BlobGETs("test/app", d); n != 1 {
			t.Errorf("blob %s fetched %d times from upstream, want 1", d, n)
		}
	}
	if n := up.Count(http.MethodGet, "/v2/test/app/manifests/1"); n != 1 {
		t.Errorf("manifest fetched %d times from upstream, want 1", n)
	}
}

func TestRestartServesCacheWithoutUpstream(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 2)
	dgst := up.Push(t, "test/app:1", img)
	cfg := proxytest.Config(t, up)
	p := proxytest.Start(t, cfg)
	if err := pullAll(up.Name+"/test/app:1", p); err != nil {
		t.Fatal(err)
	}
	p.Close()
	up.Close()

	// Past the tag TTL, so the tag must be re-resolved and the dead upstream is noticed.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	p2 := proxytest.Start(t, cfg, proxy.WithClock(later))
	for _, ref := range []string{up.Name + "/test/app:1", up.Name + "/test/app@" + dgst.String()} {
		if err := pullAll(ref, p2); err != nil {
			t.Fatalf("%s after restart with the upstream down: %v", ref, err)
		}
	}
	// A tag never seen cannot be served from anywhere.
	resp, body := get(t, http.MethodGet, p2.URL+"/v2/"+up.Name+"/test/app/manifests/2", nil)
	if resp.StatusCode < 500 {
		t.Fatalf("unknown tag with upstream down: %d %s", resp.StatusCode, body)
	}
}

func TestTagTTL(t *testing.T) {
	up := proxytest.NewUpstream(t)
	first := up.Push(t, "test/app:1", randomImage(t, 1))
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithClock(clock))
	url := p.URL + "/v2/" + up.Name + "/test/app/manifests/1"
	digestOf := func() string {
		resp, body := get(t, http.MethodGet, url, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		return resp.Header.Get("Docker-Content-Digest")
	}
	if d := digestOf(); d != first.String() {
		t.Fatalf("got %s", d)
	}
	moved := up.Push(t, "test/app:1", randomImage(t, 1))
	up.ResetCounts()
	if d := digestOf(); d != first.String() {
		t.Fatalf("within the TTL the tag moved to %s", d)
	}
	if n := up.Total(); n != 0 {
		t.Fatalf("within the TTL the upstream was asked %d times", n)
	}
	advance(6 * time.Minute)
	if d := digestOf(); d != moved.String() {
		t.Fatalf("after the TTL the tag still points to %s", d)
	}
	// The old digest stays pullable by digest.
	resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/"+first.String(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("old digest: %d", resp.StatusCode)
	}
	// 5xx from the upstream: the last known digest is served (stale-if-error).
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/v2/" {
			return false
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	advance(6 * time.Minute)
	if d := digestOf(); d != moved.String() {
		t.Fatalf("stale-if-error served %s", d)
	}
}

func TestFaultyUpstream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request, body []byte)
	}{
		{"5xx", func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}},
		{"hung headers", func(w http.ResponseWriter, r *http.Request, body []byte) {
			<-r.Context().Done() // no status line until the proxy gives up (upstream_timeout)
		}},
		{"wrong bytes", func(w http.ResponseWriter, r *http.Request, body []byte) {
			bad := append([]byte(nil), body...)
			bad[len(bad)/2] ^= 0xff
			w.Header().Set("Content-Length", strconv.Itoa(len(bad)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(bad)
		}},
		{"truncated body", func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body[:len(body)/2])
		}},
		{"connection reset", func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
					_ = tc.SetLinger(0) // RST, not FIN
				}
				conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := proxytest.NewUpstream(t)
			img := randomImage(t, 1)
			up.Push(t, "test/app:1", img)
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			rc, _ := layers[0].Compressed()
			body, _ := io.ReadAll(rc)
			up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
					tc.fault(w, r, body)
					return true
				}
				return false
			})
			cfg := proxytest.Config(t, up)
			cfg.UpstreamTimeout = 300 * time.Millisecond
			cfg.UpstreamBackoff = time.Millisecond // the healing fetch below is not held back
			p := proxytest.Start(t, cfg)
			url := p.URL + "/v2/" + up.Name + "/test/app/blobs/" + ld.String()
			if resp, mb := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("manifest: %d %s", resp.StatusCode, mb)
			}

			// The client streaming the blob sees a failed transfer, never a complete bad blob.
			resp, err := http.Get(url)
			if err == nil {
				got, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil && resp.StatusCode == http.StatusOK && digest.FromBytes(got).String() == ld.String() {
					t.Fatal("bad upstream content was served as good")
				}
				if rerr == nil && resp.StatusCode == http.StatusOK {
					t.Fatalf("client got a complete 200 response of %d bytes from a faulty upstream", len(got))
				}
			}
			// A ranged request (not streamed) gets an error envelope.
			r2, b2 := get(t, http.MethodGet, url, map[string]string{"Range": "bytes=0-9"})
			if r2.StatusCode < 500 || !strings.Contains(string(b2), `"errors"`) {
				t.Fatalf("ranged request: %d %s", r2.StatusCode, b2)
			}
			if _, err := p.Store.StatBlob(context.Background(), digest.Digest(ld.String())); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("faulty content was stored: %v", err)
			}
			// Once the upstream behaves, the same blob is fetched and served.
			up.SetFault(nil)
			time.Sleep(5 * time.Millisecond) // past the back-off
			r3, b3 := get(t, http.MethodGet, url, nil)
			if r3.StatusCode != http.StatusOK || digest.FromBytes(b3).String() != ld.String() {
				t.Fatalf("good fetch after fault: %d %.300s", r3.StatusCode, b3)
			}
			if n := checkStoredBlobs(t, p.Store); n < 1 {
				t.Fatalf("%d blobs stored after the healed pull, want the layer", n)
			}
		})
	}
}

// checkStoredBlobs hashes every blob the store holds, through the store's own driver
// (the filesystem or S3): each must match the digest it is stored under. It returns
// how many there are.
func checkStoredBlobs(t *testing.T, store *storage.Store) int {
	t.Helper()
	ctx := context.Background()
	blobs, err := store.Blobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, bi := range blobs {
		rc, err := store.OpenBlob(ctx, bi.Digest)
		if err != nil {
			t.Fatal(err)
		}
		v := bi.Digest.Verifier()
		_, err = io.Copy(v, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !v.Verified() {
			t.Errorf("blob stored as %s does not hash to it", bi.Digest)
		}
	}
	return len(blobs)
}

func TestFaultyManifest(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	dgst := up.Push(t, "test/app:1", img)
	raw, _ := img.RawManifest()
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/"+dgst.String()) {
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
			_, _ = w.Write(append(raw, ' '))
			return true
		}
		return false
	})
	p := proxytest.Start(t, proxytest.Config(t, up))
	byDigest := p.URL + "/v2/" + up.Name + "/test/app/manifests/" + dgst.String()
	resp, body := get(t, http.MethodGet, byDigest, nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if _, ok := p.Store.HasManifest(up.Name+"/test/app", digest.Digest(dgst.String())); ok {
		t.Fatal("mismatching manifest was stored")
	}
	up.SetFault(nil)
	resp, _ = get(t, http.MethodGet, byDigest, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != dgst.String() {
		t.Fatalf("good fetch after fault: %d", resp.StatusCode)
	}
}

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

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/storage"
)

// layerFault serves the first layer of img with serve instead of the registry.
func layerFault(t *testing.T, up *proxytest.Upstream, img v1.Image, serve func(w http.ResponseWriter, r *http.Request, body []byte)) v1.Hash {
	t.Helper()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	body, _ := io.ReadAll(rc)
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			serve(w, r, body)
			return true
		}
		return false
	})
	return ld
}

func TestSlowBlobOutlivesUpstreamTimeout(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	up.Push(t, "test/app:1", img)
	// Five chunks 100ms apart: the body takes longer than upstream_timeout, and no
	// silence is as long as it.
	ld := layerFault(t, up, img, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		step := len(body)/5 + 1
		for off := 0; off < len(body); off += step {
			time.Sleep(100 * time.Millisecond)
			_, _ = w.Write(body[off:min(off+step, len(body))])
			w.(http.Flusher).Flush()
		}
	})
	cfg := proxytest.Config(t, up)
	cfg.UpstreamTimeout = 300 * time.Millisecond
	p := proxytest.Start(t, cfg)
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/blobs/"+ld.String(), nil)
	if resp.StatusCode != http.StatusOK || digest.FromBytes(b).String() != ld.String() {
		t.Fatalf("slow blob: %d, %d bytes", resp.StatusCode, len(b))
	}
	if _, err := p.Store.StatBlob(context.Background(), digest.Digest(ld.String())); err != nil {
		t.Fatalf("slow blob was not stored: %v", err)
	}
}

func TestStalledBlobIsAbortedByIdleTimeout(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	up.Push(t, "test/app:1", img)
	// Half the body, then silence until the proxy hangs up.
	ld := layerFault(t, up, img, func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	cfg := proxytest.Config(t, up)
	cfg.UpstreamIdleTimeout = 200 * time.Millisecond
	p := proxytest.Start(t, cfg)
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	url := p.URL + "/v2/" + up.Name + "/test/app/blobs/" + ld.String()
	// Streamed: the client sees a cut transfer, never a complete 200.
	if resp, err := http.Get(url); err == nil {
		_, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == http.StatusOK {
			t.Fatal("a stalled upstream transfer ended as a complete 200")
		}
	}
	// Ranged (not streamed): the 502 envelope names the idle timeout.
	resp, b := get(t, http.MethodGet, url, map[string]string{"Range": "bytes=0-9"})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "upstream_idle_timeout") {
		t.Fatalf("ranged request: %d %s", resp.StatusCode, b)
	}
	if _, err := p.Store.StatBlob(context.Background(), digest.Digest(ld.String())); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a stalled transfer was stored: %v", err)
	}
	// One upstream GET per client request (a client may retry a cut response), each
	// ended by the idle timeout rather than shared with the next.
	asked := len(p.Requests("/blobs/" + ld.String()))
	if n := up.BlobGETs("test/app", ld); n != asked {
		t.Fatalf("upstream GETs of the blob: %d, client requests: %d", n, asked)
	}
}

func TestUpstreamStatusesKeepTheirMeaning(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	up.Push(t, "test/app:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	p := proxytest.Start(t, proxytest.Config(t, up))
	// The manifest of the tag is stored (so its layer may be asked for); the blob and
	// the manifest by digest are not, so each request below goes upstream.
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	other := randomImage(t, 1)
	od := up.Push(t, "test/app:2", other)
	for _, tc := range []struct {
		name, path string
		status     int
		retryAfter string
		wantStatus int
		wantCode   string
		wantRetry  string
		wantMsg    []string
	}{
		{"blob 429 with Retry-After", "/blobs/" + ld.String(), 429, "7", 429, "TOOMANYREQUESTS", "7", []string{up.Name, "rate-limiting"}},
		{"blob 429 without Retry-After", "/blobs/" + ld.String(), 429, "", 429, "TOOMANYREQUESTS", "30", []string{up.Name}},
		{"blob 401", "/blobs/" + ld.String(), 401, "", 404, "NAME_UNKNOWN", "", []string{up.Name, "credentials", "anonymously", "HTTP 401"}},
		{"blob 403", "/blobs/" + ld.String(), 403, "", 404, "NAME_UNKNOWN", "", []string{up.Name, "credentials", "HTTP 403"}},
		{"manifest 429", "/manifests/" + od.String(), 429, "9", 429, "TOOMANYREQUESTS", "9", []string{up.Name}},
		{"manifest 401", "/manifests/" + od.String(), 401, "", 404, "NAME_UNKNOWN", "", []string{up.Name, "credentials", "anonymously"}},
		{"manifest 403", "/manifests/" + od.String(), 403, "", 404, "NAME_UNKNOWN", "", []string{up.Name, "credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, tc.path) {
					return false
				}
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"no"}]}`))
				return true
			})
			defer up.SetFault(nil)
			resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app"+tc.path, nil)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(b), `"`+tc.wantCode+`"`) {
				t.Fatalf("status %d %s, want %d %s", resp.StatusCode, b, tc.wantStatus, tc.wantCode)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tc.wantRetry)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(string(b), m) {
					t.Errorf("message %s does not name %q", b, m)
				}
			}
		})
	}
}

func TestBlackholedUpstreamBacksOff(t *testing.T) {
	up := proxytest.NewUpstream(t)
	dgst := up.Push(t, "test/app:1", randomImage(t, 1))
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := proxytest.Config(t, up)
	cfg.UpstreamTimeout = 200 * time.Millisecond
	cfg.UpstreamBackoff = 30 * time.Second
	p := proxytest.Start(t, cfg, proxy.WithClock(clock))
	url := p.URL + "/v2/" + up.Name + "/test/app/manifests/1"
	pull := func() {
		t.Helper()
		resp, b := get(t, http.MethodGet, url, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != dgst.String() {
			t.Fatalf("tag pull: %d %s", resp.StatusCode, b)
		}
	}
	pull()
	requests := func() int {
		n := 0
		up.Walk(func(_ string, c int) { n += c })
		return n
	}

	// Blackholed: every request hangs until the proxy gives up on it.
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	advance(time.Hour) // past the tag TTL: the tag must be re-resolved
	up.ResetCounts()
	pull() // waits for the timeout once, then serves the stored digest
	if n := requests(); n == 0 {
		t.Fatal("the first pull past the TTL did not ask the upstream")
	}
	up.ResetCounts()
	for range 3 {
		advance(5 * time.Second) // within the back-off
		pull()
	}
	if n := requests(); n != 0 {
		t.Fatalf("within the back-off the upstream was asked %d times", n)
	}

	// Past the back-off the upstream is asked again, and a good answer ends it.
	up.SetFault(nil)
	advance(cfg.UpstreamBackoff)
	pull()
	if n := requests(); n == 0 {
		t.Fatal("past the back-off the upstream was not asked")
	}
}

func TestOversizedManifestIsRefused(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	dgst := up.Push(t, "test/app:1", img)
	raw, _ := img.RawManifest()
	written := make(chan int64, 1)
	// An endless manifest without Content-Length: only reading can tell it is too big.
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/manifests/endless") {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat(" ", 64<<10))
		var n int64
		for n < 200<<20 {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			n += int64(len(chunk))
		}
		written <- n
		return true
	})
	cfg := proxytest.Config(t, up)
	cfg.Limits.ManifestBytes = config.ByteSize(len(raw) - 1)
	p := proxytest.Start(t, cfg)
	for _, ref := range []string{"1", dgst.String()} { // Content-Length says it at once
		resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/"+ref, nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "limits.manifest_bytes") {
			t.Fatalf("%s: %d %s", ref, resp.StatusCode, b)
		}
	}
	if _, ok := p.Store.HasManifest(up.Name+"/test/app", digest.Digest(dgst.String())); ok {
		t.Fatal("an oversized manifest was stored")
	}
	resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/endless", nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "limits.manifest_bytes") {
		t.Fatalf("endless manifest: %d %s", resp.StatusCode, b)
	}
	// The proxy hung up long before the upstream could send 200 MiB (ggcr alone would
	// read 100 MiB): what was written is the limit plus what socket buffers hold.
	if n := <-written; n >= 32<<20 {
		t.Fatalf("the upstream got to write %d bytes of an oversized manifest", n)
	}
}

func TestNameLimits(t *testing.T) {
	up := proxytest.NewUpstream(t)
	p := proxytest.Start(t, proxytest.Config(t, up))
	long := strings.Repeat("a", 129)
	many := strings.TrimSuffix(strings.Repeat(strings.Repeat("b", 100)+"/", 3), "/")
	for _, name := range []string{"test/" + long, many} {
		resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/"+name+"/manifests/1", nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "NAME_INVALID") {
			t.Fatalf("%d-character name: %d %s", len(name), resp.StatusCode, b)
		}
	}
	if n := up.Total(); n != 0 {
		t.Fatalf("invalid names made %d upstream requests", n)
	}
}

func TestRangeLimit(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	up.Push(t, "test/app:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	p := proxytest.Start(t, proxytest.Config(t, up))
	if err := pullAll(up.Name+"/test/app:1", p); err != nil {
		t.Fatal(err)
	}
	url := p.URL + "/v2/" + up.Name + "/test/app/blobs/" + ld.String()
	ranges := func(n int) string {
		rs := make([]string, n)
		for i := range rs {
			rs[i] = strconv.Itoa(i) + "-" + strconv.Itoa(i)
		}
		return "bytes=" + strings.Join(rs, ",")
	}
	if resp, b := get(t, http.MethodGet, url, map[string]string{"Range": ranges(16)}); resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("16 ranges: %d %s", resp.StatusCode, b)
	}
	for _, n := range []int{17, 1000} {
		resp, b := get(t, http.MethodGet, url, map[string]string{"Range": ranges(n)})
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(string(b), "RANGE_INVALID") || len(b) > 1024 {
			t.Fatalf("%d ranges: %d, %d bytes: %.200s", n, resp.StatusCode, len(b), b)
		}
	}
}

func TestTooManyLayersIsDeniedUnfetched(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	up.Push(t, "test/app:1", img)
	up.Push(t, "test/ok:1", randomImage(t, 2))
	cfg := proxytest.Config(t, up)
	cfg.Limits.Layers = 2
	cfg.Scan.OnScanError = "allow" // a limit is not a scan error: this does not let it through
	sc := &fakeScanner{}
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()))
	up.ResetCounts()
	resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "DENIED") || !strings.Contains(string(b), "3 layers, more than 2 (limits.layers)") {
		t.Fatalf("3 layers: %d %s", resp.StatusCode, b)
	}
	for _, d := range blobsOf(t, img) {
		if n := up.BlobGETs("test/app", d); n != 0 {
			t.Errorf("blob %s of a denied image fetched %d times", d, n)
		}
	}
	if n := sc.calls.Load(); n != 0 {
		t.Errorf("an image over limits.layers was scanned %d times", n)
	}
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/ok/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("2 layers: %d %s", resp.StatusCode, b)
	}
}

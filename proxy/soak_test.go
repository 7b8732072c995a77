package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// envInt reads a positive integer from the environment, def when unset, bounded by max
// so a typo cannot start a soak that never ends.
func envInt(b *testing.B, key string, def, max int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		b.Fatalf("%s=%q: want 1..%d", key, s, max)
	}
	return n
}

// imageBlobs are the config and layer digests of img.
func imageBlobs(b *testing.B, img v1.Image) []v1.Hash {
	b.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		b.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	blobs := []v1.Hash{cfg}
	for _, l := range layers {
		d, _ := l.Digest()
		blobs = append(blobs, d)
	}
	return blobs
}

// BenchmarkSoak is SOAK_CLIENTS clients (default 50) for SOAK_SECONDS seconds (default 5)
// each doing warm pulls of one image judged once through a scanning gate: the manifest by
// tag, then every blob. It reports failed requests, p50 and p99 latency and requests/s.
func BenchmarkSoak(b *testing.B) {
	clients := envInt(b, "SOAK_CLIENTS", 50, 1000)
	seconds := envInt(b, "SOAK_SECONDS", 5, 600)
	up := proxytest.NewUpstream(b)
	img := randomImage(b, 3)
	up.Push(b, "soak/app:1", img)
	sc := &fakeScanner{}
	p := proxytest.Start(b, proxytest.Config(b, up), proxy.WithScanner(sc, policy.DefaultSet()))
	if err := pullAll(up.Name+"/soak/app:1", p); err != nil {
		b.Fatal(err)
	}
	base := p.URL + "/v2/" + up.Name + "/soak/app/"
	urls := []string{base + "manifests/1"}
	for _, d := range imageBlobs(b, img) {
		urls = append(urls, base+"blobs/"+d.String())
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true},
	}
	defer client.CloseIdleConnections()
	get := func(u string) error {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", string(types.DockerManifestSchema2))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d", u, resp.StatusCode)
		}
		return nil
	}

	var (
		lat     []time.Duration
		errs    int
		elapsed time.Duration
		first   error
	)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		end := start.Add(time.Duration(seconds) * time.Second)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				var mine []time.Duration
				bad := 0
				var firstErr error
				for time.Now().Before(end) {
					for _, u := range urls {
						t0 := time.Now()
						if err := get(u); err != nil {
							bad++
							if firstErr == nil {
								firstErr = err
							}
							continue
						}
						mine = append(mine, time.Since(t0))
					}
				}
				mu.Lock()
				lat, errs = append(lat, mine...), errs+bad
				if first == nil {
					first = firstErr
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		elapsed += time.Since(start)
	}
	b.StopTimer()
	if first != nil {
		b.Logf("first error: %v", first)
	}
	if n := sc.calls.Load(); n != 1 {
		b.Errorf("image scanned %d times, want 1", n)
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(errs), "errors")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat)+errs)/elapsed.Seconds(), "req/s")
}

// BenchmarkColdPull50 is 50 clients pulling one image nobody pulled before at once, a new
// image each iteration, through a scanning gate. Every blob should come from the upstream
// once and the image be scanned once, however many wait.
func BenchmarkColdPull50(b *testing.B) {
	const clients = 50
	up := proxytest.NewUpstream(b)
	sc := &fakeScanner{}
	p := proxytest.Start(b, proxytest.Config(b, up), proxy.WithScanner(sc, policy.DefaultSet()))
	var gets, blobs, errs int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		img := randomImage(b, 3)
		tag := fmt.Sprintf("cold/app:%d", i)
		up.Push(b, tag, img)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		b.StartTimer()
		var wg sync.WaitGroup
		errc := make(chan error, clients)
		for range clients {
			wg.Go(func() { errc <- proxytest.PullAll(p.Host, up.Name+"/"+tag, remote.WithContext(ctx)) })
		}
		wg.Wait()
		b.StopTimer()
		cancel()
		close(errc)
		for err := range errc {
			if err != nil {
				if errs == 0 {
					b.Logf("first error: %v", err)
				}
				errs++
			}
		}
		for _, d := range imageBlobs(b, img) {
			gets += up.BlobGETs("cold/app", d)
			blobs++
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(errs), "errors")
	b.ReportMetric(float64(gets)/float64(blobs), "upstream-GETs/blob")
	b.ReportMetric(float64(sc.calls.Load())/float64(b.N), "scans/image")
}

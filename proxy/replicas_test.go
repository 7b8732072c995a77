package proxy_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// replicas starts one proxy per scanner, all on one S3 bucket and PostgreSQL database,
// each scanning with its own scanner under the default policy.
func replicas(t *testing.T, up *proxytest.Upstream, mutate func(*config.Config), scanners ...gate.Scanner) []*proxytest.Proxy {
	t.Helper()
	var out []*proxytest.Proxy
	for i, cfg := range proxytest.ReplicaConfigs(t, len(scanners), up) {
		if mutate != nil {
			mutate(cfg)
		}
		out = append(out, proxytest.Start(t, cfg, proxy.WithScanner(scanners[i], policy.DefaultSet())))
	}
	return out
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicasScanOnceInTotal: 20 concurrent cold pulls of one new image, spread over
// two replicas on one S3 bucket and database, make one scan and one upstream GET per
// blob in total: the replica that claimed the scan ingests, the other waits for its facts
// and serves the blobs from the shared store.
func TestReplicasScanOnceInTotal(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	up.Push(t, "test/app:1", img)
	up.ResetCounts()
	// The scan lasts long enough for every pull to arrive while it runs.
	sa, sb := &fakeScanner{delay: 300 * time.Millisecond}, &fakeScanner{delay: 300 * time.Millisecond}
	ps := replicas(t, up, nil, sa, sb)

	const clients = 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			if err := pullAll(up.Name+"/test/app:1", ps[i%2]); err != nil {
				errs <- fmt.Errorf("client %d (replica %d): %w", i, i%2, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if a, b := sa.calls.Load(), sb.calls.Load(); a+b != 1 {
		t.Errorf("%d scans on A and %d on B, want 1 in total", a, b)
	}
	for _, d := range blobsOf(t, img) {
		if n := up.BlobGETs("test/app", d); n != 1 {
			t.Errorf("blob %s: %d upstream GETs, want 1 across both replicas", d, n)
		}
	}
}

// TestReplicasDenyOnBoth: an image denied on one replica is denied on the other from the
// shared facts, without a second scan.
func TestReplicasDenyOnBoth(t *testing.T) {
	up := proxytest.NewUpstream(t)
	vuln := randomImage(t, 2)
	up.Push(t, "team/vuln:1", vuln)
	cfgName, _ := vuln.ConfigName()
	sa, sb := &fakeScanner{vulns: map[v1.Hash][]policy.Vulnerability{cfgName: opensslVulns}}, &fakeScanner{}
	ps := replicas(t, up, nil, sa, sb)
	for i, p := range ps {
		resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)
		if resp.StatusCode != http.StatusForbidden || errCode(t, body) != "DENIED" {
			t.Fatalf("replica %d: %d %s, want 403 DENIED", i, resp.StatusCode, body)
		}
	}
	if a, b := sa.calls.Load(), sb.calls.Load(); a != 1 || b != 0 {
		t.Errorf("%d scans on A and %d on B, want 1 on A only", a, b)
	}
}

// TestReplicaTakesOverAbandonedScan: replica A dies mid-scan — its connection to the
// database is gone, so its claim is neither renewed nor released, and its scan never
// finishes — and the image's next pull on replica B claims the lapsed scan and completes
// it.
func TestReplicaTakesOverAbandonedScan(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 2)
	up.Push(t, "test/app:1", img)
	sa, sb := &fakeScanner{block: make(chan struct{})}, &fakeScanner{}
	ps := replicas(t, up, func(c *config.Config) { c.Scan.Lease = time.Second }, sa, sb)
	a, b := ps[0], ps[1]
	t.Cleanup(func() { close(sa.block) }) // runs before A's Close, which waits for its scan

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = pullAll(up.Name+"/test/app:1", a) }) // fails: A dies under it
	waitFor(t, 10*time.Second, "replica A never started its scan", func() bool { return sa.calls.Load() == 1 })
	a.Store.Close() // the crash: no renewal, no release, no facts from A
	defer a.Close() // before wg.Wait: A's client returns once A is stopped

	start := time.Now()
	if err := pullAll(up.Name+"/test/app:1", b); err != nil {
		t.Fatalf("pull on B after A died mid-scan: %v", err)
	}
	if n := sb.calls.Load(); n != 1 {
		t.Errorf("%d scans on B, want 1 (it took A's over)", n)
	}
	t.Logf("B took the scan over and served the image in %s (lease 1s)", time.Since(start).Round(time.Millisecond))
}

// TestReplicasRestartedKeepEverything: both replicas stop and start again on the shared
// bucket and database; with the upstream gone, both still serve the allowed image whole
// and deny the vulnerable one with its CVE, and nothing is scanned again.
func TestReplicasRestartedKeepEverything(t *testing.T) {
	up := proxytest.NewUpstream(t)
	vuln, clean := randomImage(t, 2), randomImage(t, 2)
	up.Push(t, "team/vuln:1", vuln)
	up.Push(t, "team/clean:1", clean)
	cfgName, _ := vuln.ConfigName()
	vulns := map[v1.Hash][]policy.Vulnerability{cfgName: opensslVulns}
	cfgs := proxytest.ReplicaConfigs(t, 2, up)
	start := func() ([]*proxytest.Proxy, []*fakeScanner) {
		var ps []*proxytest.Proxy
		var scs []*fakeScanner
		for _, cfg := range cfgs {
			sc := &fakeScanner{vulns: vulns}
			scs = append(scs, sc)
			ps = append(ps, proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet())))
		}
		return ps, scs
	}
	ps, _ := start()
	if resp, body := get(t, http.MethodGet, ps[0].URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("vulnerable image on A: %d %s", resp.StatusCode, body)
	}
	if err := pullAll(up.Name+"/team/clean:1", ps[1]); err != nil {
		t.Fatalf("clean image on B: %v", err)
	}
	for _, p := range ps {
		p.Close()
	}

	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusServiceUnavailable) // the upstream is gone
		return true
	})
	ps, scs := start()
	for i, p := range ps {
		resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "CVE-2023-5363") {
			t.Fatalf("replica %d after the restart, vulnerable image: %d %s", i, resp.StatusCode, body)
		}
		if err := pullAll(up.Name+"/team/clean:1", p); err != nil {
			t.Fatalf("replica %d after the restart, clean image: %v", i, err)
		}
	}
	for i, sc := range scs {
		if n := sc.calls.Load(); n != 0 {
			t.Errorf("replica %d scanned %d times after the restart, want 0", i, n)
		}
	}
}

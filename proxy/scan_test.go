package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// fakeScanner reports the vulnerabilities listed for an image's config digest; it reads
// every layer to the end, as a real scanner does, so ingest is exercised.
type fakeScanner struct {
	mu    sync.Mutex
	vulns map[v1.Hash][]policy.Vulnerability
	err   error
	delay time.Duration
	calls atomic.Int64
	block chan struct{} // when set, scans wait on it
}

func (f *fakeScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	f.calls.Add(1)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 32<<10)
		for {
			if _, err := rc.Read(buf); err != nil {
				break
			}
		}
		rc.Close()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	cfg, _ := img.ConfigName()
	report, _ := json.Marshal(map[string]any{"SchemaVersion": 2, "ArtifactName": ref})
	return &gate.ScanResult{OS: "alpine 3.19.1", Vulnerabilities: f.vulns[cfg], Report: report, DBVersion: "test"}, nil
}

var opensslVulns = []policy.Vulnerability{
	{ID: "CVE-2024-0727", Package: "libcrypto3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r5", Severity: "MEDIUM"},
	{ID: "CVE-2023-5363", Package: "libcrypto3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r3", Severity: "HIGH"},
	{ID: "CVE-2023-6129", Package: "libssl3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r3", Severity: "MEDIUM"},
	{ID: "CVE-2024-9999", Package: "busybox", InstalledVersion: "1.36.1-r15", Severity: "CRITICAL"}, // no fix: allowed by default
}

func scanSetup(t *testing.T, sc *fakeScanner, mutate func(*config.Config), opts ...proxy.Option) (*proxytest.Upstream, *proxytest.Proxy, v1.Image, v1.Image) {
	t.Helper()
	up := proxytest.NewUpstream(t)
	vuln, clean := randomImage(t, 2), randomImage(t, 1)
	up.Push(t, "team/vuln:1", vuln)
	up.Push(t, "team/clean:1", clean)
	cfgName, _ := vuln.ConfigName()
	if sc.vulns == nil {
		sc.vulns = map[v1.Hash][]policy.Vulnerability{cfgName: opensslVulns}
	}
	cfg := proxytest.Config(t, up)
	if mutate != nil {
		mutate(cfg)
	}
	return up, proxytest.Start(t, cfg, append([]proxy.Option{proxy.WithScanner(sc, policy.DefaultSet())}, opts...)...), vuln, clean
}

func TestScanGateDeniesAndCaches(t *testing.T) {
	sc := &fakeScanner{}
	up, p, vuln, _ := scanSetup(t, sc, nil)
	vulnDigest, _ := vuln.Digest()

	resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)
	if resp.StatusCode != http.StatusForbidden || errCode(t, body) != "DENIED" {
		t.Fatalf("vulnerable image: %d %s", resp.StatusCode, body)
	}
	msg := string(body)
	for _, want := range []string{up.Name + "/team/vuln:1", vulnDigest.String(), `policy \"default\"`, `rule \"vulnerabilities\"`,
		"CVE-2023-5363 in libcrypto3 3.1.4-r2 → 3.1.4-r3 (HIGH)", "/api/v1/images/" + vulnDigest.String() + "/report"} {
		if !strings.Contains(msg, want) {
			t.Errorf("denial lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "CVE-2024-9999") || strings.Contains(msg, "CVE-2024-0727") {
		t.Errorf("denial cites findings the rule does not deny on: %s", msg)
	}
	if err := pullAll(up.Name+"/team/clean:1", p); err != nil {
		t.Fatalf("clean image: %v", err)
	}
	if n := sc.calls.Load(); n != 2 {
		t.Fatalf("%d scans, want 2", n)
	}
	// Known digests are answered from the stored verdict: no scan.
	for range 3 {
		resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/"+vulnDigest.String(), nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("second pull: %d", resp.StatusCode)
		}
		if err := pullAll(up.Name+"/team/clean:1", p); err != nil {
			t.Fatal(err)
		}
	}
	if n := sc.calls.Load(); n != 2 {
		t.Fatalf("%d scans after repeat pulls, want 2", n)
	}
	// The stored report is served.
	resp, body = get(t, http.MethodGet, p.URL+"/api/v1/images/"+vulnDigest.String()+"/report?repository="+up.Name+"/team/vuln", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), up.Name+"/team/vuln@"+vulnDigest.String()) {
		t.Fatalf("report: %d %s", resp.StatusCode, body)
	}
	resp, _ = get(t, http.MethodGet, p.URL+"/api/v1/images/sha256:"+strings.Repeat("0", 64)+"/report", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown report: %d", resp.StatusCode)
	}
}

func TestScanGateOneScanForConcurrentPulls(t *testing.T) {
	sc := &fakeScanner{delay: 200 * time.Millisecond}
	up, p, _, clean := scanSetup(t, sc, nil)
	const clients = 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- pullAll(up.Name+"/team/clean:1", p) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := sc.calls.Load(); n != 1 {
		t.Fatalf("%d scans for %d concurrent first pulls, want 1", n, clients)
	}
	layers, _ := clean.Layers()
	ld, _ := layers[0].Digest()
	if n := up.BlobGETs("team/clean", ld); n != 1 {
		t.Fatalf("layer fetched %d times", n)
	}
}

func TestScanGateFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sc      *fakeScanner
		cfg     func(*config.Config)
		status  int
		message string
	}{
		{"scanner error", &fakeScanner{err: errors.New("vulnerability DB is not loaded")}, nil, http.StatusForbidden, "vulnerability DB is not loaded"},
		{"scan timeout", &fakeScanner{delay: 5 * time.Second}, func(c *config.Config) { c.Scan.Timeout = 100 * time.Millisecond }, http.StatusForbidden, "scan timed out"},
		{"explicit allow on error", &fakeScanner{err: errors.New("boom")}, func(c *config.Config) { c.Scan.OnScanError = "allow" }, http.StatusOK, ""},
		{"pull waits past scan.wait", &fakeScanner{delay: 2 * time.Second}, func(c *config.Config) { c.Scan.Wait = 100 * time.Millisecond }, http.StatusServiceUnavailable, "is being scanned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, p, _, _ := scanSetup(t, tc.sc, tc.cfg)
			resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/clean/manifests/1", nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.message != "" && !strings.Contains(string(body), tc.message) {
				t.Fatalf("body lacks %q: %s", tc.message, body)
			}
			if tc.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
		})
	}
	// A failed scan is not final: once the scanner works, the next pull scans again.
	sc := &fakeScanner{err: errors.New("transient")}
	up, p, _, _ := scanSetup(t, sc, nil)
	url := p.URL + "/v2/" + up.Name + "/team/clean/manifests/1"
	if resp, _ := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	sc.mu.Lock()
	sc.err = nil
	sc.mu.Unlock()
	if resp, body := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the scanner recovered: %d %s", resp.StatusCode, body)
	}
}

func TestRestartMidScanRescans(t *testing.T) {
	sc := &fakeScanner{block: make(chan struct{})}
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	dgst := up.Push(t, "team/app:1", img)
	cfg := proxytest.Config(t, up)
	cfg.Scan.Wait = 200 * time.Millisecond
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()))
	resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/manifests/1", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("mid-scan: %d", resp.StatusCode)
	}
	p.Close() // the "crash": the scan never finishes
	close(sc.block)

	sc2 := &fakeScanner{}
	p2 := proxytest.Start(t, cfg, proxy.WithScanner(sc2, policy.DefaultSet()))
	deadline := time.Now().Add(10 * time.Second)
	for sc2.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if sc2.calls.Load() == 0 {
		t.Fatal("the interrupted scan was not started again after the restart")
	}
	resp, body := get(t, http.MethodGet, p2.URL+"/v2/"+up.Name+"/team/app/manifests/"+dgst.String(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after rescan: %d %s", resp.StatusCode, body)
	}
	if n := sc2.calls.Load(); n != 1 {
		t.Fatalf("%d scans after restart, want 1", n)
	}
	_ = fmt.Sprint
}

func TestMovedTagIsRescanned(t *testing.T) {
	sc := &fakeScanner{}
	up := proxytest.NewUpstream(t)
	first := up.Push(t, "team/app:1", randomImage(t, 1))
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()), proxy.WithClock(clock))
	if err := pullAll(up.Name+"/team/app:1", p); err != nil {
		t.Fatal(err)
	}
	moved := up.Push(t, "team/app:1", randomImage(t, 1))
	mu.Lock()
	now = now.Add(time.Hour) // past the tag TTL
	mu.Unlock()
	resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/manifests/1", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != moved.String() {
		t.Fatalf("moved tag: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if n := sc.calls.Load(); n != 2 {
		t.Fatalf("%d scans, want 2: the new digest goes through the gate", n)
	}
	// The old digest's verdict stays valid for pulls by digest.
	resp, _ = get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/manifests/"+first.String(), nil)
	if resp.StatusCode != http.StatusOK || sc.calls.Load() != 2 {
		t.Fatalf("old digest: %d, scans %d", resp.StatusCode, sc.calls.Load())
	}
}

func TestWarmUpMakesFirstPullsWarm(t *testing.T) {
	sc := &fakeScanner{}
	up, p, _, _ := scanSetup(t, sc, nil)
	idx, _, _ := multiArch(t)
	up.PushIndex(t, "team/multi:1", idx)
	results := p.Gold.WarmAll(context.Background(), []string{up.Name + "/team/clean:1", up.Name + "/team/vuln:1", up.Name + "/team/multi:1", up.Name + "/team/missing:1"})
	got := []string{}
	for _, r := range results {
		got = append(got, r.Verdict)
	}
	if strings.Join(got, ",") != "allowed,denied,allowed,error" || results[2].Platforms != 2 || results[1].Counts["HIGH"] != 1 {
		t.Fatalf("warm results %+v", results)
	}
	scans, upstream := sc.calls.Load(), up.Total()
	for _, ref := range []string{up.Name + "/team/clean:1", up.Name + "/team/multi:1"} {
		if err := pullAll(ref, p); err != nil {
			t.Fatal(err)
		}
	}
	if sc.calls.Load() != scans {
		t.Fatalf("developer pulls after warm-up scanned %d times", sc.calls.Load()-scans)
	}
	if n := up.Total() - upstream; n != 0 {
		t.Fatalf("developer pulls after warm-up asked the upstream %d times", n)
	}
}

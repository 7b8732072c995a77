package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

func mustSet(t *testing.T, yaml string) *policy.Set {
	t.Helper()
	s, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	strictYAML = "policies:\n  - name: strict\n    vulnerabilities: {severity: HIGH, only_fixable: true}\n"
	looseYAML  = "policies:\n  - name: loose\n    vulnerabilities: {severity: CRITICAL, only_fixable: true}\n"
)

func TestPolicyReloadFlipsCachedVerdicts(t *testing.T) {
	sc := &fakeScanner{}
	up := proxytest.NewUpstream(t)
	vuln := randomImage(t, 2)
	up.Push(t, "team/vuln:1", vuln)
	cfgName, _ := vuln.ConfigName()
	sc.vulns = map[v1.Hash][]policy.Vulnerability{cfgName: opensslVulns}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, mustSet(t, strictYAML)))
	url := p.URL + "/v2/" + up.Name + "/team/vuln/manifests/1"
	status := func() int {
		resp, _ := get(t, http.MethodGet, url, nil)
		return resp.StatusCode
	}
	if s := status(); s != http.StatusForbidden {
		t.Fatalf("strict: %d", s)
	}
	scans, reads, upstream := sc.calls.Load(), p.Store.BlobReads(), up.Total()

	for _, tc := range []struct {
		yaml    string
		flipped int
		status  int
	}{
		{looseYAML, 1, http.StatusOK},         // HIGH no longer denies: allowed
		{strictYAML, 1, http.StatusForbidden}, // and back
		{strictYAML, 0, http.StatusForbidden}, // same policy: nothing to do
	} {
		n, err := p.Gold.SetPolicy(mustSet(t, tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.flipped {
			t.Fatalf("flipped %d, want %d", n, tc.flipped)
		}
		if s := status(); s != tc.status {
			t.Fatalf("after reload: %d, want %d", s, tc.status)
		}
	}
	if sc.calls.Load() != scans || p.Store.BlobReads() != reads || up.Total() != upstream {
		t.Fatalf("reloads scanned %d, read %d layers, asked the upstream %d times: want 0, 0, 0",
			sc.calls.Load()-scans, p.Store.BlobReads()-reads, up.Total()-upstream)
	}
}

func TestAuditModeServesAndRecords(t *testing.T) {
	sc := &fakeScanner{}
	up, p, vuln, _ := scanSetup(t, sc, nil)
	_, err := p.Gold.SetPolicy(mustSet(t, "policies:\n  - name: rollout\n    mode: audit\n    vulnerabilities: {severity: HIGH}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pullAll(up.Name+"/team/vuln:1", p); err != nil {
		t.Fatalf("audit mode must serve: %v", err)
	}
	if n := p.Gold.AuditDenials(); n != 1 {
		t.Fatalf("audit denials %d, want 1", n)
	}
	d, _ := vuln.Digest()
	resp, body := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/verdict", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"audit":true`) || !strings.Contains(string(body), `"rule":"vulnerabilities"`) {
		t.Fatalf("recorded verdict: %d %s", resp.StatusCode, body)
	}
}

func TestExceptionExpiryFlipsOnItsOwn(t *testing.T) {
	sc := &fakeScanner{}
	var clockMu sync.Mutex
	clock := time.Date(2026, 12, 30, 12, 0, 0, 0, time.UTC)
	up, p, _, _ := scanSetup(t, sc, nil)
	p.Gold.SetClock(func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock })
	if _, err := p.Gold.SetPolicy(mustSet(t, strictYAML+"exceptions:\n  - id: CVE-2023-5363\n    reason: not reachable\n    expires: 2026-12-31\n")); err != nil {
		t.Fatal(err)
	}
	url := p.URL + "/v2/" + up.Name + "/team/vuln/manifests/1"
	if resp, body := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("with the exception: %d %s", resp.StatusCode, body)
	}
	scans := sc.calls.Load()
	clockMu.Lock()
	clock = clock.Add(48 * time.Hour)
	clockMu.Unlock()
	resp, body := get(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "CVE-2023-5363") {
		t.Fatalf("after expiry: %d %s", resp.StatusCode, body)
	}
	if sc.calls.Load() != scans {
		t.Fatal("expiry re-scanned instead of re-evaluating")
	}
}

package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// propagation is how soon a change on one replica must be in force on the others.
const propagation = 5 * time.Second

// statusOf is the status of GET url.
func statusOf(t *testing.T, url string, hdr map[string]string) int {
	t.Helper()
	resp, _ := get(t, http.MethodGet, url, hdr)
	return resp.StatusCode
}

// TestReplicasPolicyReload: a policy applied on replica A is in force on replica B within
// seconds, judgements B remembered from the old policy included, and B scans nothing.
func TestReplicasPolicyReload(t *testing.T) {
	up := proxytest.NewUpstream(t)
	vuln := randomImage(t, 1)
	up.Push(t, "team/vuln:1", vuln)
	cfgName, _ := vuln.ConfigName()
	vulns := map[v1.Hash][]policy.Vulnerability{cfgName: opensslVulns}
	sa, sb := &fakeScanner{vulns: vulns}, &fakeScanner{vulns: vulns}
	ps := replicas(t, up, nil, sa, sb)
	a, b := ps[0], ps[1]
	url := func(p *proxytest.Proxy) string { return p.URL + "/v2/" + up.Name + "/team/vuln/manifests/1" }
	for i, p := range ps { // denied by the default policy, and remembered so on each
		if code := statusOf(t, url(p), nil); code != http.StatusForbidden {
			t.Fatalf("replica %d under the default policy: %d, want 403", i, code)
		}
	}
	if _, err := a.Gold.SetPolicy(mustSet(t, looseYAML)); err != nil { // HIGH is allowed now
		t.Fatal(err)
	}
	if code := statusOf(t, url(a), nil); code != http.StatusOK {
		t.Fatalf("replica A under its new policy: %d, want 200", code)
	}
	waitFor(t, propagation, "replica B still denies under the policy A applied", func() bool {
		return statusOf(t, url(b), nil) == http.StatusOK
	})
	if n := sa.calls.Load() + sb.calls.Load(); n != 1 {
		t.Errorf("%d scans, want 1: a policy change judges the stored facts again", n)
	}
}

// TestReplicasRobots: a robot created on replica A works on replica B, which also stops
// letting anonymous clients pull now that robots exist; revoked on A, it fails on B, and
// once the last robot is revoked B lets anonymous clients pull again.
func TestReplicasRobots(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	ps := replicas(t, up, nil, &fakeScanner{}, &fakeScanner{})
	a, b := ps[0], ps[1]
	if err := pullAs(b, up.Name+"/team/app:1", authn.Anonymous); err != nil {
		t.Fatalf("anonymous pull with no robots: %v", err)
	}
	tok, err := a.Gold.AddRobot("ci", []string{up.Name + "/team/**"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	robot := &authn.Basic{Username: "robot$ci", Password: tok}
	if err := pullAs(b, up.Name+"/team/app:1", robot); err != nil {
		t.Fatalf("robot created on A, pulling on B: %v", err)
	}
	waitFor(t, propagation, "replica B still lets anonymous clients pull after a robot was created on A", func() bool {
		return pullAs(b, up.Name+"/team/app:1", authn.Anonymous) != nil
	})
	// A second robot keeps credentials required while the first is revoked: once none is
	// left, anonymous pulls (and so any credentials) are allowed again.
	if _, err := a.Gold.AddRobot("deploy", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Gold.RevokeRobot("ci"); err != nil {
		t.Fatal(err)
	}
	if err := pullAs(b, up.Name+"/team/app:1", robot); err == nil {
		t.Fatal("a robot revoked on A still pulls on B")
	}
	if err := a.Gold.RevokeRobot("deploy"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, propagation, "replica B does not let anonymous clients pull again after the last robot was revoked on A", func() bool {
		return pullAs(b, up.Name+"/team/app:1", authn.Anonymous) == nil
	})
}

// TestReplicasShareTokenKey: a token replica A issued is accepted by replica B when both
// sign with the key file the config names; with keys of their own, it is not.
func TestReplicasShareTokenKey(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	key := filepath.Join(t.TempDir(), "token.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("k", 48)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		shared bool
		want   int
	}{{"shared key file", true, http.StatusOK}, {"a key each", false, http.StatusUnauthorized}} {
		t.Run(tc.name, func(t *testing.T) {
			ps := replicas(t, up, func(c *config.Config) {
				if tc.shared {
					c.Auth.TokenKeyFile = key
				}
			}, &fakeScanner{}, &fakeScanner{})
			a, b := ps[0], ps[1]
			tok, err := a.Gold.AddRobot("ci", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			code, bearer := token(t, a, "robot$ci", tok, "repository:"+up.Name+"/team/app:pull")
			if code != http.StatusOK {
				t.Fatalf("token from A: %d", code)
			}
			manifest := b.URL + "/v2/" + up.Name + "/team/app/manifests/1"
			waitFor(t, propagation, "replica B does not require credentials once a robot exists", func() bool {
				return statusOf(t, manifest, nil) == http.StatusUnauthorized
			})
			if got := statusOf(t, manifest, map[string]string{"Authorization": "Bearer " + bearer}); got != tc.want {
				t.Fatalf("A's token on B: %d, want %d", got, tc.want)
			}
		})
	}
}

// flipScanner finds nothing at DB version v1 and opensslVulns when it re-detects at v2.
type flipScanner struct {
	*fakeScanner
	version atomic.Value
}

func newFlipScanner() *flipScanner {
	s := &flipScanner{fakeScanner: &fakeScanner{}}
	s.version.Store("v1")
	return s
}

func (s *flipScanner) DBVersion() (string, error) { return s.version.Load().(string), nil }

func (s *flipScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	res, err := s.fakeScanner.Scan(ctx, img, ref)
	if res != nil {
		res.DBVersion, res.Key = s.version.Load().(string), json.RawMessage(`{}`)
	}
	return res, err
}

func (s *flipScanner) Redetect(ctx context.Context, key, report json.RawMessage) (*gate.ScanResult, error) {
	v := s.version.Load().(string)
	res := &gate.ScanResult{OS: "alpine 3.19.1", DBVersion: v, Report: report}
	if v == "v2" {
		res.Vulnerabilities = opensslVulns
	}
	return res, nil
}

// TestReplicasVerdictFlip: when a re-evaluation on replica A flips a verdict, replica B
// stops serving what it had judged allowed: it forgets the judgement it remembered.
func TestReplicasVerdictFlip(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	sa, sb := newFlipScanner(), newFlipScanner()
	ps := replicas(t, up, nil, sa, sb)
	a, b := ps[0], ps[1]
	url := b.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	for i, p := range ps {
		if err := pullAll(up.Name+"/team/app:1", p); err != nil {
			t.Fatalf("replica %d before the new DB: %v", i, err)
		}
	}
	if code := statusOf(t, url, nil); code != http.StatusOK { // remembered on B
		t.Fatalf("replica B: %d", code)
	}
	sa.version.Store("v2")
	st, err := a.Gold.Reevaluate(context.Background())
	if err != nil || st.Flipped != 1 {
		t.Fatalf("re-evaluation on A: %+v %v, want 1 flip", st, err)
	}
	waitFor(t, propagation, "replica B still serves an image whose verdict flipped on A", func() bool {
		return statusOf(t, url, nil) == http.StatusForbidden
	})
	if n := sb.calls.Load(); n != 0 {
		t.Errorf("replica B scanned %d times, want 0", n)
	}
}

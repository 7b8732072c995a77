package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// authSetup: a proxy whose users are alice (everything) and bob (only team/*), admin
// alice, in front of an upstream holding team/app:1 and other/app:1.
func authSetup(t *testing.T, mutate func(*config.Config), opts ...proxy.Option) (*proxytest.Upstream, *proxytest.Proxy) {
	t.Helper()
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	up.Push(t, "other/app:1", randomImage(t, 1))
	var lines []string
	for user, pw := range map[string]string{"alice": "alice-pw", "bob": "bob-pw"} {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, user+":"+string(h))
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := proxytest.Config(t, up)
	cfg.Auth.Htpasswd = htpasswd
	cfg.Auth.Scopes = map[string][]string{"bob": {up.Name + "/team/*"}}
	cfg.Auth.Admins = []string{"alice"}
	if mutate != nil {
		mutate(cfg)
	}
	return up, proxytest.Start(t, cfg, opts...)
}

func pullAs(p *proxytest.Proxy, ref string, auth authn.Authenticator) error {
	r, err := name.ParseReference(p.Host+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	_, err = remote.Image(r, remote.WithAuth(auth))
	return err
}

func token(t *testing.T, p *proxytest.Proxy, user, pw, scope string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/token?service=goldproxy&scope="+scope, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Token
}

func withBearer(t *testing.T, url, tok string) (*http.Response, []byte) {
	return get(t, http.MethodGet, url, map[string]string{"Authorization": "Bearer " + tok})
}

func TestTokenFlow(t *testing.T) {
	up, p := authSetup(t, nil)
	// go-containerregistry does the whole docker login + token dance by itself.
	if err := pullAs(p, up.Name+"/team/app:1", &authn.Basic{Username: "alice", Password: "alice-pw"}); err != nil {
		t.Fatalf("alice: %v", err)
	}
	if err := pullAs(p, up.Name+"/team/app:1", authn.Anonymous); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("anonymous pull with users configured: %v", err)
	}

	// The same by hand: 401 with the challenge, a token, then the pull.
	resp, body := get(t, http.MethodGet, p.URL+"/v2/", nil)
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 401 || errCode(t, body) != "UNAUTHORIZED" || !strings.Contains(ch, `Bearer realm="http://`+p.Host+`/token"`) || !strings.Contains(ch, `service="goldproxy"`) {
		t.Fatalf("/v2/: %d %q %s", resp.StatusCode, ch, body)
	}
	manifest := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	resp, _ = get(t, http.MethodGet, manifest, nil)
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:`+up.Name+`/team/app:pull"`) {
		t.Fatalf("challenge scope: %q", resp.Header.Get("WWW-Authenticate"))
	}
	code, tok := token(t, p, "bob", "bob-pw", "repository:"+up.Name+"/team/app:pull")
	if code != 200 || tok == "" {
		t.Fatalf("token: %d", code)
	}
	if resp, body := withBearer(t, manifest, tok); resp.StatusCode != 200 {
		t.Fatalf("pull with token: %d %s", resp.StatusCode, body)
	}
	// Basic auth straight on the registry API works too.
	if resp, body := get(t, http.MethodGet, manifest, map[string]string{"Authorization": "Basic " + basic("bob", "bob-pw")}); resp.StatusCode != 200 {
		t.Fatalf("basic: %d %s", resp.StatusCode, body)
	}
}

func basic(u, p string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestAuthFailures(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	up, p := authSetup(t, nil, proxy.WithClock(clock))
	team := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	other := p.URL + "/v2/" + up.Name + "/other/app/manifests/1"

	if code, _ := token(t, p, "alice", "wrong", ""); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	_, bobTok := token(t, p, "bob", "bob-pw", "repository:"+up.Name+"/other/app:pull")
	if resp, body := withBearer(t, other, bobTok); resp.StatusCode != 403 || errCode(t, body) != "DENIED" || !strings.Contains(string(body), "bob may not pull") {
		t.Fatalf("token for a repository outside bob's scopes: %d %s", resp.StatusCode, body)
	}
	if resp, body := withBearer(t, team, "not-a-token"); resp.StatusCode != 401 || errCode(t, body) != "UNAUTHORIZED" {
		t.Fatalf("garbage token: %d %s", resp.StatusCode, body)
	}
	_, tok := token(t, p, "alice", "alice-pw", "")
	mu.Lock()
	now = now.Add(10 * time.Minute) // past the 5 minute token TTL
	mu.Unlock()
	if resp, body := withBearer(t, team, tok); resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Fatalf("expired token: %d %s", resp.StatusCode, body)
	}

	// Robots: pull-only, scoped, revocable.
	tokRobot, err := p.Gold.AddRobot("ci", []string{up.Name + "/team/**"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	robot := &authn.Basic{Username: "robot$ci", Password: tokRobot}
	if err := pullAs(p, up.Name+"/team/app:1", robot); err != nil {
		t.Fatalf("robot: %v", err)
	}
	if err := pullAs(p, up.Name+"/other/app:1", robot); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("robot outside its scope: %v", err)
	}
	_, robotTok := token(t, p, "robot$ci", tokRobot, "")
	if err := p.Gold.RevokeRobot("ci"); err != nil {
		t.Fatal(err)
	}
	if err := pullAs(p, up.Name+"/team/app:1", robot); err == nil {
		t.Fatal("a revoked robot can still pull")
	}
	if resp, body := withBearer(t, team, robotTok); resp.StatusCode != 401 || !strings.Contains(string(body), "revoked") {
		t.Fatalf("revoked robot's token: %d %s", resp.StatusCode, body)
	}
	if list, _ := p.Gold.Robots(); len(list) != 0 {
		t.Fatalf("robots after revoke: %+v", list)
	}

	// A robot with an expiry stops working when it passes.
	tokTemp, err := p.Gold.AddRobot("temp", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	temp := &authn.Basic{Username: "robot$temp", Password: tokTemp}
	if err := pullAs(p, up.Name+"/team/app:1", temp); err != nil {
		t.Fatalf("robot before expiry: %v", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if code, _ := token(t, p, "robot$temp", tokTemp, ""); code != 401 {
		t.Fatalf("expired robot got a token: %d", code)
	}
}

func TestFailedLoginsAreRateLimited(t *testing.T) {
	_, p := authSetup(t, func(c *config.Config) { c.Auth.FailedLogins = 5 })
	codes := []int{}
	for range 7 {
		code, _ := token(t, p, "alice", "guess", "")
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[401 401 401 401 401 429 429]" {
		t.Fatalf("codes %v", codes)
	}
	// Even the right password waits out the limit.
	if code, _ := token(t, p, "alice", "alice-pw", ""); code != 429 {
		t.Fatalf("right password while limited: %d", code)
	}
}

func TestAnonymousAndAPIAuth(t *testing.T) {
	yes := true
	up, p := authSetup(t, func(c *config.Config) { c.Auth.Anonymous = &yes })
	if err := pullAs(p, up.Name+"/team/app:1", authn.Anonymous); err != nil {
		t.Fatalf("anonymous pull when allowed: %v", err)
	}
	post := func(user, pw string) int {
		req, _ := http.NewRequest(http.MethodPost, p.URL+"/api/v1/robots", strings.NewReader(`{"name":"deploy","scopes":["**"],"expires":"30d"}`))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("", ""); c != 401 {
		t.Fatalf("anonymous robot creation: %d", c)
	}
	if c := post("bob", "bob-pw"); c != 403 {
		t.Fatalf("non-admin robot creation: %d", c)
	}
	if c := post("alice", "alice-pw"); c != 201 {
		t.Fatalf("admin robot creation: %d", c)
	}
}

package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

func call(t *testing.T, method, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + string(b)
}

var jsonType = map[string]string{"Content-Type": "application/json"}

func withAuth(h map[string]string, user, pw string) map[string]string {
	out := map[string]string{"Authorization": "Basic " + basic(user, pw)}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// With authentication off, nothing may change the proxy through its API: one anonymous
// request must not create the only credential and lock everyone else out.
func TestChangingAPIIsOffWithoutAuth(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	p := proxytest.Start(t, proxytest.Config(t, up))
	for _, path := range []string{"/api/v1/robots", "/api/v1/gc", "/api/v1/db/update", "/api/v1/baselines"} {
		code, body := call(t, http.MethodPost, p.URL+path, jsonType, `{"name":"evil","scopes":["**"]}`)
		if code != http.StatusForbidden || !strings.Contains(body, "auth.htpasswd") {
			t.Errorf("POST %s with auth off: %d %s", path, code, body)
		}
	}
	if list, _ := p.Gold.Robots(); len(list) != 0 {
		t.Fatalf("a robot was created: %+v", list)
	}
	if err := pullAll(up.Name+"/team/app:1", p); err != nil {
		t.Fatalf("anonymous pulls stopped: %v", err)
	}
}

// Changing endpoints need an admin, a JSON body and the proxy's own origin; robots and
// scoped users read only what their scopes cover.
func TestAdminAndScopedReads(t *testing.T) {
	sc := &fakeScanner{}
	up, p := authSetup(t, nil, proxy.WithScanner(sc, policy.DefaultSet()))
	for _, ref := range []string{up.Name + "/team/app:1", up.Name + "/other/app:1"} {
		if err := pullAs(p, ref, &authn.Basic{Username: "alice", Password: "alice-pw"}); err != nil {
			t.Fatal(err)
		}
	}
	robots := p.URL + "/api/v1/robots"
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"anonymous", jsonType, 401},
		{"non-admin", withAuth(jsonType, "bob", "bob-pw"), 403},
		{"admin without a JSON content type", withAuth(map[string]string{"Content-Type": "text/plain"}, "alice", "alice-pw"), 415},
		{"admin from another origin", withAuth(map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, "alice", "alice-pw"), 403},
		{"admin, cross-site fetch", withAuth(map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, "alice", "alice-pw"), 403},
		{"admin", withAuth(map[string]string{"Content-Type": "application/json", "Origin": "http://" + p.Host}, "alice", "alice-pw"), 201},
	} {
		code, body := call(t, http.MethodPost, robots, tc.hdr, `{"name":"ci","scopes":["`+up.Name+`/team/**"]}`)
		if code != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, code, tc.status, body)
		}
	}
	_, body := call(t, http.MethodGet, robots, withAuth(nil, "alice", "alice-pw"), "")
	var created struct{ Robots []struct{ Name string } }
	if json.Unmarshal([]byte(body), &created) != nil || len(created.Robots) != 1 {
		t.Fatalf("robots: %s", body)
	}
	tok, err := p.Gold.AddRobot("reader", []string{up.Name + "/team/**"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	robot := withAuth(nil, "robot$reader", tok)
	if code, body := call(t, http.MethodGet, robots, robot, ""); code != 403 {
		t.Errorf("a robot lists robots: %d %s", code, body)
	}
	var list struct{ Images []admin.ImageSummary }
	code, lb := call(t, http.MethodGet, p.URL+"/api/v1/images", robot, "")
	if code != 200 || json.Unmarshal([]byte(strings.TrimPrefix(lb, "")), &list) != nil {
		t.Fatalf("images as the robot: %d %s", code, lb)
	}
	var otherDigest string
	for _, s := range list.Images {
		if !strings.HasPrefix(s.Repository, up.Name+"/team/") {
			t.Errorf("the robot sees %s", s.Repository)
		}
	}
	_, all := call(t, http.MethodGet, p.URL+"/api/v1/images", withAuth(nil, "alice", "alice-pw"), "")
	var everything struct{ Images []admin.ImageSummary }
	_ = json.Unmarshal([]byte(all), &everything)
	for _, s := range everything.Images {
		if s.Repository == up.Name+"/other/app" {
			otherDigest = s.Digest
		}
	}
	if otherDigest == "" || len(list.Images) == 0 || len(everything.Images) <= len(list.Images) {
		t.Fatalf("alice sees %d images, the robot %d", len(everything.Images), len(list.Images))
	}
	for _, path := range []string{"/api/v1/images/" + otherDigest, "/api/v1/images/" + otherDigest + "/report", "/api/v1/images/" + otherDigest + "/verdict"} {
		if code, body := call(t, http.MethodGet, p.URL+path, robot, ""); code != 404 {
			t.Errorf("the robot reads %s: %d %.200s", path, code, body)
		}
	}
	_, vb := call(t, http.MethodGet, p.URL+"/api/v1/verdicts", robot, "")
	if strings.Contains(vb, "/other/app") {
		t.Errorf("the robot's verdict list names other/app: %s", vb)
	}
}

// A token is for what it was asked for, within what its subject may pull; revoking or
// expiring a robot ends its tokens everywhere; the realm is the external URL's.
func TestTokensAreLeastPrivilege(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	up, p := authSetup(t, func(c *config.Config) { c.ExternalURL = "https://goldproxy.example.com" }, proxy.WithClock(clock))
	team := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	other := p.URL + "/v2/" + up.Name + "/other/app/manifests/1"
	_, forTeam := token(t, p, "alice", "alice-pw", "repository:"+up.Name+"/team/app:pull")
	if resp, body := withBearer(t, team, forTeam); resp.StatusCode != 200 {
		t.Fatalf("token for team/app on team/app: %d %s", resp.StatusCode, body)
	}
	if resp, body := withBearer(t, other, forTeam); resp.StatusCode != 401 || !strings.Contains(string(body), "does not grant") {
		t.Fatalf("token for team/app on other/app: %d %s", resp.StatusCode, body)
	}
	_, none := token(t, p, "alice", "alice-pw", "")
	if resp, _ := withBearer(t, team, none); resp.StatusCode != 401 {
		t.Fatalf("token for nothing pulls: %d", resp.StatusCode)
	}
	code, ch := call(t, http.MethodGet, p.URL+"/v2/", map[string]string{"Host": "evil.example"}, "")
	if code != 401 || !strings.Contains(ch, `realm="https://goldproxy.example.com/token"`) {
		t.Fatalf("realm: %d %s", code, ch)
	}

	tok, err := p.Gold.AddRobot("ci", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, robotTok := token(t, p, "robot$ci", tok, "repository:"+up.Name+"/team/app:pull")
	if code, body := call(t, http.MethodGet, p.URL+"/api/v1/images", map[string]string{"Authorization": "Bearer " + robotTok}, ""); code != 200 {
		t.Fatalf("robot token on the API: %d %s", code, body)
	}
	if err := p.Gold.RevokeRobot("ci"); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{team, p.URL + "/api/v1/images"} {
		if code, body := call(t, http.MethodGet, url, map[string]string{"Authorization": "Bearer " + robotTok}, ""); code != 401 {
			t.Errorf("revoked robot's token on %s: %d %s", url, code, body)
		}
	}
	tok2, err := p.Gold.AddRobot("short", nil, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, shortTok := token(t, p, "robot$short", tok2, "repository:"+up.Name+"/team/app:pull")
	mu.Lock()
	now = now.Add(3 * time.Minute) // the robot expired, its token (5 min) has not
	mu.Unlock()
	if resp, body := withBearer(t, team, shortTok); resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Fatalf("token of an expired robot: %d %s", resp.StatusCode, body)
	}
}

// However many wrong logins arrive at once, no more than the limit are checked; the
// limit is per client address (from X-Forwarded-For of a trusted proxy) and per user, so
// another client keeps logging in and pulling.
func TestConcurrentWrongLoginsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	up, p := authSetup(t, func(c *config.Config) {
		c.Auth.FailedLogins = 5
		c.Auth.TrustedProxies = []string{"127.0.0.0/8"}
	}, proxy.WithRegistry(reg))
	const attackers = 200
	var wg sync.WaitGroup
	codes := make(chan int, attackers)
	for i := range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := call(t, http.MethodGet, p.URL+"/token?service=goldproxy", withAuth(map[string]string{"X-Forwarded-For": "203.0.113.9"}, "alice", fmt.Sprintf("guess-%d", i)), "")
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	limited := 0
	for c := range codes {
		if c == http.StatusTooManyRequests {
			limited++
		}
	}
	checks := metricValue(t, reg, "goldproxy_auth_password_checks_total", nil)
	if checks > 5 || limited < attackers-5 {
		t.Fatalf("%v passwords checked, %d of %d limited: want at most 5 checked", checks, limited, attackers)
	}
	// Another client (address) and another user are not held back.
	if code, body := call(t, http.MethodGet, p.URL+"/token?service=goldproxy&scope=repository:"+up.Name+"/team/app:pull",
		withAuth(map[string]string{"X-Forwarded-For": "198.51.100.7"}, "bob", "bob-pw"), ""); code != 200 {
		t.Fatalf("another client's login: %d %s", code, body)
	}
	if err := pullAs(p, up.Name+"/team/app:1", &authn.Basic{Username: "bob", Password: "bob-pw"}); err != nil {
		t.Fatalf("another user's pull: %v", err)
	}
	// The attacked address stays limited, whoever logs in from it.
	if code, _ := call(t, http.MethodGet, p.URL+"/token?service=goldproxy", withAuth(map[string]string{"X-Forwarded-For": "203.0.113.9"}, "bob", "bob-pw"), ""); code != http.StatusTooManyRequests {
		t.Fatalf("bob from the attacked address: %d", code)
	}
}

// Webhook bodies are signed; URLs, which carry tokens, are never logged whole; a client's
// request id is kept only when it is short and plain.
func TestWebhookSignatureAndLogHygiene(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		mu.Unlock()
		if strings.Contains(r.URL.RawQuery, "fail") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(hook.Close)
	t.Setenv("HOOK_SECRET", "s3cret-key")
	sc := &fakeScanner{}
	up := proxytest.NewUpstream(t)
	img := vulnImage(t, sc)
	up.Push(t, "team/app:1", img)
	cfg := proxytest.Config(t, up)
	leaky := strings.Replace(hook.URL, "http://", "http://user:hunter2@", 1) + "/hook?token=tok-abc&fail=1"
	cfg.Webhooks = config.WebhookConfig{URLs: []string{hook.URL + "/hook", leaky}, Timeout: 5 * time.Second, SecretEnv: "HOOK_SECRET"}
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(b) }), nil))
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, mustSet(t, strictYAML)), proxy.WithLogger(logger))
	if code, _ := status(t, p, up.Name+"/team/app/manifests/1"); code != http.StatusForbidden {
		t.Fatalf("strict: %d", code)
	}
	if _, err := p.Gold.SetPolicy(mustSet(t, looseYAML)); err != nil { // flips: allowed
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if len(got) < 1 {
		t.Fatal("no webhook delivery")
	}
	for i, r := range got {
		if want := gate.Sign([]byte("s3cret-key"), bodies[i]); r.Header.Get(gate.SignatureHeader) != want {
			t.Errorf("delivery %d: signature %q, want %q", i, r.Header.Get(gate.SignatureHeader), want)
		}
	}
	mu.Unlock()
	time.Sleep(100 * time.Millisecond) // the failed delivery is logged
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	for _, secret := range []string{"hunter2", "tok-abc"} {
		if strings.Contains(text, secret) {
			t.Errorf("the log holds %q:\n%s", secret, text)
		}
	}
	if !strings.Contains(text, "webhook delivery failed") {
		t.Errorf("the failed delivery was not logged:\n%s", text)
	}
	for _, tc := range []struct{ sent, want string }{
		{"abc-123.x", "abc-123.x"},
		{strings.Repeat("a", 500), ""},
		{`evil "id" <script>`, ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/healthz", nil)
		req.Header.Set("X-Request-Id", tc.sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		if (tc.want != "" && id != tc.want) || (tc.want == "" && (id == tc.sent || len(id) > 64 || id == "")) {
			t.Errorf("request id %q came back as %q", tc.sent, id)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

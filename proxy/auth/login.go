package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/goldproxy/goldproxy/proxy/config"
)

// limiterSize bounds the failed-login state: the least recently seen addresses and
// user names are forgotten first.
const limiterSize = 10_000

// limiter bounds failed logins per client address and per user name: a bucket of
// FailedLogins tries each, refilled at FailedLogins a minute. A login takes a try from
// both before its password is checked — so however many arrive at once, no more than the
// tries reach bcrypt — and one that succeeds gives them back: only failures count.
type limiter struct {
	per     int
	now     func() time.Time
	mu      sync.Mutex
	keys    *lru.Cache[string, *bucket]
	trusted []*net.IPNet
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg config.ClientAuthConfig, now func() time.Time) (*limiter, error) {
	per := cfg.FailedLogins
	if per <= 0 {
		per = 10
	}
	keys, err := lru.New[string, *bucket](limiterSize)
	if err != nil {
		return nil, err
	}
	l := &limiter{per: per, now: now, keys: keys}
	for _, c := range cfg.TrustedProxies {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("auth.trusted_proxies: %w", err)
		}
		l.trusted = append(l.trusted, n)
	}
	return l, nil
}

// of is key's bucket, refilled up to now.
func (l *limiter) of(key string, now time.Time) *bucket {
	b, ok := l.keys.Get(key)
	if !ok {
		b = &bucket{tokens: float64(l.per), last: now}
		l.keys.Add(key, b)
	}
	if now.After(b.last) {
		b.tokens = min(float64(l.per), b.tokens+now.Sub(b.last).Minutes()*float64(l.per))
		b.last = now
	}
	return b
}

// reservation is a login attempt's hold on a try of its address and of its user.
type reservation struct {
	l    *limiter
	keys []string
}

// reserve takes a try for addr and user, or reports false when either has none left.
func (l *limiter) reserve(addr, user string) (*reservation, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	keys := []string{"addr:" + addr, "user:" + user}
	for _, k := range keys {
		if l.of(k, now).tokens < 1 {
			return nil, false
		}
	}
	for _, k := range keys {
		l.of(k, now).tokens--
	}
	return &reservation{l: l, keys: keys}, true
}

// succeeded gives the tries back: only failures count.
func (r *reservation) succeeded() {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	now := r.l.now()
	for _, k := range r.keys {
		b := r.l.of(k, now)
		b.tokens = min(float64(r.l.per), b.tokens+1)
	}
}

// clientAddr is the client's address: the peer's, or — when the peer is a trusted
// proxy — the last address in X-Forwarded-For that is not a trusted proxy.
func (l *limiter) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !l.isTrusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if net.ParseIP(h) == nil {
			break
		}
		if !l.isTrusted(h) {
			return h
		}
	}
	return host
}

func (l *limiter) isTrusted(ip string) bool {
	p := net.ParseIP(ip)
	for _, n := range l.trusted {
		if p != nil && n.Contains(p) {
			return true
		}
	}
	return false
}

var errLimited = errors.New("too many failed logins")

// login checks name and secret from addr under the failed-login limit.
func (a *Authenticator) login(addr, name, secret string) (*Principal, error) {
	res, ok := a.logins.reserve(addr, name)
	if !ok {
		a.failures.WithLabelValues("rate_limited").Inc()
		return nil, errLimited
	}
	p, err := a.checkPassword(name, secret)
	if err == nil {
		res.succeeded()
		return p, nil
	}
	a.log.Warn("authentication failed", "user", name, "client", addr)
	return nil, err
}

// checkPassword authenticates a user or robot by name and secret; every path costs about
// the same.
func (a *Authenticator) checkPassword(name, secret string) (*Principal, error) {
	a.passwordChecks.Inc()
	if strings.HasPrefix(name, "robot$") {
		sum := sha256.Sum256([]byte(secret))
		got := hex.EncodeToString(sum[:])
		r, err := a.store.Robot(strings.TrimPrefix(name, "robot$"))
		want := r.Hash
		if err != nil {
			want = strings.Repeat("0", len(got))
		}
		match := subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
		switch {
		case err != nil:
			return nil, errors.New("no such robot")
		case !match:
			return nil, errors.New("wrong token")
		case !r.Expires.IsZero() && a.now().After(r.Expires):
			return nil, errors.New("robot expired")
		}
		return &Principal{Name: name, scopes: r.Scopes, a: a}, nil
	}
	hash, known := a.users[name]
	if !known {
		hash = a.dummy // an unknown user costs the bcrypt a known one does
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(secret)) != nil || !known {
		return nil, errors.New("wrong user or password")
	}
	return &Principal{Name: name, scopes: a.cfg.Scopes[name], a: a}, nil
}

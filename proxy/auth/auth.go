// Package auth decides who a client is and which repositories it may pull: htpasswd
// users, pull-only robots, the registry token flow and the failed-login limiter, ending
// in a Principal. It answers only "who, and may they"; it never looks at images,
// verdicts or upstreams, and never serves content.
package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

const tokenService = "goldproxy"

// reRobotName is what a robot may be called: one repository path component, as the
// distribution spec defines it, so "robot$<name>" is unambiguous.
var reRobotName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// Principal is an authenticated user or robot.
type Principal struct {
	Name   string
	scopes []string // empty: everything the allowlist admits
}

// May reports whether p may pull repository repo.
func (p *Principal) May(repo string) bool {
	if p == nil {
		return false
	}
	return len(p.scopes) == 0 || slices.ContainsFunc(p.scopes, func(g string) bool { return policy.Match(g, repo) })
}

// Authenticator checks credentials: htpasswd users, robots, bearer tokens.
type Authenticator struct {
	robots atomic.Int64 // how many robots exist (kept current by AddRobot/RevokeRobot)
	cfg    config.ClientAuthConfig
	store  *storage.Store
	key    []byte
	users  map[string][]byte // name → bcrypt hash
	now    func() time.Time
	mu     sync.Mutex
	limits map[string]*rate.Limiter
	log    *slog.Logger
	// failures counts rejected credentials by how they were presented.
	failures *prometheus.CounterVec
	// canonical maps a repository name as a client writes it (in a token scope) to the
	// "<upstream>/<repository>" name scopes are written in.
	canonical func(name string) (string, error)
}

// New builds the authenticator of cfg; resolve makes config paths absolute, canonical
// names repositories as scopes do. Its metrics are registered on reg.
func New(cfg config.ClientAuthConfig, resolve func(string) string, store *storage.Store, now func() time.Time, log *slog.Logger,
	reg prometheus.Registerer, canonical func(string) (string, error)) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, store: store, users: map[string][]byte{}, now: now, limits: map[string]*rate.Limiter{},
		log: log, canonical: canonical,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_auth_failures_total",
			Help: "Rejected client credentials, by how they were presented."}, []string{"method"})}
	for _, method := range []string{"basic", "token", "token_request", "rate_limited"} {
		a.failures.WithLabelValues(method)
	}
	if err := reg.Register(a.failures); err != nil {
		return nil, err
	}
	rs, err := store.Robots()
	if err != nil {
		return nil, err
	}
	a.robots.Store(int64(len(rs)))
	if cfg.Htpasswd != "" {
		if err := a.loadHtpasswd(resolve(cfg.Htpasswd)); err != nil {
			return nil, err
		}
	}
	if cfg.TokenKeyFile != "" {
		k, err := os.ReadFile(resolve(cfg.TokenKeyFile))
		if err != nil {
			return nil, fmt.Errorf("auth.token_key_file: %w", err)
		}
		if len(strings.TrimSpace(string(k))) < 32 {
			return nil, fmt.Errorf("auth.token_key_file: the key must be at least 32 characters")
		}
		a.key = []byte(strings.TrimSpace(string(k)))
	} else {
		a.key = make([]byte, 32)
		_, _ = rand.Read(a.key)
	}
	return a, nil
}

func (a *Authenticator) loadHtpasswd(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("auth.htpasswd: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return fmt.Errorf("auth.htpasswd: %s line %d: not user:hash", path, n)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
			return fmt.Errorf("auth.htpasswd: %s line %d: user %q: only bcrypt hashes are accepted (htpasswd -B)", path, n, user)
		}
		a.users[user] = []byte(hash)
	}
	return sc.Err()
}

// Enabled reports whether clients must authenticate at all.
func (a *Authenticator) Enabled() bool {
	return a != nil && (len(a.users) > 0 || a.cfg.Htpasswd != "" || a.robotsExist())
}

func (a *Authenticator) anonymous() bool {
	if a.cfg.Anonymous != nil {
		return *a.cfg.Anonymous
	}
	return len(a.users) == 0 && !a.robotsExist()
}

func (a *Authenticator) robotsExist() bool { return a.robots.Load() > 0 }

// limited reports whether addr has used up its failed logins.
func (a *Authenticator) limited(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limits[addr]
	return ok && l.Tokens() < 1
}

func (a *Authenticator) failed(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limits[addr]
	if !ok {
		per := a.cfg.FailedLogins
		if per <= 0 {
			per = 10
		}
		l = rate.NewLimiter(rate.Every(time.Minute/time.Duration(per)), per)
		a.limits[addr] = l
	}
	l.Allow()
}

// checkPassword authenticates a user or robot by name and secret.
func (a *Authenticator) checkPassword(name, secret string) (*Principal, error) {
	if hash, ok := a.users[name]; ok {
		if bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil {
			return &Principal{Name: name, scopes: a.cfg.Scopes[name]}, nil
		}
		return nil, errors.New("wrong password")
	}
	if strings.HasPrefix(name, "robot$") {
		r, err := a.store.Robot(strings.TrimPrefix(name, "robot$"))
		if err != nil {
			return nil, errors.New("no such robot")
		}
		if !r.Expires.IsZero() && a.now().After(r.Expires) {
			return nil, errors.New("robot expired")
		}
		sum := sha256.Sum256([]byte(secret))
		if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(r.Hash)) != 1 {
			return nil, errors.New("wrong token")
		}
		return &Principal{Name: name, scopes: r.Scopes}, nil
	}
	return nil, errors.New("no such user")
}

type tokenClaims struct {
	jwt.RegisteredClaims
	Access []tokenAccess `json:"access"`
	Scopes []string      `json:"scopes,omitempty"`
}

type tokenAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// issue signs a token granting p pull on the requested repositories it may pull.
func (a *Authenticator) issue(p *Principal, repos []string) (string, time.Duration, error) {
	ttl := a.cfg.TokenTTL
	now := a.now()
	c := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenService, Subject: p.Name, Audience: jwt.ClaimStrings{tokenService},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Scopes: p.scopes}
	for _, r := range repos {
		if p.May(r) {
			c.Access = append(c.Access, tokenAccess{Type: "repository", Name: r, Actions: []string{"pull"}})
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.key)
	return s, ttl, err
}

// verify checks a bearer token and returns its claims.
func (a *Authenticator) verify(tok string) (*tokenClaims, error) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return a.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(tokenService), jwt.WithIssuer(tokenService), jwt.WithTimeFunc(a.now))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// challenge is the 401 that starts docker's token flow.
func (a *Authenticator) challenge(r *http.Request, scope, msg string) *httpx.Error {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	h := fmt.Sprintf(`Bearer realm="%s://%s/token",service="%s"`, scheme, r.Host, tokenService)
	if scope != "" {
		h += fmt.Sprintf(`,scope="%s"`, scope)
	}
	return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: msg, Header: map[string]string{"WWW-Authenticate": h}}
}

// Authorize decides whether r may read repository key (empty: the /v2/ base).
func (a *Authenticator) Authorize(r *http.Request, key string) error {
	if !a.Enabled() {
		return nil
	}
	scope := ""
	if key != "" {
		scope = "repository:" + key + ":pull"
	}
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		if a.anonymous() {
			return nil
		}
		return a.challenge(r, scope, "authentication required: docker login "+r.Host)
	case strings.HasPrefix(h, "Basic "):
		addr := clientAddr(r)
		if a.limited(addr) {
			a.failures.WithLabelValues("rate_limited").Inc()
			return httpx.TooManyRequests("too many failed logins from %s; wait a minute", addr)
		}
		user, pass, ok := r.BasicAuth()
		p, err := a.checkPassword(user, pass)
		if !ok || err != nil {
			a.failed(addr)
			a.failures.WithLabelValues("basic").Inc()
			a.log.Warn("authentication failed", "user", user, "client", addr)
			return a.challenge(r, scope, "invalid username or password")
		}
		if key != "" && !p.May(key) {
			return httpx.Denied("%s may not pull %s", p.Name, key)
		}
		return nil
	case strings.HasPrefix(h, "Bearer "):
		c, err := a.verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			a.failures.WithLabelValues("token").Inc()
			return a.challenge(r, scope, "invalid or expired token: log in again")
		}
		if strings.HasPrefix(c.Subject, "robot$") {
			// A revoked robot's tokens die with it.
			if _, err := a.store.Robot(strings.TrimPrefix(c.Subject, "robot$")); err != nil {
				a.failures.WithLabelValues("token").Inc()
				return a.challenge(r, scope, "robot "+c.Subject+" was revoked")
			}
		}
		// The token authenticates its subject; what it may pull is the subject's scopes,
		// carried in the token (containerd asks for scopes without the upstream host).
		if p := (&Principal{Name: c.Subject, scopes: c.Scopes}); key != "" && !p.May(key) {
			return httpx.Denied("%s may not pull %s", c.Subject, key)
		}
		return nil
	}
	return a.challenge(r, scope, "unsupported authorization scheme")
}

// ServeToken is the registry token endpoint: GET /token?service=goldproxy&scope=... with
// Basic credentials (or none, when anonymous pulls are allowed).
func (a *Authenticator) ServeToken(w http.ResponseWriter, r *http.Request) error {
	if !a.Enabled() {
		return httpx.Unsupported("authentication is off on this proxy")
	}
	var p *Principal
	user, pass, ok := r.BasicAuth()
	addr := clientAddr(r)
	switch {
	case ok:
		if a.limited(addr) {
			a.failures.WithLabelValues("rate_limited").Inc()
			return httpx.TooManyRequests("too many failed logins from %s; wait a minute", addr)
		}
		var err error
		if p, err = a.checkPassword(user, pass); err != nil {
			a.failed(addr)
			a.failures.WithLabelValues("token_request").Inc()
			a.log.Warn("authentication failed", "user", user, "client", addr)
			return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid username or password",
				Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
		}
	case a.anonymous():
		p = &Principal{Name: "anonymous"}
	default:
		return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "credentials required",
			Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
	}
	var repos []string
	for _, sc := range r.URL.Query()["scope"] {
		for _, one := range strings.Split(sc, " ") {
			parts := strings.Split(one, ":")
			if len(parts) >= 3 && parts[0] == "repository" {
				name := strings.Join(parts[1:len(parts)-1], ":")
				if key, err := a.canonical(name); err == nil {
					repos = append(repos, key)
				}
			}
		}
	}
	tok, ttl, err := a.issue(p, repos)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{
		"token": tok, "access_token": tok, "expires_in": int(ttl.Seconds()), "issued_at": a.now().UTC().Format(time.RFC3339),
	})
}

// NewRobotToken returns a new random robot token (shown once) and the hash to store.
func NewRobotToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// Whoami authenticates r's credentials (Basic or Bearer) without a repository.
func (a *Authenticator) Whoami(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	switch {
	case strings.HasPrefix(h, "Basic "):
		addr := clientAddr(r)
		if a.limited(addr) {
			return nil, httpx.TooManyRequests("too many failed logins from %s; wait a minute", addr)
		}
		user, pass, _ := r.BasicAuth()
		p, err := a.checkPassword(user, pass)
		if err != nil {
			a.failed(addr)
			a.failures.WithLabelValues("basic").Inc()
			return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid username or password",
				Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
		}
		return p, nil
	case strings.HasPrefix(h, "Bearer "):
		c, err := a.verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			a.failures.WithLabelValues("token").Inc()
			return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid or expired token"}
		}
		return &Principal{Name: c.Subject, scopes: c.Scopes}, nil
	}
	return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "credentials required",
		Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
}

// AuthorizeAPI guards /api/v1/: reading needs what pulling needs; changing anything
// (gc, DB update, robots) needs an admin.
func (a *Authenticator) AuthorizeAPI(r *http.Request) error {
	if !a.Enabled() {
		return nil
	}
	readOnly := r.Method == http.MethodGet || r.Method == http.MethodHead
	if readOnly && a.anonymous() && r.Header.Get("Authorization") == "" {
		return nil
	}
	p, err := a.Whoami(r)
	if err != nil {
		return err
	}
	if !readOnly && !slices.Contains(a.cfg.Admins, p.Name) {
		return httpx.Denied("%s is not an admin of this proxy (auth.admins)", p.Name)
	}
	return nil
}

// AddRobot creates a pull-only robot and returns its token, which is shown only now.
func (a *Authenticator) AddRobot(name string, scopes []string, ttl time.Duration) (string, error) {
	if !reRobotName.MatchString(name) {
		return "", fmt.Errorf("robot name %q: use lower-case letters, digits, '.', '_' or '-'", name)
	}
	for i, g := range scopes {
		if _, err := policy.CompileGlob(g); err != nil {
			return "", fmt.Errorf("scope %d: %w", i, err)
		}
	}
	if _, err := a.store.Robot(name); err == nil {
		return "", fmt.Errorf("robot %q exists: revoke it first", name)
	}
	tok, hash := NewRobotToken()
	r := storage.Robot{Name: name, Hash: hash, Scopes: scopes, Created: a.now().UTC()}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl)
	}
	if err := a.store.PutRobot(r); err != nil {
		return "", err
	}
	a.robots.Add(1)
	return tok, nil
}

// Robots lists the robots (never their tokens).
func (a *Authenticator) Robots() ([]storage.Robot, error) {
	rs, err := a.store.Robots()
	for i := range rs {
		rs[i].Hash = ""
	}
	return rs, err
}

// RevokeRobot deletes a robot: its password and its tokens stop working at once.
func (a *Authenticator) RevokeRobot(name string) error {
	if err := a.store.DeleteRobot(name); err != nil {
		return err
	}
	a.robots.Add(-1)
	return nil
}

// ServeRobots is /api/v1/robots: GET lists, POST {name, scopes, expires} adds, DELETE
// /api/v1/robots/<name> revokes.
func (a *Authenticator) ServeRobots(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1/robots"), "/")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && name == "":
		rs, err := a.Robots()
		if err != nil {
			return err
		}
		return json.NewEncoder(w).Encode(map[string]any{"robots": rs})
	case r.Method == http.MethodPost && name == "":
		var req struct {
			Name    string   `json:"name"`
			Scopes  []string `json:"scopes"`
			Expires string   `json:"expires"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: "body must be JSON {name, scopes, expires}"}
		}
		var ttl time.Duration
		if req.Expires != "" {
			d, err := policy.ParseDuration(req.Expires)
			if err != nil {
				return &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: err.Error()}
			}
			ttl = d
		}
		tok, err := a.AddRobot(req.Name, req.Scopes, ttl)
		if err != nil {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: err.Error()}
		}
		w.WriteHeader(http.StatusCreated)
		return json.NewEncoder(w).Encode(map[string]string{"username": "robot$" + req.Name, "token": tok})
	case r.Method == http.MethodDelete && name != "":
		if err := a.RevokeRobot(name); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return httpx.NameUnknown("no robot %q", name)
			}
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return httpx.Unsupported("use GET or POST /api/v1/robots, DELETE /api/v1/robots/<name>")
}

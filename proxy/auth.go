package proxy

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
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/storage"
)

const tokenService = "goldproxy"

// principal is an authenticated user or robot.
type principal struct {
	name   string
	scopes []string // empty: everything the allowlist admits
}

func (p *principal) may(repo string) bool {
	if p == nil {
		return false
	}
	return len(p.scopes) == 0 || slices.ContainsFunc(p.scopes, func(g string) bool { return policy.Match(g, repo) })
}

// authenticator checks credentials: htpasswd users, robots, bearer tokens.
type authenticator struct {
	robots atomic.Int64 // how many robots exist (kept current by AddRobot/RevokeRobot)
	cfg    config.ClientAuthConfig
	store  *storage.Store
	key    []byte
	users  map[string][]byte // name → bcrypt hash
	now    func() time.Time
	mu     sync.Mutex
	limits map[string]*rate.Limiter
}

func newAuthenticator(cfg config.ClientAuthConfig, resolve func(string) string, store *storage.Store, now func() time.Time) (*authenticator, error) {
	a := &authenticator{cfg: cfg, store: store, users: map[string][]byte{}, now: now, limits: map[string]*rate.Limiter{}}
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

func (a *authenticator) loadHtpasswd(path string) error {
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

// enabled reports whether clients must authenticate at all.
func (a *authenticator) enabled() bool {
	return a != nil && (len(a.users) > 0 || a.cfg.Htpasswd != "" || a.robotsExist())
}

func (a *authenticator) anonymous() bool {
	if a.cfg.Anonymous != nil {
		return *a.cfg.Anonymous
	}
	return len(a.users) == 0 && !a.robotsExist()
}

func (a *authenticator) robotsExist() bool { return a.robots.Load() > 0 }

// limited reports whether addr has used up its failed logins.
func (a *authenticator) limited(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.limits[addr]
	return ok && l.Tokens() < 1
}

func (a *authenticator) failed(addr string) {
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
func (a *authenticator) checkPassword(name, secret string) (*principal, error) {
	if hash, ok := a.users[name]; ok {
		if bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil {
			return &principal{name: name, scopes: a.cfg.Scopes[name]}, nil
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
		return &principal{name: name, scopes: r.Scopes}, nil
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
func (a *authenticator) issue(p *principal, repos []string) (string, time.Duration, error) {
	ttl := a.cfg.TokenTTL
	now := a.now()
	c := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenService, Subject: p.name, Audience: jwt.ClaimStrings{tokenService},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Scopes: p.scopes}
	for _, r := range repos {
		if p.may(r) {
			c.Access = append(c.Access, tokenAccess{Type: "repository", Name: r, Actions: []string{"pull"}})
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.key)
	return s, ttl, err
}

// verify checks a bearer token and returns its claims.
func (a *authenticator) verify(tok string) (*tokenClaims, error) {
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
func (s *Server) challenge(r *http.Request, scope, msg string) *httpx.Error {
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

// authorize decides whether r may read repository key (empty: the /v2/ base).
func (s *Server) authorize(r *http.Request, key string) error {
	a := s.auth
	if !a.enabled() {
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
		return s.challenge(r, scope, "authentication required: docker login "+r.Host)
	case strings.HasPrefix(h, "Basic "):
		addr := clientAddr(r)
		if a.limited(addr) {
			s.metrics.authFailures.WithLabelValues("rate_limited").Inc()
			return httpx.TooManyRequests("too many failed logins from %s; wait a minute", addr)
		}
		user, pass, ok := r.BasicAuth()
		p, err := a.checkPassword(user, pass)
		if !ok || err != nil {
			a.failed(addr)
			s.metrics.authFailures.WithLabelValues("basic").Inc()
			s.log.Warn("authentication failed", "user", user, "client", addr)
			return s.challenge(r, scope, "invalid username or password")
		}
		if key != "" && !p.may(key) {
			return httpx.Denied("%s may not pull %s", p.name, key)
		}
		return nil
	case strings.HasPrefix(h, "Bearer "):
		c, err := a.verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			s.metrics.authFailures.WithLabelValues("token").Inc()
			return s.challenge(r, scope, "invalid or expired token: log in again")
		}
		if strings.HasPrefix(c.Subject, "robot$") {
			// A revoked robot's tokens die with it.
			if _, err := a.store.Robot(strings.TrimPrefix(c.Subject, "robot$")); err != nil {
				s.metrics.authFailures.WithLabelValues("token").Inc()
				return s.challenge(r, scope, "robot "+c.Subject+" was revoked")
			}
		}
		// The token authenticates its subject; what it may pull is the subject's scopes,
		// carried in the token (containerd asks for scopes without the upstream host).
		if p := (&principal{name: c.Subject, scopes: c.Scopes}); key != "" && !p.may(key) {
			return httpx.Denied("%s may not pull %s", c.Subject, key)
		}
		return nil
	}
	return s.challenge(r, scope, "unsupported authorization scheme")
}

// serveToken is the registry token endpoint: GET /token?service=goldproxy&scope=... with
// Basic credentials (or none, when anonymous pulls are allowed).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) error {
	a := s.auth
	if !a.enabled() {
		return httpx.Unsupported("authentication is off on this proxy")
	}
	var p *principal
	user, pass, ok := r.BasicAuth()
	addr := clientAddr(r)
	switch {
	case ok:
		if a.limited(addr) {
			s.metrics.authFailures.WithLabelValues("rate_limited").Inc()
			return httpx.TooManyRequests("too many failed logins from %s; wait a minute", addr)
		}
		var err error
		if p, err = a.checkPassword(user, pass); err != nil {
			a.failed(addr)
			s.metrics.authFailures.WithLabelValues("token_request").Inc()
			s.log.Warn("authentication failed", "user", user, "client", addr)
			return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid username or password",
				Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
		}
	case a.anonymous():
		p = &principal{name: "anonymous"}
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
				if rt, err := s.routeOf(name); err == nil {
					repos = append(repos, rt.key)
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

// routeOf resolves a repository name as a client writes it in a scope.
func (s *Server) routeOf(name string) (*route, error) {
	rt := &route{kind: kindManifest, name: name}
	if err := s.router.resolve(rt); err != nil {
		return nil, err
	}
	return rt, nil
}

// NewRobotToken returns a new random robot token (shown once) and the hash to store.
func NewRobotToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// whoami authenticates r's credentials (Basic or Bearer) without a repository.
func (s *Server) whoami(r *http.Request) (*principal, error) {
	a := s.auth
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
			s.metrics.authFailures.WithLabelValues("basic").Inc()
			return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid username or password",
				Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
		}
		return p, nil
	case strings.HasPrefix(h, "Bearer "):
		c, err := a.verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			s.metrics.authFailures.WithLabelValues("token").Inc()
			return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "invalid or expired token"}
		}
		return &principal{name: c.Subject, scopes: c.Scopes}, nil
	}
	return nil, &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "credentials required",
		Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
}

// authorizeAPI guards /api/v1/: reading needs what pulling needs; changing anything
// (gc, DB update, robots) needs an admin.
func (s *Server) authorizeAPI(r *http.Request) error {
	a := s.auth
	if !a.enabled() {
		return nil
	}
	readOnly := r.Method == http.MethodGet || r.Method == http.MethodHead
	if readOnly && a.anonymous() && r.Header.Get("Authorization") == "" {
		return nil
	}
	p, err := s.whoami(r)
	if err != nil {
		return err
	}
	if !readOnly && !slices.Contains(a.cfg.Admins, p.name) {
		return httpx.Denied("%s is not an admin of this proxy (auth.admins)", p.name)
	}
	return nil
}

// AddRobot creates a pull-only robot and returns its token, which is shown only now.
func (s *Server) AddRobot(name string, scopes []string, ttl time.Duration) (string, error) {
	if !reComponent.MatchString(name) {
		return "", fmt.Errorf("robot name %q: use lower-case letters, digits, '.', '_' or '-'", name)
	}
	for i, g := range scopes {
		if _, err := policy.CompileGlob(g); err != nil {
			return "", fmt.Errorf("scope %d: %w", i, err)
		}
	}
	if _, err := s.store.Robot(name); err == nil {
		return "", fmt.Errorf("robot %q exists: revoke it first", name)
	}
	tok, hash := NewRobotToken()
	r := storage.Robot{Name: name, Hash: hash, Scopes: scopes, Created: s.now().UTC()}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl)
	}
	if err := s.store.PutRobot(r); err != nil {
		return "", err
	}
	s.auth.robots.Add(1)
	return tok, nil
}

// Robots lists the robots (never their tokens).
func (s *Server) Robots() ([]storage.Robot, error) {
	rs, err := s.store.Robots()
	for i := range rs {
		rs[i].Hash = ""
	}
	return rs, err
}

// RevokeRobot deletes a robot: its password and its tokens stop working at once.
func (s *Server) RevokeRobot(name string) error {
	if err := s.store.DeleteRobot(name); err != nil {
		return err
	}
	s.auth.robots.Add(-1)
	return nil
}

// serveRobots is /api/v1/robots: GET lists, POST {name, scopes, expires} adds, DELETE
// /api/v1/robots/<name> revokes.
func (s *Server) serveRobots(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1/robots"), "/")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && name == "":
		rs, err := s.Robots()
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
		tok, err := s.AddRobot(req.Name, req.Scopes, ttl)
		if err != nil {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: err.Error()}
		}
		w.WriteHeader(http.StatusCreated)
		return json.NewEncoder(w).Encode(map[string]string{"username": "robot$" + req.Name, "token": tok})
	case r.Method == http.MethodDelete && name != "":
		if err := s.RevokeRobot(name); err != nil {
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

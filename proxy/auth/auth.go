// Package auth decides who a client is and which repositories it may pull: htpasswd
// users, pull-only robots, the registry token flow and the failed-login limiter, ending
// in a Principal. It answers only "who, and may they"; it never looks at images,
// verdicts or upstreams, and never serves content.
//
// It never compares a secret in variable time, never lets an unknown user cost less
// than a known one, and never trusts the Host or X-Forwarded-For headers of a client it
// was not told to trust.
package auth

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

const tokenService = "goldproxy"

// reRobotName is what a robot may be called: one repository path component, as the
// distribution spec defines it, so "robot$<name>" is unambiguous.
var reRobotName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// Principal is an authenticated user or robot, or the anonymous client.
type Principal struct {
	Name string
	// scopes are the repository globs it may pull; empty: everything the allowlist admits.
	scopes []string
	// access, for a bearer token, are the repositories the token was issued for: what it
	// may pull is their intersection with scopes.
	access []string
	token  bool
	a      *Authenticator
}

// May reports whether p may pull (or read about) repository repo, as "<upstream>/<repo>";
// name is the repository as the client wrote it (a token's scope may name it so).
func (p *Principal) May(repo string) bool { return p.MayName(repo, repo) }

// MayName is May for a request that named the repository name (e.g. "library/alpine"
// with ?ns=docker.io) and resolved to repo.
func (p *Principal) MayName(name, repo string) bool {
	if p == nil {
		return false
	}
	if p.token && !slices.Contains(p.access, repo) && !slices.Contains(p.access, name) {
		return false
	}
	return p.inScope(repo)
}

// inScope reports whether p's scopes (whatever a token was issued for) cover repo.
func (p *Principal) inScope(repo string) bool {
	return len(p.scopes) == 0 || slices.ContainsFunc(p.scopes, func(g string) bool { return p.a.match(g, repo) })
}

// Admin reports whether p may change state through the API.
func (p *Principal) Admin() bool {
	return p != nil && p.Name != "anonymous" && slices.Contains(p.a.cfg.Admins, p.Name)
}

// Scoped reports whether p sees only part of the store (a robot or user with scopes).
func (p *Principal) Scoped() bool { return p != nil && (len(p.scopes) > 0 || p.token) }

// Authenticator checks credentials: htpasswd users, robots, bearer tokens.
type Authenticator struct {
	robots atomic.Int64 // how many robots exist (kept current by AddRobot/RevokeRobot)
	cfg    config.ClientAuthConfig
	store  *storage.Store
	key    []byte
	users  map[string][]byte // name → bcrypt hash
	dummy  []byte            // a hash of the users' cost, checked for unknown names
	now    func() time.Time
	log    *slog.Logger
	realm  string // the token endpoint, from the external URL
	logins *limiter
	// candidates maps a repository name as a client writes it (in a token scope) to the
	// "<upstream>/<repository>" names it may stand for.
	candidates func(name string) []string
	robotMu    sync.Mutex // robot revokes, one at a time (adds are atomic in the store)
	// robotsChanged, when set, is told after this replica added or revoked a robot.
	robotsChanged func()

	globMu sync.Mutex
	globs  map[string]*regexp.Regexp

	failures       *prometheus.CounterVec
	passwordChecks prometheus.Counter
}

// New builds the authenticator of cfg; resolve makes config paths absolute, candidates
// names repositories as scopes do, external is the URL clients reach the proxy at. Its
// metrics are registered on reg.
func New(cfg config.ClientAuthConfig, resolve func(string) string, store *storage.Store, now func() time.Time, log *slog.Logger,
	reg prometheus.Registerer, candidates func(string) []string, external string) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, store: store, users: map[string][]byte{}, now: now, log: log, candidates: candidates,
		realm: external + "/token", globs: map[string]*regexp.Regexp{},
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_auth_failures_total",
			Help: "Rejected client credentials, by how they were presented."}, []string{"method"}),
		passwordChecks: prometheus.NewCounter(prometheus.CounterOpts{Name: "goldproxy_auth_password_checks_total",
			Help: "Passwords and robot tokens checked (bcrypt for users): what the login limiter lets through."}),
	}
	var err error
	if a.logins, err = newLimiter(cfg, now); err != nil {
		return nil, err
	}
	for _, method := range []string{"basic", "token", "token_request", "rate_limited"} {
		a.failures.WithLabelValues(method)
	}
	for _, c := range []prometheus.Collector{a.failures, a.passwordChecks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
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
	cost := bcrypt.DefaultCost
	for _, h := range a.users {
		if c, err := bcrypt.Cost(h); err == nil {
			cost = c
			break
		}
	}
	if a.dummy, err = bcrypt.GenerateFromPassword([]byte("goldproxy: no such user"), cost); err != nil {
		return nil, err
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

// match is policy.Match with each glob compiled once.
func (a *Authenticator) match(g, s string) bool {
	a.globMu.Lock()
	re, ok := a.globs[g]
	if !ok {
		re, _ = policy.CompileGlob(g)
		if len(a.globs) < 10_000 { // scopes come from config and robots: few
			a.globs[g] = re
		}
	}
	a.globMu.Unlock()
	return re != nil && re.MatchString(s)
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

// NewRobotToken returns a new random robot token (shown once) and the hash to store.
func NewRobotToken() (token, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// AddRobot creates a pull-only robot and returns its token, which is shown only now.
// Two adds of one name never both succeed.
func (a *Authenticator) AddRobot(name string, scopes []string, ttl time.Duration) (string, error) {
	if !reRobotName.MatchString(name) {
		return "", fmt.Errorf("robot name %q: use lower-case letters, digits, '.', '_' or '-'", name)
	}
	for i, g := range scopes {
		if _, err := policy.CompileGlob(g); err != nil {
			return "", fmt.Errorf("scope %d: %w", i, err)
		}
	}
	tok, hash := NewRobotToken()
	r := storage.Robot{Name: name, Hash: hash, Scopes: scopes, Created: a.now().UTC()}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl)
	}
	// The store decides, atomically and for every replica sharing it, which of
	// concurrent adds of one name wins.
	if err := a.store.AddRobot(r); errors.Is(err, storage.ErrExists) {
		return "", fmt.Errorf("robot %q exists: revoke it first", name)
	} else if err != nil {
		return "", err
	}
	a.robots.Add(1)
	a.announceRobots()
	return tok, nil
}

// OnRobotsChange sets fn, told after a robot is added or revoked here: the other
// replicas sharing the store are told through it (see RobotsChanged).
func (a *Authenticator) OnRobotsChange(fn func()) { a.robotsChanged = fn }

func (a *Authenticator) announceRobots() {
	if a.robotsChanged != nil {
		a.robotsChanged()
	}
}

// RobotsChanged is told that another replica added or revoked a robot. Credentials are
// checked against the store on every request already; what is read again is how many
// robots exist, which decides whether anonymous pulls are still allowed.
func (a *Authenticator) RobotsChanged() error {
	rs, err := a.store.Robots()
	if err != nil {
		return err
	}
	a.robots.Store(int64(len(rs)))
	return nil
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
	a.robotMu.Lock()
	defer a.robotMu.Unlock()
	if _, err := a.store.Robot(name); err != nil {
		return err
	}
	if err := a.store.DeleteRobot(name); err != nil {
		return err
	}
	a.robots.Add(-1)
	a.announceRobots()
	return nil
}

// ServeRobots is /api/v1/robots (admins only): GET lists, POST {name, scopes, expires}
// adds, DELETE /api/v1/robots/<name> revokes.
func (a *Authenticator) ServeRobots(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v1/robots"), "/")
	if p := PrincipalOf(r.Context()); !p.Admin() {
		return httpx.Denied("robots are managed by admins of this proxy (auth.admins)")
	}
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
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
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

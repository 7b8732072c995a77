package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

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

// issue signs a token granting p pull on the requested repositories it may pull: each as
// the client named it and as "<upstream>/<repository>".
func (a *Authenticator) issue(p *Principal, names []string) (string, time.Duration, error) {
	ttl := a.cfg.TokenTTL
	now := a.now()
	c := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenService, Subject: p.Name, Audience: jwt.ClaimStrings{tokenService},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Scopes: p.scopes}
	seen := map[string]bool{}
	grant := func(n string) {
		if !seen[n] {
			seen[n] = true
			c.Access = append(c.Access, tokenAccess{Type: "repository", Name: n, Actions: []string{"pull"}})
		}
	}
	for _, n := range names {
		// A name without a host (containerd's, with ?ns=) may stand for a repository of
		// any upstream: the token names it as asked, for those the principal may pull.
		for _, key := range a.candidates(n) {
			if p.May(key) {
				grant(n)
				grant(key)
			}
		}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.key)
	return s, ttl, err
}

// verify checks a bearer token — signature, expiry — and that its subject still may
// log in (a revoked or expired robot's, or a removed user's, tokens stop working).
func (a *Authenticator) verify(tok string) (*Principal, error) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return a.key, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(tokenService), jwt.WithIssuer(tokenService), jwt.WithTimeFunc(a.now))
	if err != nil {
		return nil, err
	}
	p := &Principal{Name: c.Subject, token: true, a: a}
	switch {
	case strings.HasPrefix(c.Subject, "robot$"):
		r, err := a.store.Robot(strings.TrimPrefix(c.Subject, "robot$"))
		if err != nil {
			return nil, fmt.Errorf("robot %s was revoked", c.Subject)
		}
		if !r.Expires.IsZero() && a.now().After(r.Expires) {
			return nil, fmt.Errorf("robot %s expired", c.Subject)
		}
		p.scopes = r.Scopes
	case c.Subject == "anonymous":
		if !a.anonymous() {
			return nil, errors.New("anonymous pulls are off")
		}
	default:
		if _, ok := a.users[c.Subject]; !ok {
			return nil, fmt.Errorf("user %s no longer exists", c.Subject)
		}
		p.scopes = a.cfg.Scopes[c.Subject]
	}
	for _, x := range c.Access {
		if x.Type == "repository" {
			p.access = append(p.access, x.Name)
		}
	}
	return p, nil
}

// challenge is the 401 that starts docker's token flow. The realm is the configured
// external URL's, never the request's Host.
func (a *Authenticator) challenge(scope, msg string) *httpx.Error {
	h := fmt.Sprintf(`Bearer realm="%s",service="%s"`, a.realm, tokenService)
	if scope != "" {
		h += fmt.Sprintf(`,scope="%s"`, scope)
	}
	return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: msg, Header: map[string]string{"WWW-Authenticate": h}}
}

func basicChallenge(msg string) *httpx.Error {
	return &httpx.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: msg,
		Header: map[string]string{"WWW-Authenticate": `Basic realm="goldproxy"`}}
}

// credentials authenticates r's Authorization header: nil, nil when there is none.
func (a *Authenticator) credentials(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	switch {
	case h == "":
		return nil, nil
	case strings.HasPrefix(h, "Basic "):
		user, pass, ok := r.BasicAuth()
		if !ok {
			return nil, errors.New("malformed basic credentials")
		}
		p, err := a.login(a.logins.clientAddr(r), user, pass)
		if err != nil {
			if !errors.Is(err, errLimited) {
				a.failures.WithLabelValues("basic").Inc()
			}
			return nil, err
		}
		return p, nil
	case strings.HasPrefix(h, "Bearer "):
		p, err := a.verify(strings.TrimPrefix(h, "Bearer "))
		if err != nil {
			a.failures.WithLabelValues("token").Inc()
			return nil, err
		}
		return p, nil
	}
	return nil, errors.New("unsupported authorization scheme")
}

func (a *Authenticator) refusal(err error, scope string) error {
	if errors.Is(err, errLimited) {
		return httpx.TooManyRequests("too many failed logins; wait a minute")
	}
	return a.challenge(scope, "authentication failed: "+err.Error()+"; log in again")
}

// Authorize decides whether r may read repository key, which the client named name
// (both empty: the /v2/ base).
func (a *Authenticator) Authorize(r *http.Request, name, key string) error {
	if !a.Enabled() {
		return nil
	}
	scope := ""
	if name != "" {
		scope = "repository:" + name + ":pull"
	}
	p, err := a.credentials(r)
	if err != nil {
		return a.refusal(err, scope)
	}
	if p == nil {
		if a.anonymous() {
			return nil
		}
		return a.challenge(scope, "authentication required: docker login "+strings.TrimPrefix(strings.TrimPrefix(a.realm, "https://"), "http://"))
	}
	if key != "" && !p.MayName(name, key) {
		if p.token && p.inScope(key) {
			// The subject may, this token may not: a token is for what it was asked for.
			return a.challenge(scope, "this token does not grant "+key+"; ask for a token for it")
		}
		return httpx.Denied("%s may not pull %s", p.Name, key)
	}
	return nil
}

// ServeToken is the registry token endpoint: GET /token?service=goldproxy&scope=... with
// Basic credentials (or none, when anonymous pulls are allowed).
func (a *Authenticator) ServeToken(w http.ResponseWriter, r *http.Request) error {
	if !a.Enabled() {
		return httpx.Unsupported("authentication is off on this proxy")
	}
	var p *Principal
	if user, pass, ok := r.BasicAuth(); ok {
		var err error
		if p, err = a.login(a.logins.clientAddr(r), user, pass); err != nil {
			if errors.Is(err, errLimited) {
				return httpx.TooManyRequests("too many failed logins; wait a minute")
			}
			a.failures.WithLabelValues("token_request").Inc()
			return basicChallenge("invalid username or password")
		}
	} else if a.anonymous() {
		p = &Principal{Name: "anonymous", a: a}
	} else {
		return basicChallenge("credentials required")
	}
	var names []string
	for _, sc := range r.URL.Query()["scope"] {
		for _, one := range strings.Split(sc, " ") {
			parts := strings.Split(one, ":")
			if len(parts) >= 3 && parts[0] == "repository" {
				names = append(names, strings.Join(parts[1:len(parts)-1], ":"))
			}
		}
	}
	tok, ttl, err := a.issue(p, names)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{
		"token": tok, "access_token": tok, "expires_in": int(ttl.Seconds()), "issued_at": a.now().UTC().Format(time.RFC3339),
	})
}

type principalKey struct{}

// PrincipalOf is who made the request AuthorizeAPI let through: nil when authentication
// is off or the request came without credentials.
func PrincipalOf(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// AuthorizeAPI guards /api/v1/ and /ui/: reading needs what pulling needs, and a scoped
// principal sees only its repositories; changing anything (gc, DB update, robots,
// baselines) needs an authenticated admin, a JSON body type and no cross-site origin.
// It returns r carrying the principal (PrincipalOf).
func (a *Authenticator) AuthorizeAPI(r *http.Request) (*http.Request, error) {
	readOnly := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !readOnly {
		if err := a.sameOrigin(r); err != nil {
			return r, err
		}
	}
	if !a.Enabled() {
		if !readOnly {
			return r, httpx.Denied("the admin API is off while authentication is: set auth.htpasswd and name yourself in auth.admins to %s %s", r.Method, r.URL.Path)
		}
		return r, nil
	}
	p, err := a.credentials(r)
	if err != nil {
		if errors.Is(err, errLimited) {
			return r, httpx.TooManyRequests("too many failed logins; wait a minute")
		}
		return r, basicChallenge("invalid credentials: " + err.Error())
	}
	if p == nil {
		if readOnly && a.anonymous() {
			return r, nil
		}
		return r, basicChallenge("credentials required")
	}
	if !readOnly && !p.Admin() {
		return r, httpx.Denied("%s is not an admin of this proxy (auth.admins)", p.Name)
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), nil
}

// sameOrigin refuses a changing request that a browser sent from another site, or that
// does not say its body is JSON (a form post from another site cannot).
func (a *Authenticator) sameOrigin(r *http.Request) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return &httpx.Error{Status: http.StatusUnsupportedMediaType, Code: "UNSUPPORTED",
			Message: "changing requests must be sent with Content-Type: application/json"}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return httpx.Denied("cross-site requests may not change this proxy")
	}
	if o := r.Header.Get("Origin"); o != "" {
		want, _ := url.Parse(a.realm)
		got, err := url.Parse(o)
		if err != nil || want == nil || got.Scheme != want.Scheme || got.Host != want.Host {
			return httpx.Denied("requests from origin %s may not change this proxy", o)
		}
	}
	return nil
}

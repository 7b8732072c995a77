package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/goldproxy/goldproxy/proxy/config"
)

// upstream is one registry goldproxy pulls from, with its credentials and transports.
type upstream struct {
	name    string // the host clients use for it ("docker.io")
	reg     name.Registry
	auth    authn.Authenticator
	keys    authn.Keychain
	base    http.RoundTripper
	puller  *remote.Puller
	tagTTL  time.Duration
	timeout time.Duration
	creds   string // how it is authenticated to, for errors ("anonymously", "as user alice")
	health  health

	mu     sync.Mutex
	blobRT map[string]http.RoundTripper // authenticated transports for raw blob GETs, by repository
}

func newUpstream(c config.UpstreamConfig, defTTL, timeout time.Duration, manifestLimit int64, resolve func(string) string, m *metrics) (*upstream, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", c.Name, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = timeout
	if c.Insecure || c.CAFile != "" {
		tlsc := &tls.Config{InsecureSkipVerify: c.Insecure} //nolint:gosec // explicit per-upstream opt-in
		if c.CAFile != "" {
			pem, err := os.ReadFile(resolve(c.CAFile))
			if err != nil {
				return nil, fmt.Errorf("upstream %s: ca_file: %w", c.Name, err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("upstream %s: ca_file: no certificate found", c.Name)
			}
			tlsc.RootCAs = pool
		}
		tr.TLSClientConfig = tlsc
	}
	base := &upstreamTransport{next: tr, name: c.Name, m: m, manifestLimit: manifestLimit}
	up := &upstream{name: c.Name, reg: reg, base: base, tagTTL: c.TagTTL, timeout: timeout, blobRT: map[string]http.RoundTripper{}}
	base.health = &up.health
	if up.tagTTL == 0 {
		up.tagTTL = defTTL
	}
	if err := up.setAuth(c.Auth, resolve); err != nil {
		return nil, fmt.Errorf("upstream %s: auth: %w", c.Name, err)
	}
	popts := []remote.Option{
		remote.WithTransport(base),
		remote.WithUserAgent("goldproxy"),
		// One quick retry: a flaky upstream should not stall a pull, and an unreachable
		// one should fall back to the cache fast.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}),
	}
	if up.keys != nil {
		popts = append(popts, remote.WithAuthFromKeychain(up.keys))
	} else {
		popts = append(popts, remote.WithAuth(up.auth))
	}
	if up.puller, err = remote.NewPuller(popts...); err != nil {
		return nil, err
	}
	return up, nil
}

func (u *upstream) setAuth(a config.AuthConfig, resolve func(string) string) error {
	file := func(f string) string {
		if f == "" {
			return ""
		}
		return resolve(f)
	}
	switch {
	case a.Keychain:
		u.keys = authn.DefaultKeychain
		u.creds = "with the docker keychain (auth.keychain)"
		return nil
	case a.TokenEnv != "" || a.TokenFile != "":
		tok, err := config.Secret(a.TokenEnv, file(a.TokenFile))
		if err != nil {
			return err
		}
		u.auth = &authn.Bearer{Token: tok}
		u.creds = "with the bearer token of auth." + map[bool]string{true: "token_env " + a.TokenEnv, false: "token_file " + a.TokenFile}[a.TokenEnv != ""]
	case a.Username != "":
		pw, err := config.Secret(a.PasswordEnv, file(a.PasswordFile))
		if err != nil {
			return err
		}
		u.auth = &authn.Basic{Username: a.Username, Password: pw}
		u.creds = fmt.Sprintf("as user %q (auth.username)", a.Username)
	default:
		u.auth = authn.Anonymous
		u.creds = "anonymously (no auth configured)"
	}
	return nil
}

func (u *upstream) repo(repo string) name.Repository {
	return u.reg.Repo(repo)
}

func (u *upstream) authenticator(repo string) (authn.Authenticator, error) {
	if u.keys != nil {
		return u.keys.Resolve(u.repo(repo))
	}
	return u.auth, nil
}

// blobTransport returns a transport authenticated for pulling from repo, made once per
// repository (ggcr's bearer transport refreshes its token on a 401 by itself).
func (u *upstream) blobTransport(ctx context.Context, repo string) (http.RoundTripper, error) {
	u.mu.Lock()
	rt, ok := u.blobRT[repo]
	u.mu.Unlock()
	if ok {
		return rt, nil
	}
	auth, err := u.authenticator(repo)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	rt, err = transport.NewWithContext(pctx, u.reg, auth, u.base, []string{u.repo(repo).Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.blobRT[repo] = rt
	u.mu.Unlock()
	return rt, nil
}

// blobURL is where repo's blob dgst is fetched from.
func (u *upstream) blobURL(repo, dgst string) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/%s", u.reg.Scheme(), u.reg.RegistryStr(), repo, dgst)
}

// UpstreamRef maps a reference whose registry is a configured upstream's name (as
// clients spell it, e.g. ghcr.io/aquasecurity/trivy-db:2) to where that upstream really
// is, with its transport and credentials, for fetches goldproxy makes for itself (the
// vulnerability DB).
func (m *Mirror) UpstreamRef(ref name.Reference) (name.Reference, []remote.Option, error) {
	host := ref.Context().RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	up, ok := m.router.byHost[host]
	if !ok {
		return nil, nil, fmt.Errorf("no upstream is configured for %s (needed to fetch %s)", host, ref)
	}
	repo := up.repo(ref.Context().RepositoryStr())
	var out name.Reference = repo.Tag(ref.Identifier())
	if d, isDigest := ref.(name.Digest); isDigest {
		out = repo.Digest(d.DigestStr())
	}
	return out, []remote.Option{remote.Reuse(up.puller)}, nil
}

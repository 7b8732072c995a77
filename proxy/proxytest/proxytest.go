// Package proxytest starts upstream registries and goldproxy servers on loopback for
// tests, and counts what the upstream was asked.
package proxytest

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/fromconfig"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
	"github.com/goldproxy/goldproxy/storage/s3test"
)

// Upstream is an in-process OCI registry (go-containerregistry's, with referrers) that
// counts the requests it gets and can be made to misbehave.
type Upstream struct {
	*httptest.Server
	// Host is "127.0.0.1:<port>", where the registry listens.
	Host string
	// Name is the registry host the proxy's config names this upstream by
	// ("r<port>.test"; Host is its alias), so it can stand first in a repository path.
	Name string

	mu     sync.Mutex
	counts map[string]int
	fault  func(w http.ResponseWriter, r *http.Request) bool
}

// NewUpstream starts an upstream registry that is closed when the test ends.
func NewUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{counts: map[string]int{}}
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.counts[r.Method+" "+r.URL.Path]++
		fault := u.fault
		u.mu.Unlock()
		if fault != nil && fault(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Close)
	u.Host = strings.TrimPrefix(u.URL, "http://")
	_, port, _ := strings.Cut(u.Host, ":")
	u.Name = "r" + port + ".test"
	return u
}

// SetFault installs f in front of the registry: when it returns true it has answered
// the request itself. nil removes the fault.
func (u *Upstream) SetFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	u.mu.Lock()
	u.fault = f
	u.mu.Unlock()
}

// Count is how many requests with method were made for path.
func (u *Upstream) Count(method, path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[method+" "+path]
}

// BlobGETs is how many times repo's blob d was fetched.
func (u *Upstream) BlobGETs(repo string, d v1.Hash) int {
	return u.Count(http.MethodGet, "/v2/"+repo+"/blobs/"+d.String())
}

// Total is how many requests of any kind the upstream got, /v2/ pings excluded.
func (u *Upstream) Total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for k, c := range u.counts {
		if !strings.HasSuffix(k, " /v2/") {
			n += c
		}
	}
	return n
}

// Walk calls fn for every "METHOD /path" counted so far.
func (u *Upstream) Walk(fn func(key string, count int)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, c := range u.counts {
		fn(k, c)
	}
}

// ResetCounts forgets all counted requests.
func (u *Upstream) ResetCounts() {
	u.mu.Lock()
	u.counts = map[string]int{}
	u.mu.Unlock()
}

// Ref parses "repo:tag" or "repo@digest" as a reference on this upstream.
func (u *Upstream) Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(u.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// Push writes img as repo:tag and returns its manifest digest.
func (u *Upstream) Push(t testing.TB, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(u.Ref(t, repoTag), img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PushIndex writes idx as repo:tag and returns its digest.
func (u *Upstream) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(u.Ref(t, repoTag), idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Config returns a proxy config whose only upstreams are ups (named by Name, with Host
// as an alias),
// that allows every repository, with data under a fresh temp dir.
func Config(t testing.TB, ups ...*Upstream) *config.Config {
	t.Helper()
	cfg := localConfig(t, ups...)
	if os.Getenv(SharedStorageEnv) == "1" {
		SharedStorage(t, cfg)
	}
	return cfg
}

// localConfig is Config on the filesystem and bbolt.
func localConfig(t testing.TB, ups ...*Upstream) *config.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\ndata_dir: %s\nupstreams:\n", t.TempDir())
	for _, u := range ups {
		fmt.Fprintf(&b, "  - name: %q\n    url: %s\n    aliases: [%q]\n", u.Name, u.URL, u.Host)
	}
	b.WriteString("allow:\n  repositories: [\"**\"]\n")
	cfg, err := config.Parse([]byte(b.String()), "")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// SharedStorageEnv set to 1 runs every proxy of Config on the replicas' store: the
// proxy suite against S3 and PostgreSQL instead of the filesystem and bbolt.
const SharedStorageEnv = "GOLDPROXY_TEST_SHARED_STORAGE"

// SharedStorage points cfg's storage at a fresh bucket of an S3 server and a fresh
// PostgreSQL database, both started for t; credentials by file, as in production.
func SharedStorage(t testing.TB, cfg *config.Config) {
	t.Helper()
	srv, pg := s3test.Start(t), pgtest.Start(t)
	dir := t.TempDir()
	file := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg.Storage.Driver = "s3"
	cfg.Storage.S3 = config.S3Config{Bucket: srv.NewBucket(t), Endpoint: srv.Endpoint, ForcePathStyle: true,
		AccessKeyFile: file("s3-access", srv.AccessKey), SecretKeyFile: file("s3-secret", srv.SecretKey)}
	cfg.Storage.Metadata = config.MetadataConfig{Driver: "postgres", Postgres: config.PostgresConfig{DSNFile: file("pg-dsn", pg.NewDatabase(t))}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// ReplicaConfigs returns configs for n replicas of one proxy over ups: each its own
// data_dir, all on one fresh S3 bucket and PostgreSQL database (see SharedStorage).
func ReplicaConfigs(t testing.TB, n int, ups ...*Upstream) []*config.Config {
	t.Helper()
	first := localConfig(t, ups...)
	SharedStorage(t, first)
	cfgs := []*config.Config{first}
	for range n - 1 {
		c := localConfig(t, ups...)
		c.Storage = first.Storage
		cfgs = append(cfgs, c)
	}
	return cfgs
}

// Proxy is a running goldproxy in a test.
type Proxy struct {
	*httptest.Server
	Host   string
	Store  *storage.Store
	Gold   *proxy.Server
	Config *config.Config
	once   sync.Once

	mu   sync.Mutex
	seen []string // "METHOD /path?query" of every request, in order
}

// Requests lists the requests the proxy got whose "METHOD /path?query" contains substr.
func (p *Proxy) Requests(substr string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.seen {
		if strings.Contains(s, substr) {
			out = append(out, s)
		}
	}
	return out
}

// Start opens the store cfg describes (by default under cfg.DataDir) and serves a proxy
// on loopback until the test ends or Close is called.
func Start(t testing.TB, cfg *config.Config, opts ...proxy.Option) *Proxy {
	t.Helper()
	store, err := fromconfig.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Store: store, Config: cfg}
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.RequestURI())
		p.mu.Unlock()
		p.Gold.ServeHTTP(w, r)
	}))
	p.Host = p.Listener.Addr().String()
	if cfg.ExternalURL == "" {
		cfg.ExternalURL = "http://" + p.Host // where clients reach it: the token realm, report links
	}
	opts = append([]proxy.Option{proxy.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	if p.Gold, err = proxy.New(cfg, store, opts...); err != nil {
		store.Close()
		p.Listener.Close()
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(p.Close)
	return p
}

// Close stops the server and closes the store; it may be called more than once.
func (p *Proxy) Close() {
	p.once.Do(func() {
		p.Gold.Close()
		p.Server.Close()
		p.Store.Close()
	})
}

// PullAll pulls ref through the proxy at host as a client does, with go-containerregistry:
// the manifest, the config, and every layer read to the end (digests verified).
func PullAll(host, ref string, opts ...remote.Option) error {
	r, err := name.ParseReference(host+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

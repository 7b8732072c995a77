// Package mirror is the data path to the upstreams: it maps a client's name to an
// upstream repository, resolves tags (TTL, stale-if-error), fetches manifests by digest
// and verifies them, and brings blobs into the store with one upstream GET however many
// ask, streaming to the first client while holding the last chunk back until the digest
// is verified. It keeps which repository may see which content (links) and which blobs
// are in use (leases).
//
// It never judges: whether a manifest or blob may reach a client is the registry's and
// the gate's to decide before they ask. It never stores or sends a byte that does not
// match its digest.
package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
)

// Lifetime is the server's: fetches shared by several requests outlive the request that
// started them, not the server. Background gives such work a context Close cancels;
// done must be called when it ends.
type Lifetime interface {
	Background(ctx context.Context) (context.Context, func())
}

// Mirror fetches from the configured upstreams into the store.
type Mirror struct {
	cfg     *config.Config
	store   *storage.Store
	router  *router
	life    Lifetime
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	leases  leases
	// onRefresh is told of tags checked with the upstream (OnTagRefresh).
	onRefresh TagRefreshed

	sf       singleflight.Group // tag resolutions and manifest fetches
	mu       sync.Mutex
	inflight map[digest.Digest]*blobFetch
}

// New builds the mirror of cfg's upstreams over store; its metrics are registered on reg.
func New(cfg *config.Config, store *storage.Store, life Lifetime, log *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Mirror, error) {
	m := &Mirror{cfg: cfg, store: store, life: life, log: log, now: now, inflight: map[digest.Digest]*blobFetch{}}
	var err error
	if m.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	ups := make([]*upstream, 0, len(cfg.Upstreams))
	for _, uc := range cfg.Upstreams {
		u, err := newUpstream(uc, cfg.Tags.TTL, cfg.UpstreamTimeout, int64(cfg.Limits.ManifestBytes), cfg.Resolve, m.metrics)
		if err != nil {
			return nil, err
		}
		ups = append(ups, u)
	}
	m.router = newRouter(ups, cfg)
	return m, nil
}

// Resolve fills rt's upstream, repository and key from the name and ?ns= the client
// gave; the error is what the client sees (NAME_UNKNOWN, NAME_INVALID).
func (m *Mirror) Resolve(rt *Route) error {
	if err := m.router.resolve(rt); err != nil {
		return err
	}
	return nil
}

// RouteFor finds the route of a "<upstream>/<repository>" name.
func (m *Mirror) RouteFor(key string) (*Route, error) {
	host, repo, ok := strings.Cut(key, "/")
	up, known := m.router.byHost[host]
	if !ok || !known {
		return nil, fmt.Errorf("no upstream for %q", key)
	}
	return &Route{Kind: KindManifest, Name: key, up: up, Repo: repo, Key: key}, nil
}

// Candidates are the "<upstream>/<repository>" names a repository name as a client
// writes it may stand for: one when it names its host (or an alias); without one (as
// containerd writes it, the host in ?ns=) Docker Hub's and each upstream's.
func (m *Mirror) Candidates(name string) []string {
	var out []string
	rt := &Route{Kind: KindManifest, Name: name}
	if m.Resolve(rt) == nil {
		out = append(out, rt.Key)
	}
	if first, _, _ := strings.Cut(name, "/"); looksLikeHost(first) || !reValidName(name) {
		return out
	}
	for host, up := range m.router.byHost {
		if k := up.name + "/" + name; host == up.name && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func reValidName(name string) bool {
	for _, c := range strings.Split(name, "/") {
		if !reComponent.MatchString(c) {
			return false
		}
	}
	return true
}

// EnsureBlob makes sure blob d of repository repo ("<upstream>/<repository>") is in the
// store, fetching it once however many ask. When this call is the one that fetches it and tap is not nil, tap is handed each
// chunk as it is stored (before the digest is verified; the chunk is reused after tap
// returns) until it returns false.
func (m *Mirror) EnsureBlob(ctx context.Context, repo string, d digest.Digest, tap func([]byte) bool) error {
	rt, err := m.RouteFor(repo)
	if err != nil {
		return err
	}
	return m.ensureBlob(ctx, rt, d, tap)
}

// Owners are the manifests of repo ("<upstream>/<repository>") that reference blob.
func (m *Mirror) Owners(repo string, blob digest.Digest) ([]digest.Digest, error) {
	return m.store.Owners(repo, blob)
}

// Hold keeps blob d from being collected until the returned func is called.
func (m *Mirror) Hold(d digest.Digest) func() { return m.leases.Hold(d) }

// Held reports whether blob d is in use by a request or a scan.
func (m *Mirror) Held(d digest.Digest) bool { return m.leases.Held(d) }

// Holding lists the digests in use by a request or a scan.
func (m *Mirror) Holding() []digest.Digest { return m.leases.Holding() }

// OnNewHold has fn told, without blocking, each time a digest becomes held. It must be
// called before the mirror serves.
func (m *Mirror) OnNewHold(fn func()) { m.leases.onNew = fn }

// detach is a background context bounded by the upstream timeout, for upstream round
// trips shared by several requests.
func (m *Mirror) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, done := m.life.Background(ctx)
	tctx, cancel := context.WithTimeout(bctx, m.cfg.UpstreamTimeout)
	return tctx, func() { cancel(); done() }
}

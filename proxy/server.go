package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/auth"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/gc"
	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/proxy/trust"
	"github.com/goldproxy/goldproxy/storage"
)

// Server is the registry front: it answers the OCI pull API for every configured
// upstream from the store, ingesting on a miss.
type Server struct {
	cfg    *config.Config
	store  *storage.Store
	mirror *mirror.Mirror
	allow  *gate.Allowlist
	check  registry.Gate // the allowlist, or the scanning gate
	gate   *gate.Gate    // nil without a scanner
	log    *slog.Logger
	life   *lifetime
	gc     *gc.Collector
	admin  *admin.Handler
	api    *registry.Registry // the OCI pull API

	scanner gate.Scanner
	policy  *policy.Set

	dbUpdate func(context.Context) (any, error)
	version  http.Handler
	backup   func(io.Writer) (int64, error)
	auth     *auth.Authenticator
	registry prometheus.Registerer
	metrics  *metrics
	now      func() time.Time

	peers peers      // the other replicas sharing the store; nil: none
	lead  leadership // the jobs one replica runs
	beat  time.Duration
}

// Option configures a Server.
type Option func(*Server)

// WithGate replaces what decides whether a manifest is served (default: the
// allowlist, or the scanning gate with WithScanner).
func WithGate(c registry.Gate) Option { return func(s *Server) { s.check = c } }

// WithScanner puts a scanning gate behind the allowlist: every image manifest is
// ingested whole, scanned and judged by pol before it is served.
func WithScanner(sc gate.Scanner, pol *policy.Set) Option {
	return func(s *Server) { s.scanner, s.policy = sc, pol }
}

// WithVersion serves /api/v1/version (the build and the loaded DB) with h.
func WithVersion(h http.Handler) Option { return func(s *Server) { s.version = h } }

// WithBackup serves GET /api/v1/admin/backup (admins only): f writes a consistent copy
// of the metadata DB.
func WithBackup(f func(io.Writer) (int64, error)) Option { return func(s *Server) { s.backup = f } }

// WithDBUpdater lets POST /api/v1/db/update refresh the vulnerability DB.
func WithDBUpdater(f func(context.Context) (any, error)) Option {
	return func(s *Server) { s.dbUpdate = f }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithHoldsHeartbeat sets how often a replica on a shared store tells the others which
// digests it uses (default 5 s; tests).
func WithHoldsHeartbeat(d time.Duration) Option { return func(s *Server) { s.beat = d } }

// WithClock sets the clock used for tag TTLs (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New builds a Server over an opened store.
func New(cfg *config.Config, store *storage.Store, opts ...Option) (*Server, error) {
	lists := make([]string, len(cfg.Allow.Lists))
	for i, l := range cfg.Allow.Lists {
		lists[i] = cfg.Resolve(l)
	}
	allow, err := gate.NewAllowlist(cfg.Allow.Repositories, lists)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		store: store,
		allow: allow,
		log:   slog.Default(),
		life:  newLifetime(),
		now:   time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(s.registry)
	s.peers, _ = store.Metadata().(peers)
	if s.mirror, err = mirror.New(cfg, store, s.life, s.log, s.registry, s.now); err != nil {
		return nil, err
	}
	if s.auth, err = auth.New(cfg.Auth, cfg.Resolve, store, s.now, s.log, s.registry, s.mirror.Candidates, cfg.External()); err != nil {
		return nil, err
	}
	if s.scanner != nil {
		root := ""
		if cfg.Trust.TrustedRoot != "" {
			root = cfg.Resolve(cfg.Trust.TrustedRoot)
		}
		verifier, err := trust.New(trust.Options{TrustedRoot: root, RequireSCT: cfg.Trust.SCTRequired(), RequireTlog: cfg.Trust.TlogRequired()})
		if err != nil {
			return nil, fmt.Errorf("config: trust.trusted_root: %w", err)
		}
		claims, _ := store.Metadata().(gate.Claims) // shared metadata: one scan across replicas
		s.gate, err = gate.New(gate.Deps{Store: store, Scanner: s.scanner, Policy: s.policy, Scan: cfg.Scan, Webhooks: cfg.Webhooks,
			Fetch: s.mirror, Life: s.life, Leases: s.mirror, Claims: claims, Changed: s.factsChanged, Log: s.log, Registry: s.registry, External: cfg.External(), Limits: cfg.Limits, SpillDir: filepath.Join(cfg.DataDir, "tmp"),
			Signatures: s.mirror, Verifier: verifier, Discover: cfg.Trust.Discover})
		if err != nil {
			return nil, err
		}
		s.mirror.OnTagRefresh(s.gate.RefreshSignatures)
		g := s.gate
		s.goBackground(func(ctx context.Context) { g.WatchTrust(ctx, cfg.Trust.Refresh) })
		if s.check == nil {
			s.check = s.gate
		}
	}
	if s.check == nil {
		s.check = allow
	}
	// Replicas that elect a leader share the store: its collections must spare what the
	// others use.
	_, shared := store.Metadata().(leader)
	gd := gc.Deps{Store: store, Config: &cfg.Storage.GC, InUse: s.mirror, Life: s.life, Log: s.log, Now: s.now,
		Shared: shared, Heartbeat: s.beat}
	if s.gate != nil {
		gd.Verdicts = s.gate
		gd.Cache, _ = s.gate.Scanner().(gc.CacheForgetter)
	}
	s.gc = gc.New(gd)
	if shared {
		s.mirror.OnNewHold(s.gc.NewlyHeld)
		s.goBackground(s.gc.Publish)
	}
	s.admin = admin.New(store, s.gate, s.auth, s.gc, s.dbUpdate, s.now).WithVersion(s.version).WithBackup(s.backup)
	if err := s.registry.Register(s.admin.Collector()); err != nil {
		return nil, err
	}
	if s.api, err = registry.New(s.mirror, s.check, s.auth, allow, s.gc.Pulls(), s.now, s.registry); err != nil {
		return nil, err
	}
	s.startPeers()
	s.goBackground(s.gc.FlushLoop)
	s.Lead(s.gc.Run)
	s.startLeading()
	return s, nil
}

// factsChanged is the gate's Changed: the other replicas are told.
func (s *Server) factsChanged(d digest.Digest) {
	if s.peers != nil {
		s.tell(topicFacts, d.String())
	}
}

// Close cancels everything the server started — scans, ingests, upstream fetches,
// re-evaluations, rescans, collections — waits for it to stop, and records buffered pull
// times: once it returns the server writes nothing more. In-flight requests are the HTTP
// server's to drain; what they start from now on fails at once.
func (s *Server) Close() {
	s.life.close()
	_ = s.gc.FlushPulls()
}

// lifetime tracks the work a server started that outlives the request it came from.
type lifetime struct {
	ctx    context.Context // cancelled by close
	stop   context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func newLifetime() *lifetime {
	l := &lifetime{}
	l.ctx, l.stop = context.WithCancel(context.Background())
	return l
}

// Begin registers one piece of work; false once the server is closing.
func (l *lifetime) Begin() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	return true
}

// End ends what Begin registered.
func (l *lifetime) End() { l.wg.Done() }

func (l *lifetime) close() {
	l.stop()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
}

// Background gives work shared by several requests a context that keeps ctx's values,
// that no single client's disconnect cancels but Close does; done must be called when
// the work ends. After Close the context is already cancelled.
func (l *lifetime) Background(ctx context.Context) (context.Context, func()) {
	return l.Bound(context.WithoutCancel(ctx))
}

// Bound is Background that keeps ctx's cancellation too: for work a caller may stop
// (a re-evaluation, a collection) that Close must stop as well.
func (l *lifetime) Bound(ctx context.Context) (context.Context, func()) {
	bctx, cancel := context.WithCancel(ctx)
	if !l.Begin() {
		cancel()
		return bctx, func() {}
	}
	stop := context.AfterFunc(l.ctx, cancel)
	return bctx, func() { stop(); cancel(); l.End() }
}

// SetPolicy swaps in a new policy set and judges every recorded verdict again from the
// stored facts. It returns how many verdicts flipped.
func (s *Server) SetPolicy(pol *policy.Set) (int, error) {
	if s.gate == nil {
		return 0, fmt.Errorf("no scanning gate")
	}
	flipped, err := s.gate.SetPolicy(pol)
	if err != nil {
		return flipped, err
	}
	return flipped, s.publishPolicy(pol)
}

// TrustChanged re-reads the trusted root and the key files the policies name and, when
// one changed on disk, judges every recorded verdict again from the stored signature
// material. It returns how many verdicts flipped (the server also does it every
// trust.refresh).
func (s *Server) TrustChanged() (int, error) {
	if s.gate == nil {
		return 0, fmt.Errorf("no gate: this server does not scan")
	}
	return s.gate.TrustChanged()
}

// Rejudge judges every recorded verdict again under the current policy.
func (s *Server) Rejudge() (int, error) {
	if s.gate == nil {
		return 0, nil
	}
	return s.gate.Rejudge()
}

// Reevaluate brings every digest's facts to the scanner's current vulnerability DB (see
// gate.Gate.Reevaluate).
func (s *Server) Reevaluate(ctx context.Context) (gate.ReevalStats, error) {
	if s.gate == nil {
		return gate.ReevalStats{}, fmt.Errorf("no scanning gate")
	}
	return s.gate.Reevaluate(ctx)
}

// SetClock sets the clock exceptions and image ages are judged by (tests).
func (s *Server) SetClock(now func() time.Time) {
	if s.gate != nil {
		s.gate.SetClock(now)
	}
}

// Scans is how many scans the gate has run (tests, metrics).
func (s *Server) Scans() int64 {
	if s.gate == nil {
		return 0
	}
	return s.gate.Scans()
}

// AuditDenials is how many pulls an audit-mode policy would have denied.
func (s *Server) AuditDenials() int64 {
	if s.gate == nil {
		return 0
	}
	return s.gate.AuditDenials()
}

// goBackground runs fn until Close.
func (s *Server) goBackground(fn func(context.Context)) {
	ctx, done := s.life.Background(context.Background())
	go func() {
		defer done()
		fn(ctx)
	}()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, id := httpx.WithRequestID(r)
	rw := httpx.NewResponseWriter(w)
	rw.Header().Set("X-Request-Id", id)
	r = r.WithContext(ctx)
	log := s.log.With("request_id", id)
	defer func() {
		d := time.Since(start)
		route := registry.RouteLabel(r.URL.Path)
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(rw.Status())).Inc()
		s.metrics.requestDuration.WithLabelValues(route, r.Method).Observe(d.Seconds())
		log.Info("request", "method", r.Method, "path", r.URL.Path, "ns", r.URL.Query().Get("ns"),
			"status", rw.Status(), "bytes", rw.Bytes(), "duration", d.Round(time.Microsecond))
	}()
	err := s.serve(rw, r)
	if err == nil {
		return
	}
	var re *httpx.Error
	if !errors.As(err, &re) || re.Status >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if rw.Wrote() {
		// Headers (and maybe bytes) are out: the only honest signal left is to cut the
		// connection so the client sees a failed transfer, never a "complete" bad one.
		panic(http.ErrAbortHandler)
	}
	httpx.WriteError(rw, r, err)
}

// serve dispatches: the token endpoint, the admin endpoints, the registry API.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path == "/token" {
		return s.auth.ServeToken(w, r)
	}
	if !strings.HasPrefix(r.URL.Path, "/v2") {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			var err error
			if r, err = s.auth.AuthorizeAPI(r); err != nil {
				return err
			}
		}
		if handled, err := s.admin.Serve(w, r); handled {
			return err
		}
	}
	return s.api.Serve(w, r)
}

// AddRobot creates a pull-only robot and returns its token, which is shown only now.
func (s *Server) AddRobot(name string, scopes []string, ttl time.Duration) (string, error) {
	return s.auth.AddRobot(name, scopes, ttl)
}

// Robots lists the robots (never their tokens).
func (s *Server) Robots() ([]storage.Robot, error) { return s.auth.Robots() }

// RevokeRobot deletes a robot: its password and its tokens stop working at once.
func (s *Server) RevokeRobot(name string) error { return s.auth.RevokeRobot(name) }

// UpstreamRef maps a reference to a configured upstream to where that upstream really
// is, with its transport and credentials (for the vulnerability DB fetch).
func (s *Server) UpstreamRef(ref name.Reference) (name.Reference, []remote.Option, error) {
	return s.mirror.UpstreamRef(ref)
}

// GC runs a collection now (see gc.Collector.Collect).
func (s *Server) GC(ctx context.Context, dryRun bool) (gc.Result, error) {
	return s.gc.Collect(ctx, dryRun)
}

// FlushPulls writes buffered last-pull times to the store.
func (s *Server) FlushPulls() error { return s.gc.FlushPulls() }

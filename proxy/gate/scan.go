package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// Scanner analyses an image whose manifest, config and layers are all in the store.
// It must make no network call.
type Scanner interface {
	Scan(ctx context.Context, img v1.Image, ref string) (*ScanResult, error)
}

// ScanResult is what a Scanner found, in policy terms, with its full report.
type ScanResult struct {
	OS              string
	EOSL            bool
	Vulnerabilities []policy.Vulnerability
	// Facts about the image the policy judges beside the findings.
	User        string
	Created     time.Time
	OSPackages  int
	Executables []string
	// UnanalysedJARs counts JAR files the scanner could not identify (no Java DB).
	UnanalysedJARs int
	// Report is the scanner's full report (Trivy's JSON report schema).
	Report json.RawMessage
	// DBVersion identifies the vulnerability database the scan used.
	DBVersion string
	// Key lets a Redetector find the image's analysis again (opaque to the proxy).
	Key json.RawMessage
}

// Redetector is a Scanner that can detect vulnerabilities again from an image's stored
// analysis, without reading a layer: how verdicts follow a new vulnerability DB. The
// result's image facts (user, executables…) may be left empty: they do not change.
type Redetector interface {
	Redetect(ctx context.Context, key, report json.RawMessage) (*ScanResult, error)
}

// Readiness is a Scanner that can say it cannot scan yet (no vulnerability DB loaded).
type Readiness interface {
	Ready() error
}

// AnalysisChecker is a Scanner that can tell a stored analysis is not what a scan
// would make now (other analyzers, a Java DB loaded since): such a digest is scanned
// again, not only re-detected.
type AnalysisChecker interface {
	NeedsAnalysis(key json.RawMessage) bool
}

// DBVersioner is a Scanner that names the vulnerability DB it would scan with now:
// facts made with another one are detected again by Reevaluate.
type DBVersioner interface {
	DBVersion() (string, error)
}

// Fact states. Facts are about a digest's content, whoever asked for it.
const (
	statePending  = "pending"  // a scan started and has not finished
	stateScanned  = "scanned"  // an image, scanned: Input holds what was found
	stateArtifact = "artifact" // not a container image (signature, attestation, SBOM): nothing to scan
	stateError    = "error"    // the scan failed; not final, the next pull scans again
	stateRefused  = "refused"  // over a limit (layers, uncompressed bytes): final, denied unscanned
)

// Judgement states: what a policy made of the facts for one repository.
const (
	stateAllowed = "allowed"
	stateDenied  = "denied"
)

// Facts is what the gate keeps per manifest digest: what a scan found, never anything
// about who asked. Judgements are made from it per request.
type Facts struct {
	State     string    `json:"state"`
	Digest    string    `json:"digest"`
	MediaType string    `json:"mediaType"`
	StartedAt time.Time `json:"startedAt"`
	ScannedAt time.Time `json:"scannedAt,omitzero"`
	DBVersion string    `json:"dbVersion,omitempty"`
	// Input is the scan's findings and image facts; its Repository and Tag are empty.
	Input *policy.Input `json:"input,omitempty"`
	// Kind says what an artifact was recognised as, or why an image was scanned.
	Kind string `json:"kind,omitempty"`
	// An artifact's type and subject (the image it is a signature, attestation or SBOM of).
	ArtifactType string `json:"artifactType,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Error        string `json:"error,omitempty"`
	// Limit is the config key of the limit a refused image is over.
	Limit string `json:"limit,omitempty"`
	// ScanKey finds the stored analysis again (see Redetector).
	ScanKey json.RawMessage `json:"scanKey,omitempty"`
	// Source is the repository the content was fetched through, where a rescan after a
	// restart fetches it again. It is provenance, never judged on.
	Source string `json:"source,omitempty"`
	// Signatures is what was found attached to an image (nil: never looked up).
	Signatures *SignatureFacts `json:"signatures,omitempty"`
	// LegacyRepository is the first version's field for Source.
	LegacyRepository string `json:"repository,omitempty"`
}

// Final reports whether the facts are complete: a judgement can be made from them.
func (f *Facts) Final() bool {
	return f.State == stateScanned || f.State == stateArtifact || f.State == stateRefused
}

// Fetcher brings a blob of a repository ("<upstream>/<repository>") into the store;
// the mirror implements it. Scans read only what it stored.
type Fetcher interface {
	// EnsureBlob hands tap (when not nil, and when this call fetches the blob) each
	// chunk as it is stored, until tap returns false.
	EnsureBlob(ctx context.Context, repo string, d digest.Digest, tap func([]byte) bool) error
}

// Lifetime is the server's: work the gate starts outlives the request it came from but
// not the server. Background gives such work a context Close cancels (done must be
// called when it ends); Bound is Background that keeps ctx's own cancellation; Begin
// and End bracket a write, refused once the server is closing.
type Lifetime interface {
	Background(ctx context.Context) (context.Context, func())
	Bound(ctx context.Context) (context.Context, func())
	Begin() bool
	End()
}

// Leaser keeps blobs from being collected while a scan reads them.
type Leaser interface {
	Hold(d digest.Digest) func()
}

// Deps is what a Gate works with.
type Deps struct {
	Store    *storage.Store
	Scanner  Scanner
	Policy   *policy.Set
	Scan     config.ScanConfig
	Webhooks config.WebhookConfig
	Fetch    Fetcher
	Life     Lifetime
	Leases   Leaser
	// Claims decide which replica scans a digest when several share the store; nil:
	// the store is this process's alone.
	Claims Claims
	// Changed, when set, is told of every facts record the gate writes, for the other
	// replicas sharing the store (see FactsChanged).
	Changed  func(digest.Digest)
	Log      *slog.Logger
	Registry prometheus.Registerer
	// External is the URL clients reach the proxy at: report links in denials use it.
	External string
	// Limits are the config's limits.*: an image over limits.layers is denied unscanned,
	// one whose layers expand past the uncompressed limits is denied when a scan finds it.
	Limits config.LimitsConfig
	// Signatures finds what is attached to an image; Verifier verifies it. Signatures are
	// looked up when Discover is set or a policy judges them.
	Signatures SignatureFinder
	Verifier   TrustVerifier
	Discover   bool
	// SpillDir is where a layer's bytes the scan has not read yet spill past the memory
	// queue (unlinked files, gone with the scan): the server's <data_dir>/tmp, on disk
	// (a tmpfs /tmp would hold them in memory). "": the temp dir.
	SpillDir string
}

// Gate scans every new image manifest once, keeps the facts, and judges them for every
// request.
type Gate struct {
	store    *storage.Store
	scanner  Scanner
	cfg      config.ScanConfig
	fetch    Fetcher
	life     Lifetime
	leases   Leaser
	claims   Claims
	changed  func(digest.Digest)
	wakeups  wakeups
	log      *slog.Logger
	external string
	limits   config.LimitsConfig
	// signatures, verifier and discover: see Deps.
	signatures SignatureFinder
	verifier   TrustVerifier
	discover   bool
	spillDir   string
	// indexes are the index digests whose signatures were mirrored since start.
	indexes sync.Map
	metrics *metrics
	notify  *notifier
	sf      singleflight.Group // one scan per digest
	policy  atomic.Pointer[policy.Set]
	now     func() time.Time
	slots   chan struct{}
	scans   atomic.Int64
	memo    memo
	states  judgementStates
	// auditDenials counts images served that an audit-mode policy would have denied.
	auditDenials atomic.Int64
	queued       atomic.Int64
	running      atomic.Int64
}

// New builds the gate and starts what it does in the background: rescans of what a
// restart interrupted, webhook deliveries.
func New(d Deps) (*Gate, error) {
	g := &Gate{store: d.Store, scanner: d.Scanner, cfg: d.Scan, fetch: d.Fetch, life: d.Life, leases: d.Leases, claims: d.Claims, changed: d.Changed, log: d.Log, now: time.Now, external: d.External, limits: d.Limits,
		signatures: d.Signatures, verifier: d.Verifier, discover: d.Discover, spillDir: d.SpillDir}
	if g.spillDir != "" {
		if err := os.MkdirAll(g.spillDir, 0o700); err != nil {
			return nil, fmt.Errorf("gate: spill dir: %w", err)
		}
	}
	if g.claims == nil {
		g.claims = &localClaims{}
	}
	if g.cfg.Lease <= 0 {
		g.cfg.Lease = 30 * time.Second
	}
	g.policy.Store(d.Policy)
	var err error
	if g.metrics, err = newMetrics(d.Registry, g); err != nil {
		return nil, err
	}
	ctx, done := d.Life.Background(context.Background())
	secret, err := config.Secret(d.Webhooks.SecretEnv, d.Webhooks.SecretFile)
	if err != nil {
		done()
		return nil, fmt.Errorf("webhooks.secret: %w", err)
	}
	g.notify = newNotifier(d.Webhooks, secret, g.log, g.metrics.webhookErrors.Inc)
	go func() {
		defer done()
		g.notify.run(ctx)
	}()
	g.start()
	return g, nil
}

// AuditDenials is how many pulls an audit-mode policy would have denied.
func (g *Gate) AuditDenials() int64 { return g.auditDenials.Load() }

// Scans is how many scans the gate has run (tests, metrics).
func (g *Gate) Scans() int64 { return g.scans.Load() }

// Scanner is the scanner the gate scans with, for what else it can do (reports, DB
// status, cache eviction).
func (g *Gate) Scanner() Scanner { return g.scanner }

func (g *Gate) start() {
	g.slots = make(chan struct{}, g.cfg.Workers)
	g.states.load(g.store)
	ctx, done := g.life.Background(context.Background())
	go func() {
		defer done()
		g.rescanPending(ctx)
	}()
}

// rescanPending scans again what a crash or restart interrupted, never serving it as
// "pending" — once the scanner can scan: a rescan before the DB is loaded would only
// record an error.
func (g *Gate) rescanPending(ctx context.Context) {
	var pending []*Facts
	_ = g.store.Verdicts(func(_ digest.Digest, b []byte) error {
		if f, err := decodeFacts(b); err == nil && f.State == statePending {
			pending = append(pending, f)
		}
		return nil
	})
	if len(pending) == 0 {
		return
	}
	if err := g.waitReady(ctx); err != nil {
		return
	}
	for _, f := range pending {
		g.log.Info("rescanning an image whose scan did not finish", "repository", f.Source, "digest", f.Digest)
		// Through the same singleflight as pulls: a pull arriving meanwhile joins this scan.
		res := <-g.sf.DoChan("scan\x00"+f.Digest, func() (any, error) {
			return g.scanOnce(ctx, f.Source, digest.Digest(f.Digest), f.MediaType, f)
		})
		if res.Err != nil && ctx.Err() != nil {
			return
		}
	}
}

// waitReady blocks until the scanner can scan (its DB is loaded) or ctx ends.
func (g *Gate) waitReady(ctx context.Context) error {
	r, ok := g.scanner.(Readiness)
	if !ok {
		return nil
	}
	wait := 100 * time.Millisecond
	for r.Ready() != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	return nil
}

// Check implements Gate: the digest's facts (scanned once, however many pulls wait for
// it) are judged for this repository and reference.
func (g *Gate) Check(ctx context.Context, m Manifest) (Verdict, error) {
	if m.Descriptor.MediaType.IsIndex() {
		g.mirrorIndexSignatures(m.Repository, digest.Digest(m.Descriptor.Digest.String()))
		return Verdict{Allowed: true, Rule: "index"}, nil // each platform manifest is judged on its own
	}
	dgst := digest.Digest(m.Descriptor.Digest.String())
	pol, now := g.policy.Load(), g.now()
	if v, ok := g.memo.get(dgst, m.Repository, m.Tag, pol, now); ok {
		g.counted(v, m)
		return v.verdict, nil
	}
	f, err := g.load(dgst)
	if err != nil || !f.Final() {
		if f, err = g.scanShared(ctx, m, dgst, f); err != nil {
			return Verdict{}, err
		}
	}
	f = g.ensureSignatures(ctx, f, m.Repository)
	j := g.judgeFacts(ctx, f, m.Repository, m.Tag, pol, now, 0)
	g.record(j, true)
	v := g.verdictOf(j, m)
	if f.State == stateScanned { // an artifact's verdict follows its subject's: not memoised
		g.memo.put(dgst, m.Repository, m.Tag, pol, v)
	}
	g.counted(v, m)
	return v.verdict, nil
}

// Judged is Check without a scan: the verdict of a manifest whose facts are known, for
// requests that must not start one (a blob's owners). known is false for a digest
// never scanned, or whose scan has not finished or failed.
func (g *Gate) Judged(ctx context.Context, m Manifest) (Verdict, bool) { return g.judged(ctx, m, 0) }

func (g *Gate) judged(ctx context.Context, m Manifest, depth int) (Verdict, bool) {
	if m.Descriptor.MediaType.IsIndex() {
		return Verdict{Allowed: true, Rule: "index"}, true
	}
	dgst := digest.Digest(m.Descriptor.Digest.String())
	pol, now := g.policy.Load(), g.now()
	if v, ok := g.memo.get(dgst, m.Repository, m.Tag, pol, now); ok {
		return v.verdict, true
	}
	f, err := g.load(dgst)
	if err != nil || !f.Final() {
		return Verdict{}, false
	}
	v := g.verdictOf(g.judgeFacts(ctx, f, m.Repository, m.Tag, pol, now, depth), m)
	if f.State == stateScanned {
		g.memo.put(dgst, m.Repository, m.Tag, pol, v)
	}
	return v.verdict, true
}

// scanShared waits for the one scan of dgst (starting it if none runs), up to scan.wait;
// prev is the digest's facts, if any, that the scan is to replace.
func (g *Gate) scanShared(ctx context.Context, m Manifest, dgst digest.Digest, prev *Facts) (*Facts, error) {
	ch := g.sf.DoChan("scan\x00"+dgst.String(), func() (any, error) {
		bctx, done := g.life.Background(ctx)
		defer done()
		return g.scanOnce(bctx, m.Repository, dgst, string(m.Descriptor.MediaType), prev)
	})
	timer := time.NewTimer(g.cfg.Wait)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Facts), nil
	case <-timer.C:
		return nil, &httpx.Error{Status: 503, Code: "TOOMANYREQUESTS", RetryAfter: 30,
			Message: fmt.Sprintf("%s@%s is being scanned (%d scans queued); retry shortly, the scan goes on", m.Repository, dgst, g.queued.Load())}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func decodeFacts(b []byte) (*Facts, error) {
	var f Facts
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	// Records of the first version held a verdict: their facts are what was scanned.
	if f.State == stateAllowed || f.State == stateDenied {
		f.State = stateScanned
		if f.Input == nil {
			f.State = stateArtifact
		}
	}
	if f.Source == "" {
		f.Source = f.LegacyRepository
	}
	f.LegacyRepository = ""
	if f.Input != nil {
		f.Input.Repository, f.Input.Tag = "", ""
	}
	return &f, nil
}

// Facts returns the stored facts of a digest, or storage.ErrNotFound.
func (g *Gate) Facts(dgst digest.Digest) (*Facts, error) { return g.load(dgst) }

func (g *Gate) load(dgst digest.Digest) (*Facts, error) {
	b, err := g.store.Verdict(dgst)
	if err != nil {
		return nil, err
	}
	return decodeFacts(b)
}

// save stores facts (and the report, when there is one) and forgets judgements made
// from the digest's previous facts.
func (g *Gate) save(f *Facts, report []byte) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	d := digest.Digest(f.Digest)
	defer g.memo.forget(d)
	if report != nil {
		err = g.store.PutVerdictAndReport(d, b, report)
	} else {
		err = g.store.PutVerdict(d, b)
	}
	if err == nil {
		g.announce(d)
	}
	return err
}

// scanFacts ingests and scans one manifest, fetched through repository source, and
// stores its facts.
func (g *Gate) scanFacts(ctx context.Context, source string, dgst digest.Digest, mediaType string) (*Facts, error) {
	f := &Facts{State: statePending, Digest: dgst.String(), Source: source, MediaType: mediaType, StartedAt: time.Now().UTC()}
	// "pending" lets a restart rescan what a crash interrupted. Losing it costs nothing
	// (a digest without facts is scanned on its next pull), so its write overlaps the
	// ingest instead of delaying it; the final facts are written after it.
	pending := *f
	pendingSaved := make(chan error, 1)
	go func() { pendingSaved <- g.save(&pending, nil) }()
	defer func() { <-pendingSaved }()
	g.queued.Add(1)
	select {
	case g.slots <- struct{}{}:
		g.queued.Add(-1)
	case <-ctx.Done():
		g.queued.Add(-1)
		return nil, ctx.Err()
	}
	g.running.Add(1)
	defer func() { g.running.Add(-1); <-g.slots }()

	sctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res, c, err := g.scanOne(sctx, source, dgst)
	f.ScannedAt, f.Kind, f.ArtifactType = time.Now().UTC(), c.kind, c.artifactType
	if c.subject != "" {
		f.Subject = c.subject.String()
	}
	if err := <-pendingSaved; err != nil {
		g.log.Warn("could not record a pending scan", "digest", dgst, "err", err)
	}
	pendingSaved <- nil // for the deferred receive
	if ctx.Err() != nil {
		// The server is closing: leave "pending" for the next start, write nothing.
		return nil, fmt.Errorf("scan of %s stopped: %w", dgst, ctx.Err())
	}
	log := g.log.With("repository", source, "digest", dgst, "duration", time.Since(start).Round(time.Millisecond))
	g.metrics.scanDuration.Observe(time.Since(start).Seconds())
	switch {
	case err == nil && res == nil:
		f.State = stateArtifact
		log.Info("scan skipped: not a container image", "kind", c.kind, "subject", f.Subject)
		g.metrics.scans.WithLabelValues("artifact").Inc()
		return f, g.save(f, nil)
	case errors.As(err, new(*limitError)):
		var le *limitError
		errors.As(err, &le)
		f.State, f.Limit, f.Error = stateRefused, le.key, le.reason
		log.Warn("image refused", "limit", le.key, "reason", le.reason)
		g.metrics.scans.WithLabelValues(stateRefused).Inc()
		return f, g.save(f, nil)
	case err != nil:
		if errors.Is(sctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("scan timed out after %s: %w", g.cfg.Timeout, err)
		}
		f.State, f.Error = stateError, err.Error()
		log.Error("scan failed", "err", err, "on_scan_error", g.cfg.OnScanError)
		g.metrics.scans.WithLabelValues(stateError).Inc()
		return f, g.save(f, nil)
	}
	f.State = stateScanned
	f.Input = &policy.Input{Digest: dgst.String(), OS: res.OS, EOSL: res.EOSL, Vulnerabilities: res.Vulnerabilities,
		User: res.User, Created: res.Created, OSPackages: res.OSPackages, Executables: res.Executables, UnanalysedJARs: res.UnanalysedJARs}
	f.DBVersion, f.ScanKey = res.DBVersion, res.Key
	if g.lookupSignatures() {
		f.Signatures = g.findSignatures(ctx, source, dgst)
	}
	log.Info("scan", "os", res.OS, "vulnerabilities", len(res.Vulnerabilities))
	g.metrics.scans.WithLabelValues(stateScanned).Inc()
	return f, g.save(f, res.Report)
}

// scanOne ingests every blob of the manifest into the store and scans the stored image.
// A manifest recognised as an artifact (signature, attestation, SBOM) returns no result
// and no error; kind says what it was taken for.
func (g *Gate) scanOne(ctx context.Context, source string, dgst digest.Digest) (res *ScanResult, c classification, err error) {
	g.scans.Add(1)
	start := time.Now()
	mrec, raw, err := g.store.Manifest(source, dgst)
	if err != nil {
		return nil, c, fmt.Errorf("manifest not in the store: %w", err)
	}
	c = classify(raw, g.limits.Layers)
	switch c.what {
	case classArtifact:
		return nil, c, nil
	case classRefused:
		return nil, c, &limitError{key: "limits.layers", reason: c.kind}
	case classInvalid:
		return nil, c, fmt.Errorf("cannot scan %s: %s", dgst, c.kind)
	}
	blobs := c.blobs
	// A collection does not delete what this scan reads, nor the manifest it judges.
	defer g.leases.Hold(dgst)()
	for _, b := range blobs {
		defer g.leases.Hold(b)()
	}
	// Every blob is fetched at once and the scan starts as soon as the config is in: a
	// layer is analysed as it downloads (its stream), or from the store once its fetch is
	// done; a cached layer is not waited for. The scanner keeps an analysis only once its
	// layer is verified, and the facts wait for every blob.
	fetches := newFetchSet(ctx, blobs, g.spillDir, func(ctx context.Context, d digest.Digest, tap func([]byte) bool) error {
		return g.fetch.EnsureBlob(ctx, source, d, tap)
	})
	defer fetches.close() // nothing of this scan runs on after it returned
	if err := fetches.wait(ctx, blobs[0]); err != nil {
		return nil, c, err
	}
	core, img, err := storedImage(ctx, g.store, mrec.MediaType, raw, g.limits, fetches)
	if err != nil {
		return nil, c, err
	}
	res, err = g.scanner.Scan(ctx, img, source+"@"+dgst.String())
	if le := core.refused(); le != nil {
		// Whatever the scanner made of the failed read (an error, or findings from the
		// part it read), an image over a limit is refused.
		return nil, c, le
	}
	if ferr := fetches.all(ctx); ferr != nil {
		return nil, c, ferr
	}
	g.log.Debug("scan timings", "repository", source, "digest", dgst, "total", time.Since(start).Round(time.Millisecond))
	return res, c, err
}

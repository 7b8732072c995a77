package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
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

// Verdict states.
const (
	statePending = "pending" // a scan started and has not finished
	stateAllowed = "allowed"
	stateDenied  = "denied"
	stateError   = "error" // the scan failed; not final, the next pull scans again
)

// VerdictRecord is what the gate keeps in bbolt per manifest digest: enough to explain
// the verdict and to recompute it under another policy without scanning again.
type VerdictRecord struct {
	State      string         `json:"state"`
	Digest     string         `json:"digest"`
	Repository string         `json:"repository"`
	Tag        string         `json:"tag,omitempty"`
	MediaType  string         `json:"mediaType"`
	StartedAt  time.Time      `json:"startedAt"`
	ScannedAt  time.Time      `json:"scannedAt,omitzero"`
	DBVersion  string         `json:"dbVersion,omitempty"`
	PolicyHash string         `json:"policyHash,omitempty"`
	Verdict    policy.Verdict `json:"verdict"`
	Input      *policy.Input  `json:"input,omitempty"`
	Error      string         `json:"error,omitempty"`
	// ScanKey finds the stored analysis again (see Redetector).
	ScanKey json.RawMessage `json:"scanKey,omitempty"`
}

func (r *VerdictRecord) final() bool { return r.State == stateAllowed || r.State == stateDenied }

// ScanConfig controls the scanning gate.
type ScanConfig struct {
	// Workers is how many scans run at once (default: number of CPUs); more wait in a queue.
	Workers int `yaml:"workers"`
	// Wait is how long a pull waits for its scan before getting 503 with Retry-After; the
	// scan goes on.
	Wait time.Duration `yaml:"wait"`
	// Timeout bounds one scan; past it the image is denied (fail closed).
	Timeout time.Duration `yaml:"timeout"`
	// OnScanError is "deny" (default: fail closed) or "allow" (explicit, logged opt-in).
	OnScanError string `yaml:"on_scan_error"`
}

// scanGate is the gate that scans every new image manifest before it is served.
type scanGate struct {
	s       *Server
	scanner Scanner
	policy  atomic.Pointer[policy.Set]
	now     func() time.Time
	slots   chan struct{}
	scans   atomic.Int64
	// auditDenials counts images served that an audit-mode policy would have denied.
	auditDenials atomic.Int64
	queued       atomic.Int64
	running      atomic.Int64
}

// WithScanner puts a scanning gate behind the allowlist: every image manifest is
// ingested whole, scanned and judged by pol before it is served.
func WithScanner(sc Scanner, pol *policy.Set) Option {
	return func(s *Server) {
		g := &scanGate{s: s, scanner: sc, now: time.Now}
		g.policy.Store(pol)
		s.scan = g
	}
}

// AuditDenials is how many pulls an audit-mode policy would have denied.
func (s *Server) AuditDenials() int64 {
	if s.scan == nil {
		return 0
	}
	return s.scan.auditDenials.Load()
}

// Scans is how many scans the gate has run (tests, metrics).
func (s *Server) Scans() int64 {
	if s.scan == nil {
		return 0
	}
	return s.scan.scans.Load()
}

func (g *scanGate) start(ctx context.Context) {
	g.slots = make(chan struct{}, g.s.cfg.Scan.Workers)
	// Scans a crash or restart interrupted are done again now, never served as "pending".
	var pending []VerdictRecord
	_ = g.s.store.Verdicts(func(_ digest.Digest, b []byte) error {
		var rec VerdictRecord
		if json.Unmarshal(b, &rec) == nil && rec.State == statePending {
			pending = append(pending, rec)
		}
		return nil
	})
	for _, rec := range pending {
		g.s.log.Info("rescanning an image whose scan did not finish", "repository", rec.Repository, "digest", rec.Digest)
		m := Manifest{Repository: rec.Repository, Tag: rec.Tag, Descriptor: v1.Descriptor{MediaType: types.MediaType(rec.MediaType), Digest: toHash(digest.Digest(rec.Digest))}}
		// Through the same singleflight as pulls: a pull arriving meanwhile joins this scan.
		g.s.sf.DoChan("scan\x00"+rec.Digest, func() (any, error) { return g.judge(ctx, m) })
	}
}

// Check implements Gate: a known digest is answered from its stored verdict; a new one
// is scanned (one scan however many pulls wait for it) and judged.
func (g *scanGate) Check(ctx context.Context, m Manifest) (Verdict, error) {
	if isIndex(string(m.Descriptor.MediaType)) {
		return Verdict{Allowed: true, Rule: "index"}, nil // each platform manifest is judged on its own
	}
	dgst := digest.Digest(m.Descriptor.Digest.String())
	if rec, err := g.load(dgst); err == nil && rec.final() {
		return g.verdictOf(g.current(rec)), nil
	}
	ch := g.s.sf.DoChan("scan\x00"+dgst.String(), func() (any, error) {
		return g.judge(context.WithoutCancel(ctx), m)
	})
	timer := time.NewTimer(g.s.cfg.Scan.Wait)
	defer timer.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return Verdict{}, res.Err
		}
		return g.verdictOf(res.Val.(*VerdictRecord)), nil
	case <-timer.C:
		return Verdict{}, &regError{Status: 503, Code: "TOOMANYREQUESTS", RetryAfter: 30,
			Message: fmt.Sprintf("%s@%s is being scanned (%d scans queued); retry shortly, the scan goes on", m.Repository, dgst, g.queued.Load())}
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
}

func (g *scanGate) load(dgst digest.Digest) (*VerdictRecord, error) {
	b, err := g.s.store.Verdict(dgst)
	if err != nil {
		return nil, err
	}
	var rec VerdictRecord
	return &rec, json.Unmarshal(b, &rec)
}

func (g *scanGate) save(rec *VerdictRecord, report []byte) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if report != nil {
		return g.s.store.PutVerdictAndReport(digest.Digest(rec.Digest), b, report)
	}
	return g.s.store.PutVerdict(digest.Digest(rec.Digest), b)
}

// judge ingests, scans and judges one manifest and stores the verdict.
func (g *scanGate) judge(ctx context.Context, m Manifest) (*VerdictRecord, error) {
	dgst := digest.Digest(m.Descriptor.Digest.String())
	rec := &VerdictRecord{State: statePending, Digest: dgst.String(), Repository: m.Repository, Tag: m.Tag,
		MediaType: string(m.Descriptor.MediaType), StartedAt: time.Now().UTC()}
	// "pending" lets a restart rescan what a crash interrupted. Losing it costs nothing
	// (a digest without a verdict is scanned on its next pull), so its write overlaps
	// the ingest instead of delaying it; the final verdict is written after it.
	pending := *rec
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

	sctx, cancel := context.WithTimeout(ctx, g.s.cfg.Scan.Timeout)
	defer cancel()
	start := time.Now()
	res, artifact, err := g.scanOne(sctx, m, dgst)
	rec.ScannedAt = time.Now().UTC()
	if err := <-pendingSaved; err != nil {
		g.s.log.Warn("could not record a pending scan", "digest", dgst, "err", err)
	}
	pendingSaved <- nil // for the deferred receive
	log := g.s.log.With("repository", m.Repository, "digest", dgst, "duration", time.Since(start).Round(time.Millisecond))
	g.s.metrics.scanDuration.Observe(time.Since(start).Seconds())
	defer func() { g.s.metrics.scans.WithLabelValues(scanResult(rec, artifact)).Inc() }()
	if artifact {
		rec.State, rec.Verdict = stateAllowed, policy.Verdict{Allowed: true, Policy: "artifact"}
		log.Info("scan skipped: not a container image")
		return rec, g.save(rec, nil)
	}
	if err != nil {
		if errors.Is(sctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("scan timed out after %s: %w", g.s.cfg.Scan.Timeout, err)
		}
		rec.State, rec.Error = stateError, err.Error()
		log.Error("scan failed", "err", err, "on_scan_error", g.s.cfg.Scan.OnScanError)
		return rec, g.save(rec, nil)
	}
	rec.Input = &policy.Input{Repository: m.Repository, Tag: m.Tag, Digest: dgst.String(), OS: res.OS, EOSL: res.EOSL,
		Vulnerabilities: res.Vulnerabilities, User: res.User, Created: res.Created, OSPackages: res.OSPackages, Executables: res.Executables}
	rec.DBVersion, rec.ScanKey = res.DBVersion, res.Key
	g.evaluate(rec, g.policy.Load())
	log.Info("scan", "verdict", rec.State, "os", res.OS, "vulnerabilities", len(res.Vulnerabilities), "counts", rec.Verdict.Counts, "rule", rec.Verdict.Rule())
	return rec, g.save(rec, res.Report)
}

// scanOne ingests every blob of the manifest into the store and scans the stored image.
// artifact is true for manifests that are not container images (signatures, SBOMs).
func (g *scanGate) scanOne(ctx context.Context, m Manifest, dgst digest.Digest) (res *ScanResult, artifact bool, err error) {
	g.scans.Add(1)
	start := time.Now()
	rt, err := g.s.routeFor(m.Repository)
	if err != nil {
		return nil, false, err
	}
	mrec, raw, err := g.s.store.Manifest(rt.key, dgst)
	if err != nil {
		return nil, false, fmt.Errorf("manifest not in the store: %w", err)
	}
	var mf manifestFields
	if err := json.Unmarshal(raw, &mf); err != nil || mf.Config == nil {
		return nil, false, fmt.Errorf("unreadable image manifest: %v", err)
	}
	if !isImageConfig(mf.Config.MediaType) {
		return nil, true, nil
	}
	blobs := []digest.Digest{mf.Config.Digest}
	for _, l := range mf.Layers {
		blobs = append(blobs, l.Digest)
	}
	// Every blob is fetched at once and the scan starts as soon as the config is in: a
	// layer is analysed when its own fetch is done (a cached layer is not waited for), so
	// analysis overlaps the download of the rest. The verdict still waits for every blob.
	fetches := newFetchSet(ctx, blobs, func(ctx context.Context, d digest.Digest) error {
		return g.s.ensureBlob(ctx, rt, d)
	})
	if err := fetches.wait(ctx, mf.Config.Digest); err != nil {
		return nil, false, err
	}
	img, err := storedImage(ctx, g.s.store, mrec.MediaType, raw, fetches.wait)
	if err != nil {
		return nil, false, err
	}
	ref := m.Repository + "@" + dgst.String()
	if m.Tag != "" {
		ref = m.Repository + ":" + m.Tag
	}
	res, err = g.scanner.Scan(ctx, img, ref)
	if ferr := fetches.all(ctx); ferr != nil {
		return nil, false, ferr
	}
	g.s.log.Debug("scan timings", "repository", m.Repository, "digest", dgst, "total", time.Since(start).Round(time.Millisecond))
	return res, false, err
}

// fetchSet runs the fetches of an image's blobs concurrently and lets the scan wait for
// any one of them.
type fetchSet struct {
	done map[digest.Digest]chan struct{}
	errs map[digest.Digest]*error
}

func newFetchSet(ctx context.Context, blobs []digest.Digest, fetch func(context.Context, digest.Digest) error) *fetchSet {
	fs := &fetchSet{done: map[digest.Digest]chan struct{}{}, errs: map[digest.Digest]*error{}}
	sem := make(chan struct{}, 4)
	for _, b := range blobs {
		if _, dup := fs.done[b]; dup {
			continue
		}
		done, errp := make(chan struct{}), new(error)
		fs.done[b], fs.errs[b] = done, errp
		go func() {
			defer close(done)
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				*errp = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if err := fetch(ctx, b); err != nil {
				*errp = fmt.Errorf("ingest %s: %w", b, err)
			}
		}()
	}
	return fs
}

// wait blocks until blob d is in the store (or failed to get there).
func (fs *fetchSet) wait(ctx context.Context, d digest.Digest) error {
	done, ok := fs.done[d]
	if !ok {
		return nil // not one of this image's fetches: already in the store
	}
	select {
	case <-done:
		return *fs.errs[d]
	case <-ctx.Done():
		return ctx.Err()
	}
}

// all waits for every fetch and returns the first failure.
func (fs *fetchSet) all(ctx context.Context) error {
	for d := range fs.done {
		if err := fs.wait(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func scanResult(rec *VerdictRecord, artifact bool) string {
	if artifact {
		return "artifact"
	}
	return rec.State
}

func isImageConfig(mt string) bool {
	return mt == string(types.DockerConfigJSON) || mt == string(types.OCIConfigJSON)
}

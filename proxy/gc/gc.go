// Package gc bounds the store: it evicts the least recently pulled images (manifests,
// then the blobs no kept manifest references, with their verdicts and cached analysis)
// under storage.gc's size and age bounds, and buffers last-pull times so a warm pull
// writes nothing. It is off the pull path except for marking pulls.
//
// It never deletes a blob a request or a scan is using, nor an image pulled within the
// grace period, and never runs two collections at once.
//
// On a store replicas share (PostgreSQL), what "in use" means must hold across them: the
// leases and buffered pulls a collection can see are its own process's only. So every
// replica publishes its holds — the digests its requests and scans hold, and the images
// pulled within the grace period whose pull times it has not flushed yet — under its own
// holder name, every heartbeat (5 s) and within 100 ms of a digest becoming newly held;
// a set expires after three heartbeats. A collection is then two-phase: it chooses its
// candidates, waits until every other replica published twice since (the second set was
// taken after the candidates were, so it shows what that replica used then) or let its
// set expire, flushes its own pulls, reads last pulls and holds again, and removes only
// the candidates not used or held since. A blob no stored manifest references is kept
// while it is younger than the grace period by its stored modification time: another
// replica may be ingesting it, its manifest not stored yet. A dry run is the first phase.
//
// What remains open is the window one process has too (a pull between a collection's
// last read and its deletes), widened by the publish delay (~100 ms): such a pull finds
// content gone. A blob whose manifest is still stored is then a miss that proxy/mirror
// fetches from the upstream again; a manifest is fetched and scanned again; a client
// that got its manifest just before it went is answered BLOB_UNKNOWN for its blobs and
// its retry pulls the image anew. Expiry compares the replicas' wall clocks: they must
// agree to well within a set's life.
package gc

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
)

// CacheForgetter is a Scanner that drops the cached analysis of evicted images.
type CacheForgetter interface {
	Forget(ctx context.Context, gone, kept []json.RawMessage, layers []string) error
}

// Result says what a collection did (or would do, in a dry run).
type Result struct {
	DryRun       bool     `json:"dryRun"`
	SizeBefore   int64    `json:"sizeBefore"`
	SizeAfter    int64    `json:"sizeAfter"`
	BlobsBefore  int      `json:"blobsBefore"`
	Evicted      []string `json:"evicted"`
	DeletedBlobs int      `json:"deletedBlobs"`
}

// Pulls buffers last-pull times so a warm pull writes nothing; they are flushed to the
// store in one transaction, periodically and before every collection.
type Pulls struct {
	mu sync.Mutex
	m  map[string]time.Time
	// onNew, on a shared store, is told of a pull not buffered yet: the replica publishes
	// it among its holds (holds.go) until it is flushed. It must not block.
	onNew func()
}

// Mark records that repo's manifest d was pulled at t.
func (p *Pulls) Mark(repo string, d digest.Digest, t time.Time) {
	k := storage.PullKey(repo, d)
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]time.Time{}
	}
	_, seen := p.m[k]
	p.m[k] = t
	p.mu.Unlock()
	if !seen && p.onNew != nil {
		p.onNew()
	}
}

// Snapshot copies the buffered pulls (repo\x00digest → time).
func (p *Pulls) Snapshot() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out
}

func (p *Pulls) take() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.m
	p.m = nil
	return m
}

// restore puts pulls that could not be flushed back, unless pulled again since.
func (p *Pulls) restore(m map[string]time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]time.Time{}
	}
	for k, t := range m {
		if t.After(p.m[k]) {
			p.m[k] = t
		}
	}
}

// InUse says which blobs and manifests a request or a scan is using.
type InUse interface {
	Held(d digest.Digest) bool
	Holding() []digest.Digest
}

// Verdicts is what the gate keeps per digest: a collection finds the analysis key of
// each image and tells the gate which images went.
type Verdicts interface {
	ScanKey(d digest.Digest) json.RawMessage
	Forget(repo string, d digest.Digest)
}

// Lifetime is the server's: a collection stops when the server closes.
type Lifetime interface {
	Bound(ctx context.Context) (context.Context, func())
}

// Deps is what a Collector works with. Verdicts and Cache may be nil (no scanning gate).
type Deps struct {
	Store *storage.Store
	// Config is read at every collection, so a changed bound applies to the next one.
	Config   *config.GCConfig
	InUse    InUse
	Verdicts Verdicts
	Cache    CacheForgetter
	Life     Lifetime
	Log      *slog.Logger
	Now      func() time.Time
	// Shared says other replicas use the store: each publishes what it holds (Publish),
	// and a collection waits for them to and spares it.
	Shared bool
	// Heartbeat is how often Publish publishes on a shared store; 0: every 5 s.
	Heartbeat time.Duration
}

// Collector enforces storage.gc.
type Collector struct {
	Deps
	mu      sync.Mutex // one collection at a time
	pulls   Pulls
	flushMu sync.Mutex // a flush's pulls are in the buffer or in the store, never in neither
	holder  string     // this replica in the store's holds
	poke    chan struct{}
}

// New returns a collector; Run and FlushLoop (and on a shared store Publish) are its
// background loops.
func New(d Deps) *Collector {
	c := &Collector{Deps: d, holder: newHolder(), poke: make(chan struct{}, 1)}
	if d.Shared {
		c.pulls.onNew = c.NewlyHeld
	}
	return c
}

// Pulls is the buffer of last-pull times.
func (c *Collector) Pulls() *Pulls { return &c.pulls }

// FlushPulls writes buffered last-pull times to the store.
func (c *Collector) FlushPulls() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	m := c.pulls.take()
	if err := c.Store.MarkPulled(m); err != nil {
		c.pulls.restore(m)
		return err
	}
	return nil
}

// FlushLoop writes last-pull times every 30 s until ctx ends, then once more.
func (c *Collector) FlushLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = c.FlushPulls()
			return
		case <-t.C:
			if err := c.FlushPulls(); err != nil {
				c.Log.Warn("could not record last pulls", "err", err)
			}
		}
	}
}

// Collect enforces storage.gc: the least recently pulled images are removed (manifests,
// then blobs no kept manifest references) with their verdicts and cached analysis,
// until the store is under max_size and nothing is older than max_age. An index goes
// with its platform manifests (it owns no blobs itself). Blobs in use by
// a request and images pulled within the grace period are never removed. On a shared
// store a collection that is not a dry run is two-phase (see the package comment).
func (c *Collector) Collect(ctx context.Context, dryRun bool) (Result, error) {
	c.mu.Lock() // the loop and the API never collect at once
	defer c.mu.Unlock()
	ctx, done := c.Life.Bound(ctx)
	defer done()
	res := Result{DryRun: dryRun, Evicted: []string{}}
	cfg := *c.Config
	if err := c.FlushPulls(); err != nil {
		return res, err
	}
	images, err := c.Store.Images()
	if err != nil {
		return res, err
	}
	blobs, err := c.Store.Blobs(ctx)
	if err != nil {
		return res, err
	}
	size := map[digest.Digest]int64{}
	for _, b := range blobs {
		size[b.Digest] = b.Size
		res.SizeBefore += b.Size
	}
	res.BlobsBefore = len(blobs)
	held, others, err := c.holds()
	if err != nil {
		return res, err
	}
	now := c.Now()
	spare := func(img storage.Image) bool { return now.Sub(img.Used()) < cfg.Grace || held(img.Digest) }
	p := choose(cfg, images, size, res.SizeBefore, now, spare)
	first := p
	keepBlob := func(b storage.BlobInfo) bool { return held(b.Digest) }
	if c.Shared {
		// A blob no manifest references may be one another replica is ingesting, its
		// manifest not stored yet: young, it stays. The store's clock says how young.
		keepBlob = func(b storage.BlobInfo) bool {
			return held(b.Digest) || (first.orphan[b.Digest] && time.Since(b.Modified) < cfg.Grace)
		}
	}
	if c.Shared && !dryRun {
		// Phase two: once every replica published what it used when the candidates were
		// chosen, choose again from what is stored and held now, among the candidates only.
		if p, keepBlob, err = c.again(ctx, cfg, first, others, size, res.SizeBefore, keepBlob); err != nil {
			return res, err
		}
	}
	var gone, kept []json.RawMessage
	for i, img := range p.images {
		if !p.evicted[i] {
			if k := c.scanKey(img.Digest); k != nil {
				kept = append(kept, k)
			}
			continue
		}
		res.Evicted = append(res.Evicted, img.Repository+"@"+img.Digest.String())
		if dryRun {
			continue
		}
		if k := c.scanKey(img.Digest); k != nil {
			gone = append(gone, k)
		}
		if _, err := c.Store.DeleteManifest(img.Repository, img.Digest); err != nil {
			return res, err
		}
		if c.Verdicts != nil {
			c.Verdicts.Forget(img.Repository, img.Digest)
		}
	}
	var layers []string
	res.SizeAfter = res.SizeBefore
	for _, b := range blobs {
		if p.count[b.Digest] > 0 || keepBlob(b) {
			continue
		}
		res.DeletedBlobs++
		res.SizeAfter -= b.Size
		layers = append(layers, b.Digest.String())
		if dryRun {
			continue
		}
		if err := c.Store.DeleteBlob(ctx, b.Digest); err != nil {
			return res, err
		}
	}
	if !dryRun && c.Cache != nil {
		if err := c.Cache.Forget(ctx, gone, kept, layers); err != nil {
			c.Log.Warn("could not drop cached analysis of evicted images", "err", err)
		}
	}
	c.Log.Info("gc", "dry_run", dryRun, "evicted", len(res.Evicted), "deleted_blobs", res.DeletedBlobs,
		"size_before", res.SizeBefore, "size_after", res.SizeAfter)
	return res, nil
}

func (c *Collector) scanKey(d digest.Digest) json.RawMessage {
	if c.Verdicts == nil {
		return nil
	}
	return c.Verdicts.ScanKey(d)
}

// Run collects every storage.gc.interval until ctx ends (when a bound is set).
func (c *Collector) Run(ctx context.Context) {
	cfg := *c.Config
	if cfg.MaxSize == 0 && cfg.MaxAge == 0 {
		return
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.Collect(ctx, false); err != nil {
				c.Log.Error("gc failed", "err", err)
			}
		}
	}
}

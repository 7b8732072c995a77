// Package gc bounds the store: it evicts the least recently pulled images (manifests,
// then the blobs no kept manifest references, with their verdicts and cached analysis)
// under storage.gc's size and age bounds, and buffers last-pull times so a warm pull
// writes nothing. It is off the pull path except for marking pulls.
//
// It never deletes a blob a request or a scan is using, nor an image pulled within the
// grace period, and never runs two collections at once.
package gc

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/mirror"
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
}

// Mark records that repo's manifest d was pulled at t.
func (p *Pulls) Mark(repo string, d digest.Digest, t time.Time) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]time.Time{}
	}
	p.m[storage.PullKey(repo, d)] = t
	p.mu.Unlock()
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

// InUse says which blobs and manifests a request or a scan is using.
type InUse interface {
	Held(d digest.Digest) bool
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
}

// Collector enforces storage.gc.
type Collector struct {
	Deps
	mu    sync.Mutex // one collection at a time
	pulls Pulls
}

// New returns a collector; Run and FlushLoop are its background loops.
func New(d Deps) *Collector { return &Collector{Deps: d} }

// Pulls is the buffer of last-pull times.
func (c *Collector) Pulls() *Pulls { return &c.pulls }

// FlushPulls writes buffered last-pull times to the store.
func (c *Collector) FlushPulls() error { return c.Store.MarkPulled(c.pulls.take()) }

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
// a request and images pulled within the grace period are never removed.
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

	// What each image holds: its blobs, and for an index, its platform manifests (the
	// stored ones of the same repository), and how many stored indexes hold each of those.
	refs := make([][]digest.Digest, len(images))
	children := map[digest.Digest]bool{}
	at := make(map[string]int, len(images))
	for i, img := range images {
		at[storage.PullKey(img.Repository, img.Digest)] = i
	}
	kids := make([][]int, len(images))
	parents := make([]int, len(images))
	for i, img := range images {
		var m mirror.ManifestFields
		_ = json.Unmarshal(img.Raw, &m)
		if m.Config != nil {
			refs[i] = append(refs[i], m.Config.Digest)
		}
		for _, l := range m.Layers {
			refs[i] = append(refs[i], l.Digest)
		}
		for _, c := range m.Manifests {
			children[c.Digest] = true
			if j, ok := at[storage.PullKey(img.Repository, c.Digest)]; ok && j != i {
				kids[i] = append(kids[i], j)
				parents[j]++
			}
		}
	}
	count := map[digest.Digest]int{}
	for i := range images {
		for _, d := range refs[i] {
			count[d]++
		}
	}
	total := res.SizeBefore
	for d, n := range size { // blobs no manifest references are not worth keeping
		if count[d] == 0 {
			total -= n
		}
	}
	order := make([]int, len(images))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return images[a].Used().Compare(images[b].Used()) })
	now := c.Now()
	evicted := map[int]bool{}
	evict := func(i int) {
		evicted[i] = true
		for _, d := range refs[i] {
			if count[d]--; count[d] == 0 {
				total -= size[d]
			}
		}
	}
	for _, i := range order {
		img := images[i]
		if evicted[i] {
			continue // went with its index
		}
		tooOld := cfg.MaxAge > 0 && now.Sub(img.Used()) > cfg.MaxAge
		tooBig := cfg.MaxSize > 0 && total > int64(cfg.MaxSize)
		if !tooOld && !tooBig {
			continue
		}
		if now.Sub(img.Used()) < cfg.Grace || c.InUse.Held(img.Digest) {
			continue
		}
		if children[img.Digest] && !tooOld {
			continue // a platform manifest goes with its index (or by age)
		}
		evict(i)
		// An index owns no blobs: its platform manifests go with it (unless another
		// kept index holds them, or they are in use), or evicting it frees nothing.
		for _, j := range kids[i] {
			if parents[j]--; parents[j] > 0 || evicted[j] {
				continue
			}
			if now.Sub(images[j].Used()) < cfg.Grace || c.InUse.Held(images[j].Digest) {
				continue
			}
			evict(j)
		}
	}
	var gone, kept []json.RawMessage
	for i, img := range images {
		if !evicted[i] {
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
		if count[b.Digest] > 0 || c.InUse.Held(b.Digest) {
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

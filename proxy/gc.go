package proxy

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/storage"
)

// CacheForgetter is a Scanner that drops the cached analysis of evicted images.
type CacheForgetter interface {
	Forget(ctx context.Context, gone, kept []json.RawMessage, layers []string) error
}

// GCResult says what a collection did (or would do, in a dry run).
type GCResult struct {
	DryRun       bool     `json:"dryRun"`
	SizeBefore   int64    `json:"sizeBefore"`
	SizeAfter    int64    `json:"sizeAfter"`
	BlobsBefore  int      `json:"blobsBefore"`
	Evicted      []string `json:"evicted"`
	DeletedBlobs int      `json:"deletedBlobs"`
}

// pulls buffers last-pull times so a warm pull writes nothing; they are flushed to the
// store in one transaction, periodically and before every collection.
type pulls struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (p *pulls) mark(repo string, d digest.Digest, t time.Time) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]time.Time{}
	}
	p.m[storage.PullKey(repo, d)] = t
	p.mu.Unlock()
}

// snapshot copies the buffered pulls.
func (p *pulls) snapshot() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]time.Time, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out
}

func (p *pulls) take() map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.m
	p.m = nil
	return m
}

// FlushPulls writes buffered last-pull times to the store.
func (s *Server) FlushPulls() error { return s.store.MarkPulled(s.pulls.take()) }

func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = s.FlushPulls()
			return
		case <-t.C:
			if err := s.FlushPulls(); err != nil {
				s.log.Warn("could not record last pulls", "err", err)
			}
		}
	}
}

// GC enforces storage.gc: the least recently pulled images are removed (manifests,
// then blobs no kept manifest references) with their verdicts and cached analysis,
// until the store is under max_size and nothing is older than max_age. Blobs in use by
// a request and images pulled within the grace period are never removed.
func (s *Server) GC(ctx context.Context, dryRun bool) (GCResult, error) {
	s.gcMu.Lock() // the loop and the API never collect at once
	defer s.gcMu.Unlock()
	ctx, done := s.life.Bound(ctx)
	defer done()
	res := GCResult{DryRun: dryRun, Evicted: []string{}}
	cfg := s.cfg.Storage.GC
	if err := s.FlushPulls(); err != nil {
		return res, err
	}
	images, err := s.store.Images()
	if err != nil {
		return res, err
	}
	blobs, err := s.store.Blobs(ctx)
	if err != nil {
		return res, err
	}
	size := map[digest.Digest]int64{}
	for _, b := range blobs {
		size[b.Digest] = b.Size
		res.SizeBefore += b.Size
	}
	res.BlobsBefore = len(blobs)

	// What each image holds: its blobs, and for an index, its platform manifests.
	refs := make([][]digest.Digest, len(images))
	children := map[digest.Digest]bool{}
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
	now := s.now()
	evicted := map[int]bool{}
	for _, i := range order {
		img := images[i]
		tooOld := cfg.MaxAge > 0 && now.Sub(img.Used()) > cfg.MaxAge
		tooBig := cfg.MaxSize > 0 && total > int64(cfg.MaxSize)
		if !tooOld && !tooBig {
			continue
		}
		if now.Sub(img.Used()) < cfg.Grace || s.mirror.Held(img.Digest) {
			continue
		}
		if children[img.Digest] && !tooOld {
			continue // a platform manifest goes with its index (or by age)
		}
		evicted[i] = true
		for _, d := range refs[i] {
			if count[d]--; count[d] == 0 {
				total -= size[d]
			}
		}
	}
	var gone, kept []json.RawMessage
	for i, img := range images {
		if !evicted[i] {
			if k := s.scanKey(img.Digest); k != nil {
				kept = append(kept, k)
			}
			continue
		}
		res.Evicted = append(res.Evicted, img.Repository+"@"+img.Digest.String())
		if dryRun {
			continue
		}
		if k := s.scanKey(img.Digest); k != nil {
			gone = append(gone, k)
		}
		if _, err := s.store.DeleteManifest(img.Repository, img.Digest); err != nil {
			return res, err
		}
		if s.gate != nil {
			s.gate.Forget(img.Repository, img.Digest)
		}
	}
	var layers []string
	res.SizeAfter = res.SizeBefore
	for _, b := range blobs {
		if count[b.Digest] > 0 || s.mirror.Held(b.Digest) {
			continue
		}
		res.DeletedBlobs++
		res.SizeAfter -= b.Size
		layers = append(layers, b.Digest.String())
		if dryRun {
			continue
		}
		if err := s.store.DeleteBlob(ctx, b.Digest); err != nil {
			return res, err
		}
	}
	if !dryRun && s.gate != nil {
		if f, ok := s.gate.Scanner().(CacheForgetter); ok {
			if err := f.Forget(ctx, gone, kept, layers); err != nil {
				s.log.Warn("could not drop cached analysis of evicted images", "err", err)
			}
		}
	}
	s.log.Info("gc", "dry_run", dryRun, "evicted", len(res.Evicted), "deleted_blobs", res.DeletedBlobs,
		"size_before", res.SizeBefore, "size_after", res.SizeAfter)
	return res, nil
}

func (s *Server) scanKey(d digest.Digest) json.RawMessage {
	if s.gate == nil {
		return nil
	}
	rec, err := s.gate.Facts(d)
	if err != nil {
		return nil
	}
	return rec.ScanKey
}

func (s *Server) gcLoop(ctx context.Context) {
	cfg := s.cfg.Storage.GC
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
			if _, err := s.GC(ctx, false); err != nil {
				s.log.Error("gc failed", "err", err)
			}
		}
	}
}

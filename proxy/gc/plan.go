package gc

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/storage"
)

// plan is what one pass over the stored images decides: which go, and how many kept
// images still reference each blob.
type plan struct {
	images  []storage.Image
	evicted map[int]bool
	count   map[digest.Digest]int // references by kept images
	// orphan: referenced by no stored image at all before the evictions.
	orphan map[digest.Digest]bool
}

// choose picks the least recently used images to evict, under cfg's bounds, from images
// and the blobs they reference (sized by size, total of every stored blob); spare says
// which images must stay whatever the bounds. An index goes with its platform manifests
// (it owns no blobs itself).
func choose(cfg config.GCConfig, images []storage.Image, size map[digest.Digest]int64, total int64, now time.Time, spare func(storage.Image) bool) plan {
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
	p := plan{images: images, evicted: map[int]bool{}, count: map[digest.Digest]int{}, orphan: map[digest.Digest]bool{}}
	for i := range images {
		for _, d := range refs[i] {
			p.count[d]++
		}
	}
	for d, n := range size { // blobs no manifest references are not worth keeping
		if p.count[d] == 0 {
			p.orphan[d] = true
			total -= n
		}
	}
	order := make([]int, len(images))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return images[a].Used().Compare(images[b].Used()) })
	evict := func(i int) {
		p.evicted[i] = true
		for _, d := range refs[i] {
			if p.count[d]--; p.count[d] == 0 {
				total -= size[d]
			}
		}
	}
	for _, i := range order {
		img := images[i]
		if p.evicted[i] {
			continue // went with its index
		}
		tooOld := cfg.MaxAge > 0 && now.Sub(img.Used()) > cfg.MaxAge
		tooBig := cfg.MaxSize > 0 && total > int64(cfg.MaxSize)
		if !tooOld && !tooBig {
			continue
		}
		if spare(img) {
			continue
		}
		if children[img.Digest] && !tooOld {
			continue // a platform manifest goes with its index (or by age)
		}
		evict(i)
		// An index owns no blobs: its platform manifests go with it (unless another
		// kept index holds them, or they are in use), or evicting it frees nothing.
		for _, j := range kids[i] {
			if parents[j]--; parents[j] > 0 || p.evicted[j] {
				continue
			}
			if spare(images[j]) {
				continue
			}
			evict(j)
		}
	}
	return p
}

// gone lists the evicted images by PullKey.
func (p plan) gone() map[string]time.Time {
	out := make(map[string]time.Time, len(p.evicted))
	for i := range p.evicted {
		img := p.images[i]
		out[storage.PullKey(img.Repository, img.Digest)] = img.Used()
	}
	return out
}

package mirror

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// leases are blobs in use by a request (served or being ingested): never deleted.
type leases struct {
	mu sync.Mutex
	n  map[digest.Digest]int
	// onNew, when set (before any Hold), is told each time a digest becomes held: replicas
	// on a shared store publish their leases for the leader's collections (proxy/gc). It
	// must not block.
	onNew func()
}

// Hold keeps d from being collected until the returned func is called.
func (l *leases) Hold(d digest.Digest) func() {
	l.mu.Lock()
	if l.n == nil {
		l.n = map[digest.Digest]int{}
	}
	l.n[d]++
	first := l.n[d] == 1
	l.mu.Unlock()
	if first && l.onNew != nil {
		l.onNew()
	}
	return func() {
		l.mu.Lock()
		if l.n[d]--; l.n[d] <= 0 {
			delete(l.n, d)
		}
		l.mu.Unlock()
	}
}

// Held reports whether d is in use.
func (l *leases) Held(d digest.Digest) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[d] > 0
}

// Holding lists the digests in use.
func (l *leases) Holding() []digest.Digest {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]digest.Digest, 0, len(l.n))
	for d := range l.n {
		out = append(out, d)
	}
	return out
}

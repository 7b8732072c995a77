package mirror

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// leases are blobs in use by a request (served or being ingested): never deleted.
type leases struct {
	mu sync.Mutex
	n  map[digest.Digest]int
}

// Hold keeps d from being collected until the returned func is called.
func (l *leases) Hold(d digest.Digest) func() {
	l.mu.Lock()
	if l.n == nil {
		l.n = map[digest.Digest]int{}
	}
	l.n[d]++
	l.mu.Unlock()
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

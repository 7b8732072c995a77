package gate

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
)

// maxStreamed is the most bytes of a layer the ingest queues for a scan that has not read
// them yet. Past it the stream is dropped: the ingest never waits on a scan, and the scan
// reads the rest from the store once the layer is in.
const maxStreamed = 8 << 20

// layerStream hands a layer's bytes to the scan as the ingest writes them to the store,
// so analysis runs while the layer downloads. The bytes are not yet verified: the scanner
// keeps nothing it made of them until the layer's fetch is done and its digest checked
// (Verify), and the facts wait for every fetch.
type layerStream struct {
	mu      sync.Mutex
	cond    *sync.Cond
	chunks  [][]byte
	queued  int
	dropped bool
	done    bool
	err     error
	claimed bool
}

func newLayerStream() *layerStream {
	s := &layerStream{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// tap queues a copy of b; false drops the stream (too much queued).
func (s *layerStream) tap(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped || s.queued+len(b) > maxStreamed {
		s.dropped, s.chunks, s.queued = true, nil, 0
		s.cond.Broadcast()
		return false
	}
	s.chunks = append(s.chunks, bytes.Clone(b))
	s.queued += len(b)
	s.cond.Broadcast()
	return true
}

// finish records the end of the layer's fetch.
func (s *layerStream) finish(err error) {
	s.mu.Lock()
	s.done, s.err = true, err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// claim makes the stream the one reader's; false if it was claimed or dropped already.
func (s *layerStream) claim() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claimed || s.dropped {
		return false
	}
	s.claimed = true
	return true
}

// streamReader reads a layer from its stream while there is one, and from the store,
// at the same offset, once the stream was dropped or held none of the layer (another
// request fetched it).
type streamReader struct {
	ctx   context.Context
	s     *layerStream
	d     digest.Digest
	open  func(context.Context, digest.Digest) (io.ReadSeekCloser, error)
	off   int64
	store io.ReadSeekCloser
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.store != nil {
		n, err := r.store.Read(p)
		r.off += int64(n)
		return n, err
	}
	s := r.s
	s.mu.Lock()
	for len(s.chunks) == 0 && !s.done && !s.dropped {
		s.cond.Wait()
	}
	if len(s.chunks) > 0 {
		n := copy(p, s.chunks[0])
		if n == len(s.chunks[0]) {
			s.chunks = s.chunks[1:]
		} else {
			s.chunks[0] = s.chunks[0][n:]
		}
		s.queued -= n
		s.mu.Unlock()
		r.off += int64(n)
		return n, nil
	}
	// Dropped, or done with nothing left: the rest is read from the store.
	for !s.done {
		s.cond.Wait()
	}
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	rc, err := r.open(r.ctx, r.d)
	if err != nil {
		return 0, err
	}
	if _, err := rc.Seek(r.off, io.SeekStart); err != nil {
		rc.Close()
		return 0, err
	}
	r.store = rc
	return r.Read(p)
}

func (r *streamReader) Close() error {
	if r.store != nil {
		return r.store.Close()
	}
	// A reader that leaves early lets the stream go: the ingest queues no more for it.
	r.s.mu.Lock()
	r.s.dropped, r.s.chunks, r.s.queued = true, nil, 0
	r.s.mu.Unlock()
	return nil
}

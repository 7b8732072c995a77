package gate

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
)

// A layer's bytes reach the scan as the ingest writes them to the store. The first
// maxStreamed bytes the scan has not read yet are queued in memory; past that, what
// follows is appended to a spill file (unlinked, in the gate's spill dir) that the scan reads on
// from, so a download faster than the analysis never leaves the scan waiting for the
// whole layer to be stored. Past maxSpilled on disk (or if the spill file cannot be
// written) the stream is dropped and the scan reads the rest from the store once the
// layer is in. Either way the ingest never waits on a scan.
const maxStreamed = 8 << 20

var maxSpilled int64 = 2 << 30 // a var for the tests

// layerStream hands a layer's bytes to the scan as the ingest writes them to the store,
// so analysis runs while the layer downloads. The bytes are not yet verified: the scanner
// keeps nothing it made of them until the layer's fetch is done and its digest checked
// (Verify), and the facts wait for every fetch.
type layerStream struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	queued int
	// spill holds what came after the memory queue was full: spilled bytes written, of
	// which the reader has read spillRead. Once there is a spill file every later byte
	// goes there, so the memory queue comes first.
	spill     *os.File
	spilled   int64
	spillRead int64
	dropped   bool
	done      bool
	err       error
	claimed   bool
	dir       string // of the spill file; "": the temp dir
}

func newLayerStream(dir string) *layerStream {
	s := &layerStream{dir: dir}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// tap queues a copy of b (in memory, or in the spill file); false drops the stream.
// Only the ingest calls it, one call at a time.
func (s *layerStream) tap(b []byte) bool {
	s.mu.Lock()
	if s.dropped {
		s.mu.Unlock()
		return false
	}
	if s.spill == nil && s.queued+len(b) <= maxStreamed {
		s.chunks = append(s.chunks, bytes.Clone(b))
		s.queued += len(b)
		s.cond.Broadcast()
		s.mu.Unlock()
		return true
	}
	if s.spilled+int64(len(b)) > maxSpilled {
		s.dropLocked()
		s.mu.Unlock()
		return false
	}
	if s.spill == nil {
		f, err := os.CreateTemp(s.dir, "layer-*")
		if err != nil {
			s.dropLocked()
			s.mu.Unlock()
			return false
		}
		_ = os.Remove(f.Name()) // gone with its last descriptor, whatever happens
		s.spill = f
	}
	f := s.spill
	s.mu.Unlock()
	// Written without the lock: the reader reads only what spilled says is there.
	n, err := f.Write(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || n != len(b) {
		s.dropLocked()
		return false
	}
	s.spilled += int64(n)
	s.cond.Broadcast()
	return true
}

// dropLocked stops streaming: the reader goes on from the store, at its offset, once the
// fetch is done. The spill file stays open for a read in progress until release.
func (s *layerStream) dropLocked() {
	s.dropped, s.chunks, s.queued = true, nil, 0
	s.cond.Broadcast()
}

// finish records the end of the layer's fetch.
func (s *layerStream) finish(err error) {
	s.mu.Lock()
	s.done, s.err = true, err
	s.cond.Broadcast()
	s.mu.Unlock()
}

// release drops the stream and closes its spill file: the reader is done with it (or
// the scan is over).
func (s *layerStream) release() {
	s.mu.Lock()
	s.dropLocked()
	f := s.spill
	s.spill = nil
	s.mu.Unlock()
	if f != nil {
		_ = f.Close()
	}
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
	if len(p) == 0 {
		return 0, nil
	}
	s := r.s
	s.mu.Lock()
	for len(s.chunks) == 0 && (s.spill == nil || s.spillRead == s.spilled) && !s.done && !s.dropped {
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
	if !s.dropped && s.spill != nil && s.spillRead < s.spilled {
		f, at := s.spill, s.spillRead
		p = p[:min(int64(len(p)), s.spilled-at)]
		s.mu.Unlock()
		// What spilled counts is written; the file stays open until this reader
		// closes (or the scan ends, when nothing reads any more).
		n, err := f.ReadAt(p, at)
		if n == len(p) {
			err = nil // ReadAt may say EOF with the last byte written so far
		}
		s.mu.Lock()
		s.spillRead += int64(n)
		s.mu.Unlock()
		r.off += int64(n)
		return n, err
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
	// A reader that leaves lets the stream go: the ingest queues no more for it.
	r.s.release()
	if r.store != nil {
		return r.store.Close()
	}
	return nil
}

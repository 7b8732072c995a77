package scanner

import (
	"bufio"
	"errors"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// teeImage is the image Trivy analyses: its layers' decompressed streams are also read,
// as Trivy reads them, for the entries the scanner reports itself (bin directories, JAR
// files, whiteouts). A layer whose entries are cached is not teed. Trivy reads a layer's
// tar to its end marker, so the tee sees every header; a layer Trivy does not read (its
// analysis is cached) or stops reading early has no teed entries, and walkLayers reads
// it itself.
type teeImage struct {
	v1.Image
	s *Scanner

	mu    sync.Mutex
	got   map[v1.Hash]*layerEntries // by layer digest
	fresh map[v1.Hash]bool          // entries teed, not yet cached
	wg    sync.WaitGroup
}

func (s *Scanner) tee(img v1.Image) *teeImage {
	return &teeImage{Image: img, s: s, got: map[v1.Hash]*layerEntries{}, fresh: map[v1.Hash]bool{}}
}

// commit caches the teed entries; the scan calls it once the layers are verified.
func (t *teeImage) commit() {
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	for d := range t.fresh {
		_ = t.s.cacheEntries(d, t.got[d]) // uncached, the next scan of the layer walks it again
	}
	t.fresh = map[v1.Hash]bool{}
}

// close waits for the tees still reading (a stream Trivy did not close).
func (t *teeImage) close() { t.wg.Wait() }

// entries are the entries teed from layer l, or nil.
func (t *teeImage) entries(l v1.Layer) *layerEntries {
	d, err := l.Digest()
	if err != nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.got[d]
}

func (t *teeImage) wrap(l v1.Layer, err error) (v1.Layer, error) {
	if err != nil {
		return nil, err
	}
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	if e := t.s.cachedEntries(d); e != nil {
		t.mu.Lock()
		t.got[d] = e
		t.mu.Unlock()
		return l, nil
	}
	return &teeLayer{Layer: l, t: t, d: d}, nil
}

func (t *teeImage) Layers() ([]v1.Layer, error) {
	ls, err := t.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		if out[i], err = t.wrap(l, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *teeImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	return t.wrap(t.Image.LayerByDigest(h))
}
func (t *teeImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	return t.wrap(t.Image.LayerByDiffID(h))
}

// teeLayer is a layer whose decompressed stream is walked for entries as it is read.
// (A pointer to a struct with no UncompressedLayer field: Trivy takes it for the
// compressed layer it is.)
type teeLayer struct {
	v1.Layer
	t *teeImage
	d v1.Hash
}

var errTeeClosed = errors.New("layer stream closed")

func (l *teeLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	l.t.wg.Add(1)
	go func() {
		defer l.t.wg.Done()
		var e layerEntries
		err := walkBinDirs(pr, &e)
		// Whatever follows the end marker (padding) is read and dropped, so a write to
		// the tee never waits on a walk that is over.
		_, _ = io.Copy(io.Discard, pr)
		if err != nil {
			return // an incomplete stream: walkLayers reads the layer itself
		}
		l.t.mu.Lock()
		if _, dup := l.t.got[l.d]; !dup {
			l.t.got[l.d], l.t.fresh[l.d] = &e, true
		}
		l.t.mu.Unlock()
	}()
	// Trivy's tar reader skips file contents 8 KiB at a time: buffered, the tee hands the
	// walk large chunks instead of one per skip.
	tr := &teeReader{rc: rc, pw: pw}
	return struct {
		io.Reader
		io.Closer
	}{bufio.NewReaderSize(tr, 256<<10), tr}, nil
}

type teeReader struct {
	rc io.ReadCloser
	pw *io.PipeWriter
}

func (r *teeReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if n > 0 {
		_, _ = r.pw.Write(p[:n]) // the walk reads all there is until the pipe closes
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			r.pw.Close()
		} else {
			r.pw.CloseWithError(err)
		}
	}
	return n, err
}

// Close ends the tee: a walk that saw its end marker keeps its entries, one that did
// not fails and is discarded.
func (r *teeReader) Close() error {
	r.pw.CloseWithError(errTeeClosed)
	return r.rc.Close()
}

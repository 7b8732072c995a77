package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// StatBlob returns the size of a stored blob, or ErrNotFound.
func (s *Store) StatBlob(ctx context.Context, dgst digest.Digest) (int64, error) {
	desc, err := s.blobs.Stat(ctx, dgst)
	if err != nil {
		return 0, mapErr(err)
	}
	return desc.Size, nil
}

// OpenBlob opens a stored blob for reading.
func (s *Store) OpenBlob(ctx context.Context, dgst digest.Digest) (io.ReadSeekCloser, error) {
	s.reads.Add(1)
	return s.openBlob(ctx, dgst)
}

// openBlob reads a blob straight from the driver. distribution's own reader puts a 4 MiB
// buffer in front of every open blob: 50 clients pulling at once held 200 MiB of them.
func (s *Store) openBlob(ctx context.Context, dgst digest.Digest) (*driverBlob, error) {
	desc, err := s.blobs.Stat(ctx, dgst)
	if err != nil {
		return nil, mapErr(err)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, err
	}
	p := path.Join("/docker/registry/v2/blobs", desc.Digest.Algorithm().String(), desc.Digest.Encoded()[:2], desc.Digest.Encoded(), "data")
	return &driverBlob{ctx: ctx, driver: s.driver, path: p, size: desc.Size}, nil
}

// ServeBlob writes a stored blob to w, honouring Range (at most MaxRanges ranges) and
// conditional requests, from the store itself (never a redirect to the storage
// backend: nothing reaches a client around the proxy). The caller sets any headers it
// wants to win (Content-Type, Docker-Content-Digest) first.
func (s *Store) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	if err := CheckRanges(r.Header.Get("Range")); err != nil {
		return err
	}
	b, err := s.openBlob(ctx, dgst)
	if err != nil {
		return err
	}
	defer b.Close()
	h := w.Header()
	h.Set("ETag", `"`+dgst.String()+`"`) // If-None-Match is handled by ServeContent
	h.Set("Cache-Control", "max-age=31536000")
	if h.Get("Docker-Content-Digest") == "" {
		h.Set("Docker-Content-Digest", dgst.String())
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	var content io.ReadSeeker = b
	// The filesystem driver opens the blob's file: served as the file itself, the kernel
	// copies it to the socket (sendfile), Ranges included.
	if rc, err := b.driver.Reader(ctx, b.path, 0); err == nil {
		if f, ok := rc.(*os.File); ok {
			b.rc, content = f, f
		} else {
			b.rc = rc
		}
	}
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// driverBlob is a stored blob read from the storage driver, opened at the offset of the
// first read after a seek.
type driverBlob struct {
	ctx    context.Context
	driver storagedriver.StorageDriver
	path   string
	size   int64
	off    int64
	rc     io.ReadCloser
}

func (b *driverBlob) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	if b.rc == nil {
		rc, err := b.driver.Reader(b.ctx, b.path, b.off)
		if err != nil {
			return 0, mapErr(err)
		}
		b.rc = rc
	}
	if rest := b.size - b.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := b.rc.Read(p)
	b.off += int64(n)
	if errors.Is(err, io.EOF) && b.off < b.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *driverBlob) Seek(offset int64, whence int) (int64, error) {
	off := offset
	switch whence {
	case io.SeekCurrent:
		off += b.off
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 {
		return b.off, fmt.Errorf("storage: seek to %d", off)
	}
	if off != b.off && b.rc != nil {
		b.rc.Close()
		b.rc = nil
	}
	b.off = off
	return off, nil
}

func (b *driverBlob) Close() error {
	if b.rc != nil {
		return b.rc.Close()
	}
	return nil
}

// BlobWriter receives a blob. Nothing written is visible until Commit verified it.
type BlobWriter struct {
	s  *Store
	bw distribution.BlobWriter
	n  int64 // bytes written: the driver's count may lag behind what it buffers (S3)
}

// CreateBlob starts writing a new blob.
func (s *Store) CreateBlob(ctx context.Context) (*BlobWriter, error) {
	bw, err := s.blobs.Create(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage: create blob: %w", err)
	}
	return &BlobWriter{s: s, bw: bw}, nil
}

// Write appends to the blob being written.
func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.bw.Write(p)
	w.n += int64(n)
	return n, err
}

// Written is the number of bytes written so far.
func (w *BlobWriter) Written() int64 { return w.n }

// Commit verifies the written bytes against dgst (and size, when >= 0) and makes the
// blob visible atomically. On a mismatch nothing is stored and ErrDigestMismatch is
// returned.
func (w *BlobWriter) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	// distribution's Commit takes the size from what was written, whatever it is told:
	// the size is checked here.
	if size >= 0 && size != w.n {
		_ = w.bw.Cancel(ctx)
		return fmt.Errorf("%w: %s: %d bytes written, %d expected", ErrDigestMismatch, dgst, w.n, size)
	}
	_, err := w.bw.Commit(ctx, ocispec.Descriptor{Digest: dgst, Size: size, MediaType: "application/octet-stream"})
	if err != nil {
		// A failed commit leaves its upload behind; remove it so it is never mistaken for content.
		_ = w.s.driver.Delete(ctx, path.Join("/docker/registry/v2/repositories", contentRepo, "_uploads", w.bw.ID()))
		var inv distribution.ErrBlobInvalidDigest
		if errors.As(err, &inv) || errors.Is(err, distribution.ErrBlobInvalidLength) {
			return fmt.Errorf("%w: %s: %v", ErrDigestMismatch, dgst, err)
		}
		return fmt.Errorf("storage: commit %s: %w", dgst, err)
	}
	return nil
}

// Cancel abandons the blob and removes what was written.
func (w *BlobWriter) Cancel(ctx context.Context) error { return w.bw.Cancel(ctx) }

// ReadBlob reads a whole small blob (a manifest or config) into memory.
func (s *Store) ReadBlob(ctx context.Context, dgst digest.Digest) ([]byte, error) {
	rc, err := s.OpenBlob(ctx, dgst)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, distribution.ErrBlobUnknown) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	var pnf storagedriver.PathNotFoundError
	if errors.As(err, &pnf) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// BlobInfo is a stored blob, its size and when it was stored.
type BlobInfo struct {
	Digest digest.Digest
	Size   int64
	// Modified is when the blob was written, by the storage backend's clock (the file's
	// modification time, the S3 object's Last-Modified).
	Modified time.Time
}

// Blobs lists every blob in the blob store with its size and modification time.
func (s *Store) Blobs(ctx context.Context) ([]BlobInfo, error) {
	var out []BlobInfo
	root := "/docker/registry/v2/blobs"
	err := s.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || !strings.HasSuffix(fi.Path(), "/data") {
			return nil
		}
		// /docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data
		parts := strings.Split(strings.TrimPrefix(fi.Path(), root+"/"), "/")
		if len(parts) != 4 {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		if d.Validate() == nil {
			out = append(out, BlobInfo{Digest: d, Size: fi.Size(), Modified: fi.ModTime()})
		}
		return nil
	})
	var pnf storagedriver.PathNotFoundError
	if errors.As(err, &pnf) {
		return nil, nil
	}
	return out, err
}

// DeleteBlob removes a blob's content and every repository's link to it.
func (s *Store) DeleteBlob(ctx context.Context, dgst digest.Digest) error {
	if err := s.blobs.Delete(ctx, dgst); err != nil && !errors.Is(mapErr(err), ErrNotFound) {
		return fmt.Errorf("storage: unlink %s: %w", dgst, err)
	}
	if err := dstorage.NewVacuum(ctx, s.driver).RemoveBlob(dgst.String()); err != nil {
		var pnf storagedriver.PathNotFoundError
		if !errors.As(err, &pnf) {
			return fmt.Errorf("storage: remove %s: %w", dgst, err)
		}
	}
	return s.Unlink(dgst)
}

package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3"
	dstorage "github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"
)

// contentRepo is the one repository name all content is kept under in the blob store.
// Content is addressed by digest; which upstream repository may see which digest is
// recorded in the metadata (links), not in the blob store's layout.
const contentRepo = "goldproxy/content"

var (
	// ErrNotFound is returned for a blob, manifest or tag the store does not have.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch is returned when content does not hash to the digest it claims.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrTooManyRanges is returned for a Range header with more than MaxRanges ranges.
	ErrTooManyRanges = errors.New("too many ranges")
)

// MaxRanges is the most byte ranges one blob request may ask for: a multipart answer to
// thousands of tiny ranges is many times the blob's size.
const MaxRanges = 16

// CheckRanges refuses a Range header value with more than MaxRanges ranges.
func CheckRanges(h string) error {
	if h == "" {
		return nil
	}
	if n := strings.Count(h, ",") + 1; n > MaxRanges {
		return fmt.Errorf("%w: %d ranges asked, at most %d", ErrTooManyRanges, n, MaxRanges)
	}
	return nil
}

// Store keeps blobs and manifests by digest (distribution's storage over a storage
// driver) and the metadata around them in bbolt.
type Store struct {
	reads  atomic.Int64 // blobs opened for reading (scans), for tests and metrics
	driver storagedriver.StorageDriver
	blobs  distribution.BlobStore
	db     *bolt.DB
}

// Open opens (creating if needed) the store under dir: blobs in dir/registry through the
// filesystem driver, metadata in dir/meta.db. Uploads left by a crash are purged: they
// were never committed, so nothing in them was ever served.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	// distribution logs through logrus, down to digest mismatches we already report with
	// the repository and upstream they came from; keep its log quiet.
	logrus.SetLevel(logrus.FatalLevel)
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: filepath.Join(dir, "registry"), MaxThreads: 100})
	// The blob store keeps the context it was built with: give it one that outlives ctx.
	bg := context.WithoutCancel(ctx)
	ns, err := dstorage.NewRegistry(bg, drv, dstorage.DisableDigestResumption, dstorage.EnableDelete)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	named, err := reference.WithName(contentRepo)
	if err != nil {
		return nil, err
	}
	repo, err := ns.Repository(bg, named)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("storage: open metadata: %w", err)
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, err
	}
	if err := backfillOwners(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	s := &Store{driver: drv, blobs: repo.Blobs(bg), db: db}
	s.purgeUploads(ctx)
	return s, nil
}

// BlobReads is how many times a blob was opened for reading (layer reads by scans).
func (s *Store) BlobReads() int64 { return s.reads.Load() }

// Close closes the metadata database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the metadata database to packages that keep their own buckets in it
// (verdicts). They must use bucket names of their own.
func (s *Store) DB() *bolt.DB { return s.db }

func (s *Store) purgeUploads(ctx context.Context) {
	uploads := path.Join("/docker/registry/v2/repositories", contentRepo, "_uploads")
	_ = s.driver.Delete(ctx, uploads)
}

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
	rc, err := s.blobs.Open(ctx, dgst)
	if err != nil {
		return nil, mapErr(err)
	}
	return rc, nil
}

// ServeBlob writes a stored blob to w, honouring Range (at most MaxRanges ranges) and
// conditional requests. The
// caller sets any headers it wants to win (Content-Type, Docker-Content-Digest) first.
func (s *Store) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	if err := CheckRanges(r.Header.Get("Range")); err != nil {
		return err
	}
	return mapErr(s.blobs.ServeBlob(ctx, w, r, dgst))
}

// BlobWriter receives a blob. Nothing written is visible until Commit verified it.
type BlobWriter struct {
	s  *Store
	bw distribution.BlobWriter
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
func (w *BlobWriter) Write(p []byte) (int, error) { return w.bw.Write(p) }

// Written is the number of bytes written so far.
func (w *BlobWriter) Written() int64 { return w.bw.Size() }

// Commit verifies the written bytes against dgst (and size, when >= 0) and makes the
// blob visible atomically. On a mismatch nothing is stored and ErrDigestMismatch is
// returned.
func (w *BlobWriter) Commit(ctx context.Context, dgst digest.Digest, size int64) error {
	if size < 0 {
		size = 0 // distribution: "unknown"
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

// Writable checks that the metadata database accepts writes.
func (s *Store) Writable() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("health"))
		return err
	})
}

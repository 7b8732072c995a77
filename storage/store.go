package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
	s3 "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/distribution/reference"
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
	// ErrExists is returned by AddRobot for a name that is taken.
	ErrExists = errors.New("exists")
	// ErrNotBolt is returned by DB when the metadata is not in an embedded bbolt database.
	ErrNotBolt = errors.New("the metadata is not in a bbolt database (back up PostgreSQL with pg_dump)")
)

// MaxRanges is the most byte ranges one blob request may ask for: a multipart answer to
// thousands of tiny ranges is many times the blob's size.
const MaxRanges = 16

// staleUpload is how old an upload must be before a store shared with other processes
// removes it at open: younger ones may be another replica's, still being written.
const staleUpload = 24 * time.Hour

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

// metadata is embedded in Store so that the metadata methods are the store's own.
type metadata = Metadata

// Store keeps blobs and manifests by digest (distribution's storage over a storage
// driver) and the metadata around them (bbolt embedded, or a shared implementation).
type Store struct {
	metadata
	reads  atomic.Int64 // blobs opened for reading (scans), for tests and metrics
	driver storagedriver.StorageDriver
	blobs  distribution.BlobStore
}

// S3 says where blobs are kept in an S3 bucket (or an S3-compatible server).
type S3 struct {
	Bucket string
	// Region is required on AWS; with Endpoint set it may be empty.
	Region string
	// Endpoint is the server's URL (http:// or https://); empty: AWS.
	Endpoint string
	// RootDirectory is the key prefix everything is kept under.
	RootDirectory  string
	ForcePathStyle bool
	// AccessKey and SecretKey; both empty: the AWS default chain (environment, IAM role).
	AccessKey, SecretKey string
}

// Option configures New.
type Option func(*options)

type options struct {
	fsRoot  string
	s3      *S3
	boltAt  string
	meta    Metadata
	backend int // blob backends given
	metas   int // metadata given
}

// WithFilesystem keeps blobs in files under root.
func WithFilesystem(root string) Option {
	return func(o *options) { o.fsRoot, o.backend = root, o.backend+1 }
}

// WithS3 keeps blobs in an S3 bucket.
func WithS3(c S3) Option {
	return func(o *options) { o.s3, o.backend = &c, o.backend+1 }
}

// WithBolt keeps the metadata in an embedded bbolt database at path.
func WithBolt(path string) Option {
	return func(o *options) { o.boltAt, o.metas = path, o.metas+1 }
}

// WithMetadata keeps the metadata in m (storage/postgres). The store owns it from then
// on: Close closes it.
func WithMetadata(m Metadata) Option {
	return func(o *options) { o.meta, o.metas = m, o.metas+1 }
}

// Open opens (creating if needed) the store under dir: blobs in dir/registry through the
// filesystem driver, metadata in dir/meta.db.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return New(ctx, WithFilesystem(filepath.Join(dir, "registry")), WithBolt(filepath.Join(dir, "meta.db")))
}

// New opens a store from one blob backend (WithFilesystem or WithS3) and one metadata
// store (WithBolt or WithMetadata). Uploads left by a crash are purged: they were never
// committed, so nothing in them was ever served. On error a WithMetadata store is closed.
func New(ctx context.Context, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	fail := func(err error) (*Store, error) {
		if o.meta != nil {
			o.meta.Close()
		}
		return nil, err
	}
	if o.backend != 1 || o.metas != 1 {
		return fail(fmt.Errorf("storage: want one blob backend (WithFilesystem or WithS3) and one metadata store (WithBolt or WithMetadata); got %d and %d", o.backend, o.metas))
	}
	// distribution logs through logrus, down to digest mismatches we already report with
	// the repository and upstream they came from; keep its log quiet.
	logrus.SetLevel(logrus.FatalLevel)
	drv, err := o.driver(ctx)
	if err != nil {
		return fail(err)
	}
	if o.s3 != nil {
		// Fail at start, not on the first pull, when the bucket is missing or the keys
		// are wrong.
		var pnf storagedriver.PathNotFoundError
		if _, err := drv.List(ctx, "/"); err != nil && !errors.As(err, &pnf) {
			return fail(fmt.Errorf("storage: s3 bucket %q: %w", o.s3.Bucket, err))
		}
	}
	// The blob store keeps the context it was built with: give it one that outlives ctx.
	bg := context.WithoutCancel(ctx)
	ns, err := dstorage.NewRegistry(bg, drv, dstorage.DisableDigestResumption, dstorage.EnableDelete)
	if err != nil {
		return fail(fmt.Errorf("storage: %w", err))
	}
	named, err := reference.WithName(contentRepo)
	if err != nil {
		return fail(err)
	}
	repo, err := ns.Repository(bg, named)
	if err != nil {
		return fail(fmt.Errorf("storage: %w", err))
	}
	m := o.meta
	if m == nil {
		if m, err = openBolt(o.boltAt); err != nil {
			return nil, err
		}
	}
	s := &Store{metadata: m, driver: drv, blobs: repo.Blobs(bg)}
	// Only a filesystem store with bbolt metadata is this process's alone (bbolt locks the
	// data dir): a shared one may hold other replicas' uploads in progress.
	_, exclusive := m.(*boltMeta)
	s.purgeUploads(ctx, exclusive && o.fsRoot != "")
	return s, nil
}

func (o *options) driver(ctx context.Context) (storagedriver.StorageDriver, error) {
	if o.s3 == nil {
		return filesystem.New(filesystem.DriverParameters{RootDirectory: o.fsRoot, MaxThreads: 100}), nil
	}
	c := o.s3
	params := map[string]any{
		"bucket":         c.Bucket,
		"region":         c.Region,
		"rootdirectory":  c.RootDirectory,
		"forcepathstyle": c.ForcePathStyle,
		"accesskey":      c.AccessKey,
		"secretkey":      c.SecretKey,
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("storage: s3 endpoint %q is not an http(s) URL", c.Endpoint)
		}
		params["regionendpoint"] = c.Endpoint
		params["secure"] = u.Scheme == "https"
		if c.Region == "" {
			params["region"] = "us-east-1" // signed into requests; servers other than AWS ignore it
		}
	}
	d, err := s3.FromParameters(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("storage: s3: %w", err)
	}
	return d, nil
}

// Metadata is the metadata store itself, for capabilities beyond Metadata that only a
// shared implementation has (claims, change notifications: storage/postgres). The
// package that needs one declares it and checks for it by type assertion.
func (s *Store) Metadata() Metadata { return s.metadata }

// BlobReads is how many times a blob was opened for reading (layer reads by scans).
func (s *Store) BlobReads() int64 { return s.reads.Load() }

// Close closes the metadata store.
func (s *Store) Close() error { return s.metadata.Close() }

// DB exposes the bbolt metadata database (for backups); ErrNotBolt when the metadata is
// kept elsewhere.
func (s *Store) DB() (*bolt.DB, error) {
	if b, ok := s.metadata.(*boltMeta); ok {
		return b.db, nil
	}
	return nil, ErrNotBolt
}

func (s *Store) purgeUploads(ctx context.Context, all bool) {
	if all {
		_ = s.driver.Delete(ctx, path.Join("/docker/registry/v2/repositories", contentRepo, "_uploads"))
		return
	}
	_, _ = dstorage.PurgeUploads(ctx, s.driver, time.Now().Add(-staleUpload), true)
}

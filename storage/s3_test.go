package storage_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
	"github.com/goldproxy/goldproxy/storage/s3test"
	"github.com/goldproxy/goldproxy/storage/storagetest"
)

// s3Store opens a store on a fresh bucket of srv with metadata meta, and lists what the
// bucket holds of uploads in progress.
func s3Store(t *testing.T, srv *s3test.Server, meta storage.Option) (*storage.Store, func() []string) {
	t.Helper()
	bucket := srv.NewBucket(t)
	s, err := storage.New(context.Background(), meta, storage.WithS3(storage.S3{
		Bucket: bucket, Endpoint: srv.Endpoint, ForcePathStyle: true, RootDirectory: "/goldproxy",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	uploads := func() []string {
		var out []string
		err := srv.Client(t).ListObjectsV2Pages(&s3.ListObjectsV2Input{Bucket: aws.String(bucket)}, func(p *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range p.Contents {
				if !strings.HasPrefix(*o.Key, "goldproxy/") {
					t.Errorf("object %s outside the root directory", *o.Key)
				}
				if strings.Contains(*o.Key, "/_uploads/") {
					out = append(out, *o.Key)
				}
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return s, uploads
}

func TestS3Blobs(t *testing.T) {
	srv := s3test.Start(t)
	s, uploads := s3Store(t, srv, storage.WithBolt(t.TempDir()+"/meta.db"))
	storagetest.Blobs(t, s, uploads)
}

// TestS3Refused: a missing bucket or a wrong key stops the store at open, naming the
// bucket, rather than failing the first pull.
func TestS3Refused(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	for _, tc := range []struct {
		name           string
		bucket, secret string
	}{
		{"wrong secret key", bucket, "wrong"},
		{"no such bucket", "never-created", srv.SecretKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := storage.New(context.Background(), storage.WithBolt(filepath.Join(t.TempDir(), "meta.db")), storage.WithS3(storage.S3{
				Bucket: tc.bucket, Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: tc.secret,
			}))
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), `s3 bucket "`+tc.bucket+`"`) || strings.Contains(err.Error(), srv.SecretKey) {
				t.Fatalf("error %v: want the bucket named, and no secret", err)
			}
		})
	}
}

// TestS3PostgresStore is the replicas' store: blobs on S3, metadata on PostgreSQL.
func TestS3PostgresStore(t *testing.T) {
	srv := s3test.Start(t)
	pg := pgtest.Start(t)
	open := func(t *testing.T) *storage.Store {
		m, err := postgres.Open(context.Background(), pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := s3Store(t, srv, storage.WithMetadata(m))
		return s
	}
	t.Run("conformance", func(t *testing.T) {
		storagetest.Conformance(t, func(t *testing.T) storage.Metadata { return open(t) })
	})
	t.Run("blobs", func(t *testing.T) {
		m, err := postgres.Open(context.Background(), pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		s, uploads := s3Store(t, srv, storage.WithMetadata(m))
		if _, err := s.DB(); err == nil {
			t.Fatal("DB on PostgreSQL metadata")
		}
		if err := s.Writable(); err != nil {
			t.Fatal(err)
		}
		storagetest.Blobs(t, s, uploads)
	})
}

// TestS3UploadsOfOtherReplicas: a store opening on a shared bucket leaves young uploads
// alone (another replica may be writing them) and removes those older than a day.
func TestS3UploadsOfOtherReplicas(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()
	open := func() *storage.Store {
		m, err := storage.New(ctx, storage.WithBolt(filepath.Join(t.TempDir(), "meta.db")), storage.WithS3(storage.S3{
			Bucket: bucket, Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	client := srv.Client(t)
	startedAt := func() []string {
		var out []string
		err := client.ListObjectsV2Pages(&s3.ListObjectsV2Input{Bucket: aws.String(bucket)}, func(p *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range p.Contents {
				if strings.Contains(*o.Key, "/_uploads/") && strings.HasSuffix(*o.Key, "/startedat") {
					out = append(out, *o.Key)
				}
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := open()
	w, err := a.CreateBlob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("in progress on replica a")); err != nil {
		t.Fatal(err)
	}
	young := startedAt()
	if len(young) != 1 {
		t.Fatalf("uploads in progress: %v", young)
	}
	open() // replica b starts
	if got := startedAt(); len(got) != 1 {
		t.Fatalf("replica b removed replica a's upload in progress: %v", got)
	}
	// The upload is abandoned (a crashed), and a day passes.
	old := time.Now().Add(-25 * time.Hour).UTC().Format(time.RFC3339)
	if _, err := client.PutObject(&s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(young[0]), Body: strings.NewReader(old)}); err != nil {
		t.Fatal(err)
	}
	open()
	if got := startedAt(); len(got) != 0 {
		t.Fatalf("an upload abandoned a day ago survived a start: %v", got)
	}
}

package storage_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/storagetest"
)

func open(t *testing.T) (*storage.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestBlobCommitVerifies(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	good := []byte("layer bytes")
	d := digest.FromBytes(good)
	for _, tc := range []struct {
		name    string
		content []byte
		size    int64
		wantErr error
	}{
		{"wrong bytes", []byte("layer bytez"), int64(len(good)), storage.ErrDigestMismatch},
		{"short", good[:4], int64(len(good)), storage.ErrDigestMismatch},
		{"good", good, int64(len(good)), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.CreateBlob(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tc.content); err != nil {
				t.Fatal(err)
			}
			err = w.Commit(ctx, d, tc.size)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("commit: %v, want %v", err, tc.wantErr)
			}
			size, err := s.StatBlob(ctx, d)
			if tc.wantErr != nil {
				if !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("a rejected blob is visible: %v", err)
				}
				return
			}
			if err != nil || size != int64(len(good)) {
				t.Fatalf("stat: %d %v", size, err)
			}
			rc, err := s.OpenBlob(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != string(good) {
				t.Fatalf("read back %q", b)
			}
		})
	}
}

func TestFilesystemBlobs(t *testing.T) {
	s, dir := open(t)
	storagetest.Blobs(t, s, func() []string {
		var out []string
		_ = filepath.WalkDir(filepath.Join(dir, "registry"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(p, "/_uploads/") {
				out = append(out, p)
			}
			return nil
		})
		return out
	})
}

func TestNewNeedsOneOfEach(t *testing.T) {
	dir := t.TempDir()
	for _, opts := range [][]storage.Option{
		nil,
		{storage.WithFilesystem(dir)},
		{storage.WithBolt(filepath.Join(dir, "meta.db"))},
		{storage.WithFilesystem(dir), storage.WithS3(storage.S3{Bucket: "b", Region: "us-east-1"}), storage.WithBolt(filepath.Join(dir, "meta.db"))},
	} {
		if s, err := storage.New(context.Background(), opts...); err == nil {
			s.Close()
			t.Errorf("New with %d options: no error", len(opts))
		}
	}
	if _, err := storage.New(context.Background(), storage.WithBolt(filepath.Join(dir, "meta.db")), storage.WithS3(storage.S3{Bucket: "b", Endpoint: "ftp://x"})); err == nil || !strings.Contains(err.Error(), "endpoint") {
		t.Errorf("a bad endpoint: %v", err)
	}
	s, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if db, err := s.DB(); err != nil || db == nil {
		t.Fatalf("DB on bbolt: %v", err)
	}
}

func TestManifestsTagsReferrers(t *testing.T) {
	s, dir := open(t)
	raw := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(raw)
	rec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: d}, Subject: digest.FromString("subject")}
	if err := s.PutManifest("r.test/a", rec, []byte(`{"schemaVersion":3}`)); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("mismatching manifest accepted: %v", err)
	}
	layer := digest.FromString("layer")
	if err := s.PutManifest("r.test/a", rec, raw, layer); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Manifest("r.test/b", d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("manifest visible under another repository: %v", err)
	}
	got, b, err := s.Manifest("r.test/a", d)
	if err != nil || string(b) != string(raw) || got.Size != int64(len(raw)) {
		t.Fatalf("manifest: %+v %q %v", got, b, err)
	}
	if !s.Linked("r.test/a", layer) || s.Linked("r.test/b", layer) {
		t.Fatal("referenced blobs are linked to the manifest's repository only")
	}
	refs, _ := s.Referrers("r.test/a", rec.Subject)
	if len(refs) != 1 || refs[0].Digest != d {
		t.Fatalf("referrers %+v", refs)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, tag := range []string{"b", "a", "c"} {
		if err := s.SetTag("r.test/a", tag, d, now); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.SetTag("r.test/ab", "z", d, now) // a repository whose name extends another's
	tags, _ := s.Tags("r.test/a")
	if len(tags) != 3 || tags[0] != "a" || tags[2] != "c" {
		t.Fatalf("tags %v", tags)
	}
	// Everything survives a reopen.
	s.Close()
	s2, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	tr, err := s2.Tag("r.test/a", "b")
	if err != nil || tr.Digest != d || !tr.FetchedAt.Equal(now) {
		t.Fatalf("tag after reopen: %+v %v", tr, err)
	}
}

func TestCheckRanges(t *testing.T) {
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"", true},
		{"bytes=0-9", true},
		{"bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", storage.MaxRanges), ","), true},
		{"bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", storage.MaxRanges+1), ","), false},
	} {
		err := storage.CheckRanges(tc.header)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, storage.ErrTooManyRanges)) {
			t.Errorf("CheckRanges(%.40q): %v", tc.header, err)
		}
	}
}

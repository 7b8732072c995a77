package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// Blobs runs the blob suite against s: commits verified against their digest, a
// mismatch refused with nothing stored, reads, Range requests, listing and deletion.
// uploads lists what the backend still holds of uploads in progress (paths); after a
// refused or cancelled commit it must be empty.
func Blobs(t *testing.T, s *storage.Store, uploads func() []string) {
	ctx := context.Background()
	put := func(t *testing.T, b []byte) digest.Digest {
		t.Helper()
		d := digest.FromBytes(b)
		w, err := s.CreateBlob(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if w.Written() != int64(len(b)) {
			t.Fatalf("written %d, want %d", w.Written(), len(b))
		}
		if err := w.Commit(ctx, d, int64(len(b))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	small := []byte("0123456789abcdef")
	// Larger than a multipart chunk of the S3 driver (10 MiB): several parts.
	large := make([]byte, 11<<20+123)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range large {
		large[i] = byte(r.Uint32())
	}

	t.Run("commit verifies", func(t *testing.T) {
		d := digest.FromBytes(small)
		for _, tc := range []struct {
			name    string
			content []byte
			size    int64
		}{
			{"wrong bytes", []byte("0123456789abcdeX"), int64(len(small))},
			{"short", small[:4], int64(len(small))},
			{"wrong size", small, int64(len(small)) + 1},
		} {
			w, err := s.CreateBlob(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tc.content); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(ctx, d, tc.size); !errors.Is(err, storage.ErrDigestMismatch) {
				t.Fatalf("%s: commit %v, want a digest mismatch", tc.name, err)
			}
			if _, err := s.StatBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s: a refused blob is visible: %v", tc.name, err)
			}
		}
		if left := uploads(); len(left) != 0 {
			t.Fatalf("refused uploads left behind: %v", left)
		}
		w, err := s.CreateBlob(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(small); err != nil {
			t.Fatal(err)
		}
		if err := w.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
		if left := uploads(); len(left) != 0 {
			t.Fatalf("a cancelled upload left behind: %v", left)
		}
		if bs, _ := s.Blobs(ctx); len(bs) != 0 {
			t.Fatalf("blobs after refusals: %v", bs)
		}
	})

	t.Run("round trip", func(t *testing.T) {
		for _, b := range [][]byte{small, large} {
			d := put(t, b)
			if size, err := s.StatBlob(ctx, d); err != nil || size != int64(len(b)) {
				t.Fatalf("stat: %d %v", size, err)
			}
			rc, err := s.OpenBlob(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rc.Seek(int64(len(b))-4, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			tail, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(tail, b[len(b)-4:]) {
				t.Fatalf("read after seek: %x", tail)
			}
			got, err := s.ReadBlob(ctx, d)
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
		}
		// Committing the same content again is harmless.
		put(t, small)
		bs, err := s.Blobs(ctx)
		if err != nil || len(bs) != 2 {
			t.Fatalf("blobs: %v %v", bs, err)
		}
		for _, bi := range bs {
			if (bi.Digest == digest.FromBytes(small) && bi.Size != int64(len(small))) || (bi.Digest == digest.FromBytes(large) && bi.Size != int64(len(large))) {
				t.Fatalf("listed size: %+v", bi)
			}
			// Garbage collection spares blobs younger than its grace by this time.
			if age := time.Since(bi.Modified); age < -time.Minute || age > time.Hour {
				t.Fatalf("listed modification time %s: not when the blob was written", bi.Modified)
			}
		}
	})

	t.Run("serve with range", func(t *testing.T) {
		d := put(t, large)
		for _, tc := range []struct {
			rng    string
			status int
			want   []byte
		}{
			{"", http.StatusOK, large},
			{"bytes=2-5", http.StatusPartialContent, large[2:6]},
			{"bytes=-3", http.StatusPartialContent, large[len(large)-3:]},
			{"bytes=" + "10485760-10485770", http.StatusPartialContent, large[10485760:10485771]},
		} {
			req := httptest.NewRequest(http.MethodGet, "/blob", nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			rec := httptest.NewRecorder()
			if err := s.ServeBlob(ctx, rec, req, d); err != nil {
				t.Fatalf("%q: %v", tc.rng, err)
			}
			if rec.Code != tc.status || !bytes.Equal(rec.Body.Bytes(), tc.want) {
				t.Fatalf("%q: %d, %d bytes; want %d, %d bytes", tc.rng, rec.Code, rec.Body.Len(), tc.status, len(tc.want))
			}
		}
		req := httptest.NewRequest(http.MethodGet, "/blob", nil)
		req.Header.Set("Range", "bytes="+strings.TrimSuffix(strings.Repeat("0-0,", storage.MaxRanges+1), ","))
		if err := s.ServeBlob(ctx, httptest.NewRecorder(), req, d); !errors.Is(err, storage.ErrTooManyRanges) {
			t.Fatalf("too many ranges: %v", err)
		}
		if err := s.ServeBlob(ctx, httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/blob", nil), digest.FromString("absent")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("serve an absent blob: %v", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		d := put(t, small)
		if err := s.Link("r.test/app", d); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteBlob(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StatBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("stat after delete: %v", err)
		}
		if _, err := s.OpenBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("open after delete: %v", err)
		}
		if s.Linked("r.test/app", d) {
			t.Fatal("a deleted blob is still linked")
		}
		bs, err := s.Blobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, bi := range bs {
			if bi.Digest == d {
				t.Fatal("a deleted blob is listed")
			}
		}
		if err := s.DeleteBlob(ctx, d); err != nil {
			t.Fatalf("deleting twice: %v", err)
		}
		// Stored again after eviction, it is served again.
		put(t, small)
		if got, err := s.ReadBlob(ctx, d); err != nil || !bytes.Equal(got, small) {
			t.Fatalf("after re-ingest: %q %v", got, err)
		}
	})
}

package gate

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// storeOf opens data as the stored blob, counting opens.
func storeOf(data []byte, opens *int) func(context.Context, digest.Digest) (io.ReadSeekCloser, error) {
	return func(context.Context, digest.Digest) (io.ReadSeekCloser, error) {
		*opens++
		return struct {
			io.ReadSeeker
			io.Closer
		}{bytes.NewReader(data), io.NopCloser(nil)}, nil
	}
}

// readWithin reads n bytes from r, failing if that takes longer than a second: the
// bytes are there, nothing may wait for the fetch to end.
func readWithin(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("the scan waits for the fetch to end although the bytes were tapped")
		return nil
	}
}

// TestLayerStreamSpillsWhatTheScanHasNotRead: a download faster than the scan queues
// maxStreamed in memory and the rest in a spill file; the scan reads all of it while the
// fetch is still running (not from the store after it), byte for byte, and the spill
// file is gone from the temp dir while in use and closed with the reader.
func TestLayerStreamSpillsWhatTheScanHasNotRead(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3*maxStreamed+12345)
	_, _ = rand.Read(data)
	s := newLayerStream(dir)
	for off := 0; off < len(data); off += 32 << 10 {
		if !s.tap(data[off:min(off+32<<10, len(data))]) {
			t.Fatalf("tap at %d dropped the stream", off)
		}
	}
	if s.queued > maxStreamed || s.spilled != int64(len(data)-s.queued) {
		t.Fatalf("queued %d in memory, %d spilled", s.queued, s.spilled)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("the spill file is visible in the spill dir: %v", left)
	}
	if !s.claim() {
		t.Fatal("not claimed")
	}
	opens := 0
	r := &streamReader{ctx: context.Background(), s: s, open: storeOf(data, &opens)}
	if got := readWithin(t, r, len(data)); !bytes.Equal(got, data) || opens != 0 {
		t.Fatalf("read %d bytes, equal %v, store opened %d times", len(got), bytes.Equal(got, data), opens)
	}
	s.finish(nil)
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("after the layer: %d, %v", n, err)
	}
	f := s.spill
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat(); err == nil {
		t.Fatal("the spill file is still open after the reader closed")
	}
	if s.tap([]byte("late")) {
		t.Fatal("a closed stream took more bytes")
	}
}

// TestLayerStreamDroppedPastTheSpillLimit: past maxSpilled the stream is dropped and the
// scan reads on from the store, at its offset, once the fetch is done; interleaved reads
// and taps see every byte once.
func TestLayerStreamDroppedPastTheSpillLimit(t *testing.T) {
	old := maxSpilled
	maxSpilled = 1 << 20
	t.Cleanup(func() { maxSpilled = old })
	data := make([]byte, maxStreamed+3<<20)
	_, _ = rand.Read(data)
	s := newLayerStream(t.TempDir())
	s.claim()
	opens := 0
	r := &streamReader{ctx: context.Background(), s: s, open: storeOf(data, &opens)}
	var got []byte
	off := 0
	for ; off < len(data); off += 64 << 10 {
		if !s.tap(data[off:min(off+64<<10, len(data))]) {
			break
		}
		if off%(1<<20) == 0 { // the scan reads now and then, less than arrives
			got = append(got, readWithin(t, r, 16<<10)...)
		}
	}
	if !s.dropped || off >= len(data) {
		t.Fatalf("not dropped at %d of %d", off, len(data))
	}
	done := make(chan []byte)
	go func() {
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Error(err)
		}
		done <- rest
	}()
	select {
	case <-done:
		t.Fatal("the reader went on before the fetch was done")
	case <-time.After(100 * time.Millisecond):
	}
	s.finish(nil)
	got = append(got, <-done...)
	if !bytes.Equal(got, data) || opens != 1 {
		t.Fatalf("read %d of %d bytes, equal %v, store opened %d times", len(got), len(data), bytes.Equal(got, data), opens)
	}
	r.Close()
}

// TestLayerStreamFetchFailure: a failed fetch fails the read once the tapped bytes are
// read; nothing comes from the store.
func TestLayerStreamFetchFailure(t *testing.T) {
	s := newLayerStream(t.TempDir())
	s.claim()
	s.tap([]byte("partial"))
	s.finish(io.ErrUnexpectedEOF)
	opens := 0
	r := &streamReader{ctx: context.Background(), s: s, open: storeOf(nil, &opens)}
	b, err := io.ReadAll(r)
	if string(b) != "partial" || err != io.ErrUnexpectedEOF || opens != 0 {
		t.Fatalf("%q %v, %d opens", b, err, opens)
	}
}

package gc

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
)

// These cases run on bbolt, whose holds behave as PostgreSQL's (storagetest): Shared
// makes the collector act as one replica of several, the test plays the others.

type noUse struct{}

func (noUse) Held(digest.Digest) bool  { return false }
func (noUse) Holding() []digest.Digest { return nil }

type life struct{}

func (life) Bound(ctx context.Context) (context.Context, func()) { return ctx, func() {} }

func putBlob(t *testing.T, s *storage.Store, b []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	w, err := s.CreateBlob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(b)
	if err := w.Commit(ctx, d, int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return d
}

// putImage stores a manifest of one layer, stored at at.
func putImage(t *testing.T, s *storage.Store, repo string, at time.Time) (manifest, layer digest.Digest) {
	t.Helper()
	layer = putBlob(t, s, bytes.Repeat([]byte(repo), 1000))
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{"digest":"` + layer.String() + `"}]}`)
	rec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(raw), Size: int64(len(raw))}, StoredAt: at}
	if err := s.PutManifest(repo, rec, raw, layer); err != nil {
		t.Fatal(err)
	}
	return rec.Digest, layer
}

func collector(t *testing.T, shared bool, cfg *config.GCConfig, now func() time.Time) *Collector {
	t.Helper()
	s, err := storage.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return New(Deps{Store: s, Config: cfg, InUse: noUse{}, Life: life{}, Log: slog.New(slog.DiscardHandler), Now: now, Shared: shared, Heartbeat: 50 * time.Millisecond})
}

// TestCollectSparesWhatAnotherReplicaHoldsSinceTheCandidates: another replica's set is
// empty when the candidates are chosen and holds the image by the time the collector
// looked again: the image and its layer stay. With nothing held, the next collection
// evicts it.
func TestCollectSparesWhatAnotherReplicaHoldsSinceTheCandidates(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &config.GCConfig{MaxAge: time.Hour, Grace: time.Minute}
	chosen := make(chan struct{})
	var once sync.Once
	c := collector(t, true, cfg, func() time.Time {
		once.Do(func() { close(chosen) }) // asked first when the candidates are chosen
		return old.Add(24 * time.Hour)
	})
	m, layer := putImage(t, c.Store, "r.test/app", old)
	publish := func(ds ...digest.Digest) {
		if err := c.Store.PublishHolds("other", ds, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := c.Collect(context.Background(), false)
		done <- result{res, err}
	}()
	<-chosen
	// The other replica began using the image after the candidates were chosen; its
	// next two publishes say so.
	publish(m)
	var r result
	deadline := time.After(30 * time.Second)
	for got := false; !got; {
		select {
		case r = <-done:
			got = true
		case <-time.After(20 * time.Millisecond):
			publish(m)
		case <-deadline:
			t.Fatal("the collection never ended")
		}
	}
	if r.err != nil || len(r.res.Evicted) != 0 || r.res.DeletedBlobs != 0 {
		t.Fatalf("collection while another replica holds the image: %+v %v", r.res, r.err)
	}
	if _, ok := c.Store.HasManifest("r.test/app", m); !ok {
		t.Fatal("the manifest went")
	}
	if _, err := c.Store.StatBlob(context.Background(), layer); err != nil {
		t.Fatalf("the layer went: %v", err)
	}

	// The other replica lets go (and says so at once: expired).
	if err := c.Store.PublishHolds("other", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Collect(context.Background(), false)
	if err != nil || len(res.Evicted) != 1 || res.DeletedBlobs != 1 {
		t.Fatalf("collection once nothing is held: %+v %v", res, err)
	}
}

// TestCollectKeepsYoungUnreferencedBlobsOnASharedStore: a blob no manifest references
// may be one another replica is ingesting: on a shared store it stays while younger than
// the grace period; one process alone deletes it (its own leases cover its ingests).
func TestCollectKeepsYoungUnreferencedBlobsOnASharedStore(t *testing.T) {
	for _, shared := range []bool{true, false} {
		cfg := &config.GCConfig{MaxSize: 1, Grace: time.Hour}
		c := collector(t, shared, cfg, time.Now)
		d := putBlob(t, c.Store, []byte("being ingested"))
		res, err := c.Collect(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		_, serr := c.Store.StatBlob(context.Background(), d)
		if kept := serr == nil; kept != shared {
			t.Errorf("shared %v: young unreferenced blob kept %v (%+v)", shared, kept, res)
		}
		if !shared {
			continue
		}
		cfg.Grace = 0 // older than the grace period: it goes
		if res, err := c.Collect(context.Background(), false); err != nil || res.DeletedBlobs != 1 {
			t.Errorf("shared %v: old unreferenced blob: %+v %v", shared, res, err)
		}
	}
}

// TestCollectIsNotHeldBackByItsOwnPublishedSet: what this replica published a heartbeat
// ago (a pull's manifest and layer) is a stale copy of its own leases, which it reads
// live: a collection after the pull ended evicts the image although the published set
// still names both.
func TestCollectIsNotHeldBackByItsOwnPublishedSet(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &config.GCConfig{MaxAge: time.Hour, Grace: time.Minute}
	c := collector(t, true, cfg, func() time.Time { return old.Add(24 * time.Hour) })
	m, layer := putImage(t, c.Store, "r.test/app", old)
	if err := c.Store.PublishHolds(c.holder, []digest.Digest{m, layer}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	res, err := c.Collect(context.Background(), false)
	if err != nil || len(res.Evicted) != 1 || res.DeletedBlobs != 1 {
		t.Fatalf("collection with only its own stale set published: %+v %v", res, err)
	}
}

package proxy_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/storage"
)

// gcHeartbeat is how often the replicas of these tests publish their holds: short, so a
// collection waits for them briefly, and long enough that a set (three heartbeats) never
// expires on a loaded machine between two publishes.
const gcHeartbeat = time.Second

// gcReplicas starts two replicas on one bucket and database, each with its scanner, and
// returns the one that leads (where collections run) and the other.
func gcReplicas(t *testing.T, up *proxytest.Upstream, mutate func(*config.Config), clock func() time.Time, scanners ...*fakeScanner) (leader, follower *proxytest.Proxy, lsc, fsc *fakeScanner) {
	t.Helper()
	var ps []*proxytest.Proxy
	for i, cfg := range proxytest.ReplicaConfigs(t, 2, up) {
		mutate(cfg)
		opts := []proxy.Option{proxy.WithScanner(scanners[i], policy.DefaultSet()), proxy.WithHoldsHeartbeat(gcHeartbeat)}
		if clock != nil {
			opts = append(opts, proxy.WithClock(clock))
		}
		p := proxytest.Start(t, cfg, opts...)
		if clock != nil {
			p.Gold.SetClock(clock)
		}
		ps = append(ps, p)
	}
	waitFor(t, 20*time.Second, "no replica leads", func() bool { return ps[0].Gold.Leading() || ps[1].Gold.Leading() })
	if ps[1].Gold.Leading() {
		return ps[1], ps[0], scanners[1], scanners[0]
	}
	return ps[0], ps[1], scanners[0], scanners[1]
}

// stored reports whether the shared store still has the blob.
func stored(t *testing.T, p *proxytest.Proxy, d digest.Digest) bool {
	t.Helper()
	_, err := p.Store.StatBlob(context.Background(), d)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// collectUntil runs collections on p until cond holds, failing the test after d.
func collectUntil(t *testing.T, p *proxytest.Proxy, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, d, what, func() bool {
		if _, err := p.Gold.GC(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		return cond()
	})
}

// TestReplicasGCSparesABlobAFollowerServes: the follower is sending a large layer to a
// slow client when the leader collects with a bound that evicts everything: the layer
// stays in the shared store while it is served (the image's manifest may go, as on one
// replica) and the client gets all of its bytes; once the transfer is over, the next
// collection deletes it.
func TestReplicasGCSparesABlobAFollowerServes(t *testing.T) {
	up := proxytest.NewUpstream(t)
	data := make([]byte, 32<<20) // far more than the socket buffers: the send blocks
	_, _ = rand.Read(data)
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(data, types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "team/app:1", img)
	leader, follower, _, _ := gcReplicas(t, up, func(c *config.Config) { c.Storage.GC.Grace = 0 }, nil, &fakeScanner{}, &fakeScanner{})
	if err := pullAll(up.Name+"/team/app:1", follower); err != nil {
		t.Fatal(err)
	}
	layer := layerOf(t, img)
	resp, first := blobReadInProgress(t, follower.URL+"/v2/"+up.Name+"/team/app/blobs/"+layer.String())

	leader.Config.Storage.GC.MaxSize = 1 // evict everything it can
	res, err := leader.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !stored(t, leader, layer) {
		t.Fatalf("the leader deleted a layer the follower is serving: %+v", res)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the pull in progress on the follower broke: %v", err)
	}
	if digest.FromBytes(append(first, rest...)) != layer {
		t.Fatal("the pull in progress on the follower got wrong bytes")
	}
	resp.Body.Close()
	// The follower lets go when its handler returns, and publishes that within a
	// heartbeat: a collection soon after deletes the layer.
	collectUntil(t, leader, 30*time.Second, "the layer was never collected once served", func() bool { return !stored(t, leader, layer) })
}

// TestReplicasGCSparesAnImageAFollowerScans: the follower is scanning a new image (its
// manifest stored, its blobs being read) when the leader collects with a bound that
// evicts everything: the image and its blobs stay, the scan completes and the client's
// pull with it; once the scan is over, the next collection removes them.
func TestReplicasGCSparesAnImageAFollowerScans(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 2)
	up.Push(t, "team/app:1", img)
	block := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(block) }) }
	leader, follower, _, fsc := gcReplicas(t, up, func(c *config.Config) { c.Storage.GC.Grace = 0 }, nil,
		&fakeScanner{block: block}, &fakeScanner{block: block})
	t.Cleanup(unblock) // runs before the replicas close, which wait for the scan
	pulled := make(chan error, 1)
	go func() { pulled <- pullAll(up.Name+"/team/app:1", follower) }()
	waitFor(t, 20*time.Second, "the follower never started its scan", func() bool { return fsc.calls.Load() == 1 })
	d := digest.Digest(mustDigest(t, img).String())
	if _, ok := leader.Store.HasManifest(up.Name+"/team/app", d); !ok {
		t.Fatal("the manifest is not stored during its scan")
	}

	leader.Config.Storage.GC.MaxSize = 1
	res, err := leader.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.Store.HasManifest(up.Name+"/team/app", d); !ok || len(res.Evicted) != 0 {
		t.Fatalf("the leader evicted an image the follower is scanning: %+v", res)
	}
	unblock()
	if err := <-pulled; err != nil {
		t.Fatalf("the pull on the follower: %v", err)
	}
	for _, b := range blobsOf(t, img) {
		if !stored(t, leader, digest.Digest(b.String())) {
			t.Fatalf("blob %s of the scanned image was deleted", b)
		}
	}
	collectUntil(t, leader, 30*time.Second, "the image was never collected once scanned", func() bool {
		_, ok := leader.Store.HasManifest(up.Name+"/team/app", d)
		return !ok
	})
	for _, b := range blobsOf(t, img) {
		if stored(t, leader, digest.Digest(b.String())) {
			t.Errorf("blob %s is still stored after its image went", b)
		}
	}
}

// TestReplicasGCSparesAnImageJustPulledOnAFollower: an image last recorded as pulled an
// hour ago is pulled on the follower moments before the leader collects with max_age 30m;
// the pull time is still in the follower's buffer (flushed every 30 s), yet the image
// stays. Once the follower flushed and the image is really older than the bound, it goes.
func TestReplicasGCSparesAnImageJustPulledOnAFollower(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 2)
	up.Push(t, "team/app:1", img)
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	leader, follower, _, _ := gcReplicas(t, up, func(c *config.Config) { c.Storage.GC.Grace = time.Minute }, clock, &fakeScanner{}, &fakeScanner{})
	d := mustDigest(t, img)
	ref := up.Name + "/team/app@" + d.String()
	if err := pullAll(ref, follower); err != nil {
		t.Fatal(err)
	}
	if err := follower.Gold.FlushPulls(); err != nil {
		t.Fatal(err)
	}
	tick(time.Hour)
	leader.Config.Storage.GC.MaxAge = 30 * time.Minute
	// The follower published the pull while it was buffered; its next publish, within a
	// heartbeat, no longer holds it (flushed, and an hour old now).
	waitFor(t, 30*time.Second, "a dry run never evicted the image an hour after its pull", func() bool {
		dry, err := leader.Gold.GC(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		return len(dry.Evicted) == 1
	})

	if err := pullAll(ref, follower); err != nil { // buffered on the follower
		t.Fatal(err)
	}
	res, err := leader.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.Store.HasManifest(up.Name+"/team/app", digest.Digest(d.String())); !ok || len(res.Evicted) != 0 {
		t.Fatalf("the leader evicted an image the follower pulled just now: %+v", res)
	}
	if err := pullAll(ref, follower); err != nil {
		t.Fatalf("the image on the follower after the collection: %v", err)
	}

	if err := follower.Gold.FlushPulls(); err != nil {
		t.Fatal(err)
	}
	tick(time.Hour)
	// Until the follower's next publish its set still holds the pull it just flushed.
	collectUntil(t, leader, 30*time.Second, "an hour after its last pull the image is kept", func() bool {
		_, ok := leader.Store.HasManifest(up.Name+"/team/app", digest.Digest(d.String()))
		return !ok
	})
}

// TestGCHoldsAreNotPublishedOnALocalStore: one process on bbolt checks its own leases;
// pulls write no holds.
func TestGCHoldsAreNotPublishedOnALocalStore(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/app:1", randomImage(t, 1))
	cfg := proxytest.Config(t, up)
	if cfg.Storage.Metadata.Driver == "postgres" {
		t.Skip("the suite runs on shared storage: replicas publish their holds there")
	}
	p := proxytest.Start(t, cfg, proxy.WithHoldsHeartbeat(10*time.Millisecond))
	for range 3 {
		if err := pullAll(up.Name+"/team/app:1", p); err != nil {
			t.Fatal(err)
		}
	}
	// A publisher publishes as it starts, and every 10 ms here: it would have by now.
	if sets, err := p.Store.Holds(time.Time{}); err != nil || len(sets) != 0 {
		t.Fatalf("holds on a local store: %v %v", sets, err)
	}
}

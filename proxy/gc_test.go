package proxy_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/storage"
)

func bigImage(t *testing.T) v1.Image {
	img, err := random.Image(1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerOf(t *testing.T, img v1.Image) digest.Digest {
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	return digest.Digest(d.String())
}

// blobReadInProgress starts a GET of the blob at url and reads its first bytes: the
// response is still being sent (the caller reads the rest and closes it).
func blobReadInProgress(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	first := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	return resp, first
}

func TestGCKeepsMostRecentlyPulled(t *testing.T) {
	up := proxytest.NewUpstream(t)
	imgs := map[string]v1.Image{"a": bigImage(t), "b": bigImage(t), "c": bigImage(t)}
	for tag, img := range imgs {
		up.Push(t, "team/app:"+tag, img)
	}
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := proxytest.Config(t, up)
	cfg.Storage.GC.Grace = time.Minute
	sc := &fakeScanner{}
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()), proxy.WithClock(clock))
	p.Gold.SetClock(clock)
	for _, tag := range []string{"a", "b", "c", "a"} { // b is the least recently pulled
		if err := pullAll(up.Name+"/team/app:"+tag, p); err != nil {
			t.Fatal(err)
		}
		tick(5 * time.Minute)
	}
	tick(time.Hour)
	blobs, _ := p.Store.Blobs(context.Background())
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	// Room for two of the three images.
	cfg.Storage.GC.MaxSize = config.ByteSize(total * 3 / 4)

	dry, err := p.Gold.GC(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	bDigest, _ := imgs["b"].Digest()
	if len(dry.Evicted) != 1 || !strings.HasSuffix(dry.Evicted[0], bDigest.String()) || dry.SizeAfter >= dry.SizeBefore {
		t.Fatalf("dry run: %+v", dry)
	}
	if _, err := p.Store.StatBlob(context.Background(), layerOf(t, imgs["b"])); err != nil {
		t.Fatal("a dry run removed something")
	}
	res, err := p.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Evicted) != 1 || res.DeletedBlobs != 2 || res.SizeAfter > int64(cfg.Storage.GC.MaxSize) {
		t.Fatalf("gc: %+v", res)
	}
	if _, err := p.Store.StatBlob(context.Background(), layerOf(t, imgs["b"])); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("b's layer is still stored: %v", err)
	}
	if _, ok := p.Store.HasManifest(up.Name+"/team/app", digest.Digest(bDigest.String())); ok {
		t.Fatal("b's manifest is still stored")
	}
	if _, err := p.Store.Verdict(digest.Digest(bDigest.String())); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("b's verdict is still stored")
	}
	// a and c are still served from the store (by digest: tags are past their TTL and
	// would be asked about upstream): no upstream request, no scan.
	scans, upstream := sc.calls.Load(), up.Total()
	for _, tag := range []string{"a", "c"} {
		d, _ := imgs[tag].Digest()
		if err := pullAll(up.Name+"/team/app@"+d.String(), p); err != nil {
			t.Fatal(err)
		}
	}
	if sc.calls.Load() != scans || up.Total() != upstream {
		t.Fatalf("kept images cost %d scans, %d upstream requests", sc.calls.Load()-scans, up.Total()-upstream)
	}
	// b comes back through the gate like a new image.
	if err := pullAll(up.Name+"/team/app:b", p); err != nil {
		t.Fatal(err)
	}
	if sc.calls.Load() != scans+1 {
		t.Fatal("the evicted image was not scanned again")
	}
}

func TestGCNeverBreaksAPullInProgress(t *testing.T) {
	up := proxytest.NewUpstream(t)
	// Large enough that the server is still sending when gc runs.
	data := make([]byte, 48<<20)
	_, _ = rand.Read(data)
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(data, types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "team/app:1", img)
	cfg := proxytest.Config(t, up)
	cfg.Storage.GC.Grace = 0
	p := proxytest.Start(t, cfg, proxy.WithScanner(&fakeScanner{}, policy.DefaultSet()))
	if err := pullAll(up.Name+"/team/app:1", p); err != nil {
		t.Fatal(err)
	}
	layer := layerOf(t, img)
	resp, first := blobReadInProgress(t, p.URL+"/v2/"+up.Name+"/team/app/blobs/"+layer.String())
	cfg.Storage.GC.MaxSize = 1 // evict everything it can
	res, err := p.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Evicted) == 0 {
		t.Fatalf("nothing evicted: %+v", res)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the pull in progress broke: %v", err)
	}
	if digest.FromBytes(append(first, rest...)) != layer {
		t.Fatal("the pull in progress got wrong bytes")
	}
	if _, err := p.Store.StatBlob(context.Background(), layer); err != nil {
		t.Fatalf("a blob in use was deleted: %v", err)
	}
}

func TestGCBySizeEvictsAnIndexWithItsPlatforms(t *testing.T) {
	up := proxytest.NewUpstream(t)
	amd, arm := bigImage(t), bigImage(t)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	idxDigest := up.PushIndex(t, "team/multi:1", idx)
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := proxytest.Config(t, up)
	cfg.Storage.GC.Grace = time.Minute
	p := proxytest.Start(t, cfg, proxy.WithClock(clock))
	p.Gold.SetClock(clock)
	// The index, then each platform with its blobs, as a client pulling both would.
	mt := string(types.DockerManifestList)
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/multi/manifests/1", map[string]string{"Accept": mt}); resp.StatusCode != http.StatusOK {
		t.Fatalf("index: %d %s", resp.StatusCode, b)
	}
	for _, img := range []v1.Image{amd, arm} {
		d, _ := img.Digest()
		if err := pullAll(up.Name+"/team/multi@"+d.String(), p); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	blobs, _ := p.Store.Blobs(context.Background())
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	cfg.Storage.GC.MaxSize = config.ByteSize(total / 2) // only max_size: no age bound

	res, err := p.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Evicted) != 3 || res.DeletedBlobs != 4 || res.SizeAfter > int64(cfg.Storage.GC.MaxSize) {
		t.Fatalf("one collection: %+v", res)
	}
	for _, d := range []v1.Hash{idxDigest, mustDigest(t, amd), mustDigest(t, arm)} {
		if _, ok := p.Store.HasManifest(up.Name+"/team/multi", digest.Digest(d.String())); ok {
			t.Errorf("manifest %s is still stored", d)
		}
	}
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

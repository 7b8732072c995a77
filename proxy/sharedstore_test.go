package proxy_test

import (
	"net/http"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// TestPullOnS3AndPostgres: a proxy with blobs in S3 and metadata in PostgreSQL serves an
// image as pulled; a second proxy on the same bucket and database (its own data_dir)
// serves it again without asking the upstream for a manifest or a blob.
func TestPullOnS3AndPostgres(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	up.Push(t, "test/app:1", img)
	cfg := proxytest.Config(t, up)
	proxytest.SharedStorage(t, cfg)
	shared := func() *config.Config {
		c := proxytest.Config(t, up)
		c.Storage = cfg.Storage // the same bucket and database, another data_dir
		return c
	}
	a := proxytest.Start(t, shared())
	if err := proxytest.PullAll(a.Host, up.Name+"/test/app:1"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	manifests := up.Count(http.MethodGet, "/v2/test/app/manifests/1")
	b := proxytest.Start(t, shared())
	if err := proxytest.PullAll(b.Host, up.Name+"/test/app:1"); err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		if n := up.BlobGETs("test/app", d); n != 1 {
			t.Errorf("layer %s fetched %d times from the upstream, want once (the second proxy shares the store)", d, n)
		}
	}
	if n := up.Count(http.MethodGet, "/v2/test/app/manifests/1"); n != manifests {
		t.Errorf("the second proxy asked the upstream for the manifest again (%d → %d GETs)", manifests, n)
	}
}

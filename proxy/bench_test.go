package proxy_test

import (
	"io"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// benchImage pushes an image with one layer of size random bytes and returns the proxy
// URL of that layer and of the image's tag, both warmed by one pull.
func benchSetup(b *testing.B, size int) (blobURL, manifestURL string) {
	b.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	layer := static.NewLayer(data, types.DockerLayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.Fatal(err)
	}
	up := proxytest.NewUpstream(b)
	up.Push(b, "bench/big:1", img)
	p := proxytest.Start(b, proxytest.Config(b, up))
	ld, _ := layer.Digest()
	blobURL = p.URL + "/v2/" + up.Name + "/bench/big/blobs/" + ld.String()
	manifestURL = p.URL + "/v2/" + up.Name + "/bench/big/manifests/1"
	for _, u := range []string{manifestURL, blobURL} {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("warm-up %s: %d", u, resp.StatusCode)
		}
	}
	return blobURL, manifestURL
}

// BenchmarkWarmBlob256MiB is the throughput of serving a cached 256 MiB layer.
func BenchmarkWarmBlob256MiB(b *testing.B) {
	const size = 256 << 20
	blobURL, _ := benchSetup(b, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(blobURL)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != size {
			b.Fatalf("read %d bytes", n)
		}
	}
}

// BenchmarkWarmManifest is the latency of a manifest GET by tag answered from the cache
// (tag within its TTL, manifest and verdict stored).
func BenchmarkWarmManifest(b *testing.B) {
	_, manifestURL := benchSetup(b, 1<<10)
	req, _ := http.NewRequest(http.MethodGet, manifestURL, nil)
	req.Header.Set("Accept", string(types.DockerManifestSchema2))
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

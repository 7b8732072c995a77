package proxy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// tarOf is a layer tar with one file of size bytes from content.
func tarOf(t testing.TB, name string, size int64, content io.Reader) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, content, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func gzipLayer(t testing.TB, tarball_ []byte) v1.Layer {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarball_); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// diffIDScanner checks, as a scanner reads them, that every layer decompresses to the
// tar its config's diff ID names.
type diffIDScanner struct {
	calls atomic.Int64
	bad   atomic.Value
}

func (s *diffIDScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	s.calls.Add(1)
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		want, _ := l.DiffID()
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
			s.bad.Store(fmt.Sprintf("layer decompressed to %s, diff ID %s", got, want))
		}
	}
	return &gate.ScanResult{OS: "alpine 3.19.1", Report: []byte(`{"SchemaVersion":2}`), DBVersion: "test"}, nil
}

func TestLayerCompressionsAreRead(t *testing.T) {
	up := proxytest.NewUpstream(t)
	plain := tarOf(t, "etc/plain", 300<<10, rand.Reader)
	var zst bytes.Buffer
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(tarOf(t, "etc/zstd", 300<<10, rand.Reader))
	zw.Close()
	zstdLayer := static.NewLayer(zst.Bytes(), types.OCILayerZStd) // Compressed is the zstd stream
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zst.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	zdiff, err := zl.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, gzipLayer(t, tarOf(t, "etc/gzip", 300<<10, rand.Reader)), static.NewLayer(plain, types.OCIUncompressedLayer))
	img, err = mutate.Append(img, mutate.Addendum{Layer: diffIDLayer{zstdLayer, zdiff}, MediaType: types.OCILayerZStd})
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "test/mixed:1", img)
	sc := &diffIDScanner{}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()))
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/mixed/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("gzip + plain + zstd image: %d %s", resp.StatusCode, b)
	}
	if bad := sc.bad.Load(); bad != nil {
		t.Fatal(bad)
	}
	if sc.calls.Load() != 1 {
		t.Fatalf("%d scans", sc.calls.Load())
	}
}

// diffIDLayer gives a static layer (whose diff ID is its digest) the diff ID of the tar
// it compresses.
type diffIDLayer struct {
	v1.Layer
	diff v1.Hash
}

func (l diffIDLayer) DiffID() (v1.Hash, error) { return l.diff, nil }

func TestDecompressionBombIsRefused(t *testing.T) {
	up := proxytest.NewUpstream(t)
	bomb := imageOf(t, gzipLayer(t, tarOf(t, "var/lib/zeros", 100<<20, zeros{})))
	up.Push(t, "test/bomb:1", bomb)
	up.Push(t, "test/ok:1", randomImage(t, 2))
	cfg := proxytest.Config(t, up)
	cfg.Scan.OnScanError = "allow" // a limit is not a scan error: this does not let it through
	sc := &fakeScanner{}
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()))
	for range 2 {
		resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/bomb/manifests/1", nil)
		if resp.StatusCode != http.StatusForbidden || errCode(t, b) != "DENIED" {
			t.Fatalf("bomb: %d %s", resp.StatusCode, b)
		}
		for _, want := range []string{"decompression bomb", "limits.compression_ratio", "100 times its compressed size"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("denial lacks %q: %s", want, b)
			}
		}
		resp, _ = get(t, http.MethodHead, p.URL+"/v2/"+up.Name+"/test/bomb/manifests/1", nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("X-Goldproxy-Denied"), "limits.compression_ratio") {
			t.Fatalf("HEAD bomb: %d %q", resp.StatusCode, resp.Header.Get("X-Goldproxy-Denied"))
		}
	}
	if n := sc.calls.Load(); n != 1 {
		t.Errorf("the bomb was scanned %d times; a refusal is final", n)
	}
	if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/ok/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("ordinary image after the bomb: %d %s", resp.StatusCode, b)
	}
}

func TestUncompressedBytesLimits(t *testing.T) {
	up := proxytest.NewUpstream(t)
	big := imageOf(t, gzipLayer(t, tarOf(t, "opt/big", 2<<20, rand.Reader)))
	two := imageOf(t, gzipLayer(t, tarOf(t, "opt/a", 2<<20, rand.Reader)), gzipLayer(t, tarOf(t, "opt/b", 2<<20, rand.Reader)))
	up.Push(t, "test/big:1", big)
	up.Push(t, "test/two:1", two)
	up.Push(t, "test/small:1", randomImage(t, 3))
	for _, c := range []struct {
		name, repo, key string
		set             func(*config.Config)
	}{
		{"layer", "test/big", "limits.layer_uncompressed_bytes", func(c *config.Config) { c.Limits.LayerUncompressedBytes = 1 << 20 }},
		{"image", "test/two", "limits.image_uncompressed_bytes", func(c *config.Config) {
			c.Limits.LayerUncompressedBytes, c.Limits.ImageUncompressedBytes = 3<<20, 3<<20
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := proxytest.Config(t, up)
			c.set(cfg)
			p := proxytest.Start(t, cfg, proxy.WithScanner(&fakeScanner{}, policy.DefaultSet()))
			resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/"+c.repo+"/manifests/1", nil)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), c.key) || !strings.Contains(string(b), "expand") {
				t.Fatalf("%s: %d %s", c.repo, resp.StatusCode, b)
			}
			if resp, b := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/small/manifests/1", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("small image under the limits: %d %s", resp.StatusCode, b)
			}
		})
	}
}

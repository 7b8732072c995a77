package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// benchImage is shaped like an application image: the (fixed, so allowed) Alpine base,
// a layer of 2,000 npm packages and 500 Python distributions for the analyzers to find,
// and 64 MiB of other files. Each call is a new image.
//
// GOLDPROXY_BENCH_LAYER=<layer.tar.gz> replaces it with an image of that layer (a
// debootstrapped rootfs, say) and a small layer of its own, to profile a real image.
func benchImage(b *testing.B) v1.Image {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	if p := os.Getenv("GOLDPROXY_BENCH_LAYER"); p != "" {
		base, err := tarball.LayerFromOpener(saltedLayer(b, p, nonce))
		if err != nil {
			b.Fatal(err)
		}
		img, err := mutate.AppendLayers(empty.Image, base, scannertest.Layer(b, map[string][]byte{"app/.build-id": nonce}))
		if err != nil {
			b.Fatal(err)
		}
		return img
	}
	files := map[string][]byte{}
	for i := range 16 {
		buf := make([]byte, 4<<20)
		_, _ = rand.Read(buf)
		files[fmt.Sprintf("data/blob-%02d.bin", i)] = buf
	}
	pkgs := map[string][]byte{"app/.build-id": nonce} // no layer of one image is another's
	for i := range 2000 {
		pkgs[fmt.Sprintf("app/node_modules/pkg-%d/package.json", i)] = []byte(fmt.Sprintf(`{"name":"pkg-%d","version":"1.%d.0","license":"MIT"}`, i, i%50))
	}
	for i := range 500 {
		pkgs[fmt.Sprintf("usr/lib/python3.12/site-packages/dist%d-2.%d.0.dist-info/METADATA", i, i%30)] = []byte(fmt.Sprintf("Metadata-Version: 2.1\nName: dist%d\nVersion: 2.%d.0\nLicense: MIT\n", i, i%30))
	}
	img, err := mutate.AppendLayers(scannertest.AlpineImage(b, false), scannertest.Layer(b, pkgs), scannertest.Layer(b, files))
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// saltedLayer is the layer tarball at path (gzip or plain tar) with one more file holding
// salt, gzipped: a layer neither goldproxy nor Trivy's cache has seen.
func saltedLayer(b *testing.B, path string, salt []byte) tarball.Opener {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if zr, err := gzip.NewReader(f); err == nil {
		r = zr
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "etc/bench-salt", Mode: 0o644, Size: int64(len(salt)), Typeflag: tar.TypeReg}); err != nil {
		b.Fatal(err)
	}
	_, _ = tw.Write(salt)
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	raw := buf.Bytes()
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
}

func benchDB(b *testing.B) string {
	dir := filepath.Join(b.TempDir(), "db")
	scannertest.BuildDB(b, dir, time.Now())
	return dir
}

// benchGated starts an upstream and a gated goldproxy (fixture DB) for a benchmark.
func benchGated(b *testing.B) (*proxytest.Upstream, *app, string) {
	up := proxytest.NewUpstream(b)
	cfg := proxytest.Config(b, up)
	cfg.DB.Dir = benchDB(b)
	a, err := newApp(context.Background(), cfg, benchLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	if err := a.dbs.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(a.srv)
	b.Cleanup(srv.Close)
	return up, a, strings.TrimPrefix(srv.URL, "http://")
}

// BenchmarkColdPullGated: a never-seen image pulled through goldproxy, which ingests,
// scans and judges it before serving the manifest; then the client fetches the layers.
func BenchmarkColdPullGated(b *testing.B) {
	up, _, host := benchGated(b)
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		tag := fmt.Sprintf("bench/app:%d", i)
		up.Push(b, tag, benchImage(b))
		b.StartTimer()
		r, _ := name.ParseReference(host+"/"+up.Name+"/"+tag, name.Insecure)
		img, err := remote.Image(r)
		if err != nil {
			b.Fatal(err)
		}
		readLayers(b, img)
	}
}

// BenchmarkPullThenScan: the same image pulled directly from the upstream into a docker
// tarball (what `crane pull` does), then scanned by the library from the tarball, with a
// layer cache kept across iterations as goldproxy keeps its own.
func BenchmarkPullThenScan(b *testing.B) {
	up := proxytest.NewUpstream(b)
	db := scanner.NewDB()
	defer db.Close()
	if _, err := db.Load(benchDB(b), "bench"); err != nil {
		b.Fatal(err)
	}
	sc, err := scanner.New(filepath.Join(b.TempDir(), "cache"), db)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		tag := fmt.Sprintf("bench/app:%d", i)
		up.Push(b, tag, benchImage(b))
		path := filepath.Join(b.TempDir(), "image.tar")
		b.StartTimer()
		ref := up.Ref(b, tag)
		img, err := remote.Image(ref)
		if err != nil {
			b.Fatal(err)
		}
		if err := tarball.WriteToFile(path, ref, img); err != nil {
			b.Fatal(err)
		}
		timg, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sc.Scan(context.Background(), timg, ref.String()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWarmPullJudged: an image already judged is pulled again (manifest + layers).
func BenchmarkWarmPullJudged(b *testing.B) {
	up, a, host := benchGated(b)
	up.Push(b, "bench/app:1", benchImage(b))
	r, _ := name.ParseReference(host+"/"+up.Name+"/bench/app:1", name.Insecure)
	img, err := remote.Image(r)
	if err != nil {
		b.Fatal(err)
	}
	readLayers(b, img)
	scans := a.srv.Scans()
	for b.Loop() {
		img, err := remote.Image(r)
		if err != nil {
			b.Fatal(err)
		}
		readLayers(b, img)
	}
	if a.srv.Scans() != scans {
		b.Fatal("a warm pull scanned")
	}
}

func readLayers(b *testing.B, img v1.Image) {
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

func benchLogger() *slog.Logger {
	if os.Getenv("BENCH_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// BenchmarkReevaluate1000: 1,000 cached images (an Alpine base shared by all, one small
// layer of their own) re-evaluated after a DB swap. Reports seconds per re-evaluation,
// layer reads and upstream requests during it (both must be 0).
func BenchmarkReevaluate1000(b *testing.B) {
	const images = 1000
	up := proxytest.NewUpstream(b)
	base := scannertest.AlpineImage(b, false)
	refs := make([]string, images)
	for i := range images {
		img, err := mutate.AppendLayers(base, scannertest.Layer(b, map[string][]byte{"app/id": []byte(fmt.Sprint(i))}))
		if err != nil {
			b.Fatal(err)
		}
		tag := fmt.Sprintf("team/app:%d", i)
		up.Push(b, tag, img)
		refs[i] = up.Name + "/" + tag
	}
	v1 := b.TempDir()
	scannertest.BuildDB(b, v1, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	up.Push(b, "aquasecurity/trivy-db:2", scannertest.DBArtifact(b, v1))
	cfg := proxytest.Config(b, up)
	cfg.DB.Repository = up.Name + "/aquasecurity/trivy-db:2"
	cfg.Policy = filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(cfg.Policy, []byte(mediumPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	a, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if err := a.dbs.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, r := range a.srv.WarmAll(context.Background(), refs) {
		if r.Verdict != "allowed" {
			b.Fatalf("%s: %s %s", r.Ref, r.Verdict, r.Error)
		}
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		next := b.TempDir()
		var extra []string
		if i%2 == 0 { // alternate: add the advisory (all flip to denied), then drop it (all flip back)
			extra = append(extra, filepath.Join("testdata", "busybox-2023-42364.yaml"))
		}
		scannertest.BuildDB(b, next, time.Date(2026, 11, 24, 0, 0, i, 0, time.UTC), extra...)
		up.Push(b, "aquasecurity/trivy-db:2", scannertest.DBArtifact(b, next))
		reads := a.store.BlobReads()
		imageReqs := imageRequests(up)
		b.StartTimer()
		start := time.Now()
		res, err := a.updateDB(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		b.StopTimer()
		st := res.(map[string]any)["reevaluation"].(gate.ReevalStats)
		if st.Verdicts != images || st.Flipped != images || st.Failed != 0 {
			b.Fatalf("re-evaluation: %+v", st)
		}
		b.ReportMetric(el.Seconds(), "s/reevaluation")
		b.ReportMetric(float64(a.store.BlobReads()-reads), "layer-reads")
		b.ReportMetric(float64(imageRequests(up)-imageReqs), "upstream-image-requests")
		b.StartTimer()
	}
}

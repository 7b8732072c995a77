// Command pullbench pushes a benchmark image to a registry and times pulls of it through
// registry mirrors, for bench/compare.sh.
//
//	pullbench push --registry 127.0.0.1:5100 --repo bench/big --size 268435456
//	pullbench pull --mirror http://127.0.0.1:5101 --ns 127.0.0.1:5100 --repo bench/big --tag 1
//	pullbench mkdb --fixtures scanner/testdata/db --out /tmp/db
//	pullbench throttle --listen 127.0.0.1:5199 --target http://127.0.0.1:5100 --rate 20000000
//	pullbench load --mirror http://127.0.0.1:5101 --ns 127.0.0.1:5100 --repo bench/small --clients 50
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pullbench push|pull|mkdb|throttle|load [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "push":
		err = push(os.Args[2:])
	case "pull":
		err = pull(os.Args[2:])
	case "mkdb":
		err = mkdb(os.Args[2:])
	case "throttle":
		err = throttle(os.Args[2:])
	case "load":
		err = load(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pullbench:", err)
		os.Exit(1)
	}
}

func push(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	reg := fs.String("registry", "", "registry host:port (plain HTTP)")
	repo := fs.String("repo", "bench/big", "repository")
	tag := fs.String("tag", "1", "tag")
	size := fs.Int("size", 256<<20, "layer size in bytes")
	_ = fs.Parse(args)
	data := make([]byte, *size)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	// One uncompressed tar layer holding the data as a file: a real filesystem layer,
	// so goldproxy's gate can scan it, and no compression cost on either side.
	var tbuf bytes.Buffer
	tw := tar.NewWriter(&tbuf)
	if err := tw.WriteHeader(&tar.Header{Name: "data/blob.bin", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(tbuf.Bytes(), types.OCIUncompressedLayer))
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(*reg+"/"+*repo+":"+*tag, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img)
}

// mkdb builds a vulnerability DB from YAML advisory fixtures (scanner/testdata/db), so
// goldproxy's gate can judge the benchmark images offline.
func mkdb(args []string) error {
	fs := flag.NewFlagSet("mkdb", flag.ExitOnError)
	fixturesDir := fs.String("fixtures", "scanner/testdata/db", "directory of YAML fixtures")
	out := fs.String("out", "", "directory to write trivy.db and metadata.json to")
	_ = fs.Parse(args)
	files, err := filepath.Glob(filepath.Join(*fixturesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no fixtures in %s", *fixturesDir)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	l, err := fixtures.New(filepath.Join(*out, "trivy.db"), files)
	if err != nil {
		return err
	}
	if err := l.Load(); err != nil {
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}
	now := time.Now().UTC()
	meta, _ := json.Marshal(map[string]any{"Version": 2, "UpdatedAt": now, "NextUpdate": now.Add(24 * time.Hour), "DownloadedAt": now})
	return os.WriteFile(filepath.Join(*out, "metadata.json"), meta, 0o644)
}

type result struct {
	ColdPullSeconds    float64 `json:"cold_pull_seconds"`
	WarmBlobMBps       float64 `json:"warm_blob_mbps"`
	WarmManifestMicros float64 `json:"warm_manifest_us"`
	LayerBytes         int64   `json:"layer_bytes"`
}

// pull times: one cold pull (manifest, config, layers), then warm layer GETs (best of
// runs) and warm manifest GETs (median).
func pull(args []string) error {
	fs := flag.NewFlagSet("pull", flag.ExitOnError)
	mirror := fs.String("mirror", "", "mirror base URL")
	ns := fs.String("ns", "", "upstream host sent as ?ns= (containerd style); empty for none")
	repo := fs.String("repo", "bench/big", "repository")
	tag := fs.String("tag", "1", "tag")
	runs := fs.Int("runs", 5, "warm blob runs")
	mruns := fs.Int("manifest-runs", 500, "warm manifest runs")
	_ = fs.Parse(args)
	q := ""
	if *ns != "" {
		q = "?ns=" + *ns
	}
	accept := string(types.DockerManifestSchema2) + "," + string(types.OCIManifestSchema1)
	get := func(path string) (http.Header, int64, error) {
		req, _ := http.NewRequest(http.MethodGet, *mirror+"/v2/"+*repo+path+q, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return nil, n, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, n, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return resp.Header, n, nil
	}
	getManifest := func() (map[string]any, error) {
		req, _ := http.NewRequest(http.MethodGet, *mirror+"/v2/"+*repo+"/manifests/"+*tag+q, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("manifest: %s", resp.Status)
		}
		var m map[string]any
		return m, json.NewDecoder(resp.Body).Decode(&m)
	}
	start := time.Now()
	m, err := getManifest()
	if err != nil {
		return err
	}
	var blobs []string
	blobs = append(blobs, m["config"].(map[string]any)["digest"].(string))
	for _, l := range m["layers"].([]any) {
		blobs = append(blobs, l.(map[string]any)["digest"].(string))
	}
	var layerBytes int64
	for _, b := range blobs {
		_, n, err := get("/blobs/" + b)
		if err != nil {
			return err
		}
		layerBytes = n
	}
	res := result{ColdPullSeconds: time.Since(start).Seconds(), LayerBytes: layerBytes}
	layer := blobs[len(blobs)-1]
	best := time.Duration(1 << 62)
	for range *runs {
		t := time.Now()
		if _, _, err := get("/blobs/" + layer); err != nil {
			return err
		}
		best = min(best, time.Since(t))
	}
	res.WarmBlobMBps = float64(layerBytes) / 1e6 / best.Seconds()
	lat := make([]time.Duration, 0, *mruns)
	for range *mruns {
		t := time.Now()
		if _, err := getManifest(); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.WarmManifestMicros = float64(lat[len(lat)/2].Microseconds())
	return json.NewEncoder(os.Stdout).Encode(res)
}

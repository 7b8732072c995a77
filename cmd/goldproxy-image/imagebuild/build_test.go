package imagebuild

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

var (
	firstOnce sync.Once
	first     *Result
	firstErr  error
)

// created is the SOURCE_DATE_EPOCH both builds use.
var created = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

func testOptions(t *testing.T) Options {
	t.Helper()
	if _, err := os.Stat(DefaultCACerts); err != nil {
		if os.Getenv("GOLDPROXY_E2E") == "1" {
			t.Fatalf("GOLDPROXY_E2E=1 but %s is missing (.ci/setup installs ca-certificates)", DefaultCACerts)
		}
		t.Skipf("needs Debian's ca-certificates (%s); .ci/setup installs it", DefaultCACerts)
	}
	return Options{Source: filepath.Join("..", "..", ".."), Platforms: []string{"linux/amd64"}, Created: created, Version: "v0.0.0-test", WorkDir: t.TempDir()}
}

// sharedDir holds the shared build's binary and layers for the whole test run (a test's
// TempDir goes when that test ends, and the image reads its layer from there).
var sharedDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "imagebuild-test-")
	if err != nil {
		panic(err)
	}
	sharedDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// built is the first build, shared by the tests (a goldproxy link takes a while).
func built(t *testing.T) *Result {
	t.Helper()
	o := testOptions(t)
	o.WorkDir = sharedDir
	firstOnce.Do(func() { first, firstErr = Build(context.Background(), o) })
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return first
}

func sha(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReproducibleBuild builds the image twice from one commit with one
// SOURCE_DATE_EPOCH (each build runs go build into its own directory) and gets the same
// index digest, the same layout index.json and the same OCI archive bytes.
func TestReproducibleBuild(t *testing.T) {
	a := built(t)
	b, err := Build(context.Background(), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if a.Binaries["amd64"] == b.Binaries["amd64"] {
		t.Fatal("the second build reused the first binary")
	}
	if sha(t, a.Binaries["amd64"]) != sha(t, b.Binaries["amd64"]) {
		t.Fatal("go build gave two different binaries")
	}
	da, _ := a.Index.Digest()
	db, _ := b.Index.Digest()
	if da != db {
		ma, _ := a.Index.RawManifest()
		mb, _ := b.Index.RawManifest()
		t.Fatalf("index digests differ: %s vs %s\n%s\n%s", da, db, ma, mb)
	}
	var tars []string
	for i, r := range []*Result{a, b} {
		dir := filepath.Join(t.TempDir(), "oci")
		if _, err := WriteLayout(dir, r, nil); err != nil {
			t.Fatal(err)
		}
		tp := filepath.Join(t.TempDir(), "goldproxy.oci.tar")
		if err := WriteTarball(tp, dir, r.Options.Created); err != nil {
			t.Fatal(err)
		}
		tars = append(tars, sha(t, tp))
		// The layout reads back as the same index.
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		ii, _ := p.ImageIndex()
		im, _ := ii.IndexManifest()
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != da || im.Manifests[0].Annotations[RefNameAnnotation] != "v0.0.0-test" {
			t.Fatalf("layout %d index.json: %+v", i, im.Manifests)
		}
	}
	if tars[0] != tars[1] {
		t.Fatal("the two OCI archives differ")
	}
	t.Logf("index %s, archive sha256:%s", da, tars[0])
}

// fileList lists the image's filesystem as "mode uid path" lines.
func fileList(t *testing.T, img v1.Image) []string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%04o %d %s", h.Mode, h.Uid, "/"+strings.TrimSuffix(h.Name, "/")))
	}
}

// TestImageContents lists the built image's filesystem: exactly the binary, the user
// database, the CA bundle and the empty /tmp, /data and home: no shell, no package
// manager. The config runs as 65532 with the OCI labels, and the binary stamps the
// commit and the Trivy version into `goldproxy version`.
func TestImageContents(t *testing.T) {
	r := built(t)
	img := r.Images["amd64"]
	files := fileList(t, img)
	t.Logf("filesystem:\n%s", strings.Join(files, "\n"))
	var paths []string
	for _, f := range files {
		paths = append(paths, f[strings.LastIndex(f, " ")+1:])
	}
	want := []string{"/data", "/etc", "/etc/group", "/etc/passwd", "/etc/ssl", "/etc/ssl/certs", "/etc/ssl/certs/ca-certificates.crt",
		"/home", "/home/nonroot", "/tmp", "/usr", "/usr/bin", "/usr/bin/goldproxy"}
	if !slices.Equal(paths, want) {
		t.Fatalf("filesystem:\n%s\nwant paths %v", strings.Join(files, "\n"), want)
	}
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/busybox"} {
		if slices.Contains(paths, sh) {
			t.Fatalf("image has %s", sh)
		}
	}
	if !slices.Contains(files, "0750 65532 /data") || !slices.Contains(files, "0755 0 /usr/bin/goldproxy") {
		t.Fatalf("owners or modes:\n%s", strings.Join(files, "\n"))
	}
	// --rootfs (what the Dockerfile copies) holds the same files with the same modes.
	rootfs := t.TempDir()
	if err := WriteRootFS(rootfs, r.Options, r.Binaries["amd64"]); err != nil {
		t.Fatal(err)
	}
	var tree []string
	_ = filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == rootfs {
			return err
		}
		fi, _ := d.Info()
		mode := fi.Mode().Perm()
		if fi.Mode()&os.ModeSticky != 0 {
			mode |= 0o1000
		}
		tree = append(tree, fmt.Sprintf("%04o %s", uint32(mode), strings.TrimPrefix(p, rootfs)))
		return nil
	})
	var want2 []string
	for _, f := range files {
		mode, rest, _ := strings.Cut(f, " ")
		_, path, _ := strings.Cut(rest, " ")
		want2 = append(want2, mode+" "+path)
	}
	if !slices.Equal(tree, want2) {
		t.Errorf("--rootfs tree:\n%s\nwant:\n%s", strings.Join(tree, "\n"), strings.Join(want2, "\n"))
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(created) {
		t.Fatalf("config: user %q %s/%s created %s", cf.Config.User, cf.OS, cf.Architecture, cf.Created)
	}
	for _, k := range []string{"source", "version", "revision", "created"} {
		if cf.Config.Labels["org.opencontainers.image."+k] == "" {
			t.Errorf("label org.opencontainers.image.%s missing: %v", k, cf.Config.Labels)
		}
	}
	if cf.Config.Labels["org.opencontainers.image.revision"] != r.Options.Revision || len(r.Options.Revision) != 40 {
		t.Errorf("revision label %q", cf.Config.Labels["org.opencontainers.image.revision"])
	}

	// The binary in the image: static (it runs here) and stamped.
	out, err := exec.Command(r.Binaries["amd64"], "version", "--db-dir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("goldproxy version: %v\n%s", err, out)
	}
	mod, _ := os.ReadFile(filepath.Join("..", "..", "..", "go.mod"))
	trivy := regexp.MustCompile(`(?m)^\s*github\.com/aquasecurity/trivy (v\S+)`).FindSubmatch(mod)
	for _, w := range []string{"goldproxy v0.0.0-test\n", "commit:     " + r.Options.Revision + "\n", "built:      2026-04-01T12:00:00Z\n", "trivy:      " + string(trivy[1]) + "\n"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("goldproxy version lacks %q:\n%s", w, out)
		}
	}
	if ldd, err := exec.Command("file", r.Binaries["amd64"]).Output(); err == nil && !strings.Contains(string(ldd), "statically linked") {
		t.Errorf("not static: %s", ldd)
	}
}

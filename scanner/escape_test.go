package scanner_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// hostileLayer is a layer tar of the given headers (regular files get content).
func hostileLayer(t *testing.T, hdrs []tar.Header, content map[string]string) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		c := content[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(c))
		}
		h.Mode = 0o755
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if c != "" {
			if _, err := io.WriteString(tw, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A layer with paths that climb out of the image and links that point at the host's
// files: the scan reads and writes nothing outside the image. A vulnerable apk database
// planted on the host, which an escaping link points at, must not be found.
func TestTarTraversalAndLinkEscapes(t *testing.T) {
	s := newScanner(t)
	host := t.TempDir()
	planted := filepath.Join(host, "installed")
	if err := os.WriteFile(planted, []byte("P:hostpkg\nV:1.0-r0\nA:x86_64\no:openssl\nT:x\n\nP:libcrypto3\nV:3.1.4-r2\nA:x86_64\no:openssl\nT:x\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	escapeDir := filepath.Join(host, "escaped")
	rel, _ := filepath.Rel("/", escapeDir)
	climb := strings.Repeat("../", 20) + rel
	hostile := hostileLayer(t, []tar.Header{
		{Name: climb + "/written-by-a-scan", Typeflag: tar.TypeReg},
		{Name: "/" + rel + "/absolute", Typeflag: tar.TypeReg},
		{Name: "lib/apk/db/installed", Typeflag: tar.TypeSymlink, Linkname: planted},
		{Name: "etc/shadow-link", Typeflag: tar.TypeLink, Linkname: strings.Repeat("../", 20) + "etc/shadow"},
		{Name: "usr/bin/escape", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../bin/bash"},
		{Name: "usr/bin/..", Typeflag: tar.TypeReg},
	}, map[string]string{climb + "/written-by-a-scan": "x", "/" + rel + "/absolute": "x", "usr/bin/..": "x"})
	// On an Alpine base without that apk database: what the image has is only its own.
	base := scannertest.AlpineImage(t, false)
	img, err := mutate.AppendLayers(base, hostile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Scan(context.Background(), img, "r.test/hostile:1")
	if err != nil {
		t.Fatalf("scan of a hostile layer: %v", err)
	}
	if _, err := os.Stat(escapeDir); !os.IsNotExist(err) {
		t.Fatalf("a scan wrote outside the image: %s (%v)", escapeDir, err)
	}
	for _, r := range res.Report.Results {
		for _, p := range r.Packages {
			if p.Name == "hostpkg" {
				t.Fatalf("the scan followed a link to the host and read %s: %+v", planted, p)
			}
		}
		for _, v := range r.Vulnerabilities {
			if v.InstalledVersion == "3.1.4-r2" {
				t.Fatalf("finding from the host's planted database: %s %s", v.VulnerabilityID, v.PkgName)
			}
		}
	}
	if !slices.Contains(res.Executables, "usr/bin/escape") {
		t.Errorf("the link in usr/bin is an executable entry of the image: %v", res.Executables)
	}
}

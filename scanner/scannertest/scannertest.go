// Package scannertest builds what scanner tests need: a Trivy vulnerability DB from the
// YAML advisory records in scanner/testdata/db, and images carrying real package
// databases in the formats their tools write (an apk installed file, a dpkg status file
// or status.d, an rpm database and Red Hat build info, a Go binary's build info, a
// cargo-auditable section, npm, pip, gem and .NET metadata, an SPDX document), one image
// per family the gate must judge as `trivy image` does.
// It does not import Trivy, so tests outside scanner/ can use it cheaply.
package scannertest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	fixtures "github.com/aquasecurity/bolt-fixtures"
	javadb "github.com/aquasecurity/trivy-java-db/pkg/db"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fixturesDir is scanner/testdata/db, found from this file's location.
func fixturesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "db")
}

// BuildDB writes trivy.db (from every YAML file in scanner/testdata/db plus extra YAML
// files) and metadata.json (schema version 2, updated at updatedAt) into dir.
func BuildDB(t testing.TB, dir string, updatedAt time.Time, extra ...string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixturesDir(), "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no DB fixtures in %s: %v", fixturesDir(), err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := fixtures.New(filepath.Join(dir, "trivy.db"), append(files, extra...))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(map[string]any{"Version": 2, "NextUpdate": updatedAt.Add(24 * time.Hour), "UpdatedAt": updatedAt, "DownloadedAt": updatedAt})
	if err := os.WriteFile(filepath.Join(dir, "metadata.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
}

// DBArtifact packs a DB directory as the Trivy DB OCI artifact (one tar+gzip layer).
func DBArtifact(t testing.TB, dir string) v1.Image {
	return packArtifact(t, dir, []string{"trivy.db", "metadata.json"}, "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip")
}

// JavaDBArtifact packs dir/java-db (from BuildJavaDB) as the Trivy Java DB OCI artifact.
func JavaDBArtifact(t testing.TB, dir string) v1.Image {
	return packArtifact(t, filepath.Join(dir, "java-db"), []string{"trivy-java.db", "metadata.json"}, "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip")
}

func packArtifact(t testing.TB, dir string, files []string, mediaType types.MediaType) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(b)
	}
	tw.Close()
	gz.Close()
	layer := static.NewLayer(buf.Bytes(), mediaType)
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(img, "application/vnd.aquasec.trivy.config.v1+json")
}

// Layer is a gzipped tar layer of files; files under a bin/ directory are executable.
func Layer(t testing.TB, files map[string][]byte) v1.Layer {
	return LayerWithLinks(t, files, nil)
}

// LayerWithLinks is Layer plus symbolic links (path → target).
func LayerWithLinks(t testing.TB, files map[string][]byte, links map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	lnames := make([]string, 0, len(links))
	for n := range links {
		lnames = append(lnames, n)
	}
	sort.Strings(lnames)
	for _, n := range lnames {
		if err := tw.WriteHeader(&tar.Header{Name: n, Linkname: links[n], Mode: 0o777, Typeflag: tar.TypeSymlink, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.Contains("/"+n, "/bin/") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

func image(t testing.TB, files map[string][]byte) v1.Image {
	return imageWith(t, files, nil, "")
}

// imageWith builds a one-layer linux/amd64 image with files, links and a config User.
func imageWith(t testing.TB, files map[string][]byte, links map[string]string, user string) v1.Image {
	t.Helper()
	layer := LayerWithLinks(t, files, links)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = user
	cf.Created = v1.Time{Time: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func apkEntry(name, version, origin string) string {
	return "P:" + name + "\nV:" + version + "\nA:x86_64\nL:GPL-2.0-only\no:" + origin + "\nT:" + name + "\n\n"
}

// AlpineImage is an Alpine 3.19 image. Vulnerable: libcrypto3/libssl3 3.1.4-r2 (openssl:
// CVE-2024-5535 CRITICAL, CVE-2024-6119 HIGH, CVE-2024-0727 MEDIUM, all fixed) and busybox
// 1.36.1-r15 (CVE-2023-42363 MEDIUM). Otherwise the fixed versions.
func AlpineImage(t testing.TB, vulnerable bool) v1.Image {
	ssl, bb := "3.1.7-r0", "1.36.1-r16"
	if vulnerable {
		ssl, bb = "3.1.4-r2", "1.36.1-r15"
	}
	installed := apkEntry("busybox", bb, "busybox") + apkEntry("libcrypto3", ssl, "openssl") + apkEntry("libssl3", ssl, "openssl") + apkEntry("musl", "1.2.4_git20230717-r4", "musl")
	// As alpine:3.19 is: root user, busybox with /bin/sh linked to it, apk in /sbin.
	return imageWith(t, map[string][]byte{
		"etc/alpine-release":   []byte("3.19.1\n"),
		"etc/os-release":       []byte("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n"),
		"lib/apk/db/installed": []byte(installed),
		"bin/busybox":          []byte("\x7fELF busybox"),
		"sbin/apk":             []byte("\x7fELF apk"),
	}, map[string]string{"bin/sh": "/bin/busybox"}, "")
}

func dpkgEntry(name, source, version string) string {
	return "Package: " + name + "\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 1000\nMaintainer: Debian <debian@example.org>\nArchitecture: amd64\nSource: " + source + "\nVersion: " + version + "\nDescription: " + name + "\n"
}

// DebianImage is a Debian 12 image with libc6 2.36-9+deb12u1 (glibc: CVE-2023-4911 HIGH,
// fixed) and libssl3 3.0.11-1~deb12u2 (openssl: CVE-2024-6119 HIGH, fixed). With
// distroless, the packages are in var/lib/dpkg/status.d/ as distroless images keep them.
func DebianImage(t testing.TB, distroless bool) v1.Image {
	files := map[string][]byte{
		"etc/debian_version": []byte("12.2\n"),
		"etc/os-release":     []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"),
	}
	libc, ssl := dpkgEntry("libc6", "glibc", "2.36-9+deb12u1"), dpkgEntry("libssl3", "openssl", "3.0.11-1~deb12u2")
	if distroless {
		// As distroless base is: no shell, no package manager, user nonroot.
		files["var/lib/dpkg/status.d/libc6"] = []byte(libc)
		files["var/lib/dpkg/status.d/libssl3"] = []byte(ssl)
		return imageWith(t, files, nil, "65532")
	}
	// As debian:12 is: merged /usr (bin -> usr/bin), dash as sh, dpkg and apt, root.
	files["var/lib/dpkg/status"] = []byte(libc + "\n" + ssl)
	files["usr/bin/dash"] = []byte("\x7fELF dash")
	files["usr/bin/dpkg"] = []byte("\x7fELF dpkg")
	files["usr/bin/apt"] = []byte("\x7fELF apt")
	return imageWith(t, files, map[string]string{"bin": "usr/bin", "usr/bin/sh": "dash"}, "")
}

// GoBinaryImage is a scratch image holding a Go binary built with golang.org/x/text
// v0.3.6 (CVE-2021-38561 and CVE-2022-32149, both HIGH and fixed). The build uses the Go
// module proxy the first time.
func GoBinaryImage(t testing.TB) v1.Image { return GoToolchainBinaryImage(t, "") }

// GoToolchainBinaryImage is GoBinaryImage built with another Go toolchain (GOTOOLCHAIN,
// e.g. "go1.22.12", fetched from the Go module proxy the first time): its standard
// library is then that release's ("stdlib" v1.22.12 in Trivy's terms). Empty: the
// toolchain running the test.
func GoToolchainBinaryImage(t testing.TB, toolchain string) v1.Image {
	t.Helper()
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/app\n\ngo 1.22\n\nrequire golang.org/x/text v0.3.6\n")
	write("main.go", "package main\n\nimport (\n\t\"fmt\"\n\n\t\"golang.org/x/text/language\"\n)\n\nfunc main() { fmt.Println(language.English) }\n")
	bin := filepath.Join(dir, "app")
	for _, args := range [][]string{{"mod", "download", "golang.org/x/text@v0.3.6"}, {"mod", "tidy"}, {"build", "-trimpath", "-o", bin, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOWORK=off")
		if toolchain != "" {
			// An older toolchain knows none of this one's GOEXPERIMENTs (jsonv2).
			cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+toolchain, "GOEXPERIMENT=")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return image(t, map[string][]byte{"usr/bin/app": b})
}

// BuildJavaDB writes an empty-index Java DB (schema version 1) under dir/java-db, as
// the trivy-java-db artifact unpacks: enough for Trivy to identify JAR files by their
// pom.properties.
func BuildJavaDB(t testing.TB, dir string) {
	t.Helper()
	d, err := javadb.New(filepath.Join(dir, "java-db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	meta, _ := json.Marshal(map[string]any{"Version": 1, "NextUpdate": now.Add(72 * time.Hour), "UpdatedAt": now, "DownloadedAt": now})
	if err := os.WriteFile(filepath.Join(dir, "java-db", "metadata.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
}

// JavaImage is the fixed Alpine image plus app/log4j-core-2.14.1.jar (CVE-2021-44228,
// CRITICAL, fixed in 2.15.0), identified by its pom.properties.
func JavaImage(t testing.TB) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n"))
	m, _ := zw.Create("META-INF/MANIFEST.MF")
	_, _ = m.Write([]byte("Manifest-Version: 1.0\nImplementation-Title: Apache Log4j Core\nImplementation-Version: 2.14.1\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(AlpineImage(t, false), Layer(t, map[string][]byte{"app/log4j-core-2.14.1.jar": buf.Bytes()}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// AppImage is a scratch-like image with an npm package (lodash 4.17.20: CVE-2021-23337
// HIGH, fixed 4.17.21) and a Python distribution (requests 2.28.0: CVE-2023-32681
// MEDIUM, fixed 2.31.0), as installed by npm and pip.
func AppImage(t testing.TB) v1.Image {
	return image(t, map[string][]byte{
		"app/node_modules/lodash/package.json":                                []byte(`{"name":"lodash","version":"4.17.20","license":"MIT"}`),
		"usr/lib/python3.12/site-packages/requests-2.28.0.dist-info/METADATA": []byte("Metadata-Version: 2.1\nName: requests\nVersion: 2.28.0\nLicense: Apache 2.0\n"),
	})
}

// UBIImage is a UBI 9 (RHEL 9.3) image whose RPM database (scanner/testdata/rpm,
// sqlite backend as RHEL 9 keeps it) holds openssl-libs 1:3.0.7-24.el9, bash
// 5.1.8-6.el9_1 and microdnf 3.9.1-3.el9, Red Hat's. It has no content manifest, so Trivy
// matches it with the RHEL 9 default content sets (baseos, appstream): CVE-2023-5678 in
// openssl-libs (LOW, fixed in 1:3.0.7-27.el9) in the test DB.
func UBIImage(t testing.TB) v1.Image { return ubiImage(t, nil) }

// BitnamiImage is a Bitnami-style image: redis 7.2.4 built from source under
// opt/bitnami/redis, known only from the SPDX document Bitnami ships beside it
// (opt/bitnami/redis/.spdx-redis.spdx, pkg:bitnami/redis@7.2.4: CVE-2024-31449 HIGH,
// fixed in 7.2.6). No package manager knows it.
func BitnamiImage(t testing.TB) v1.Image {
	spdx := `{
  "SPDXID": "SPDXRef-DOCUMENT",
  "spdxVersion": "SPDX-2.3",
  "creationInfo": {"created": "2024-02-09T12:00:00Z", "creators": ["Organization: VMware, Inc."]},
  "name": "SPDX document for Redis 7.2.4",
  "dataLicense": "CC0-1.0",
  "documentDescribes": ["SPDXRef-redis"],
  "documentNamespace": "redis-7.2.4",
  "packages": [{
    "SPDXID": "SPDXRef-redis",
    "name": "redis",
    "versionInfo": "7.2.4",
    "downloadLocation": "https://download.redis.io/releases/redis-7.2.4.tar.gz",
    "licenseConcluded": "BSD-3-Clause",
    "licenseDeclared": "BSD-3-Clause",
    "filesAnalyzed": false,
    "externalRefs": [
      {"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": "cpe:2.3:*:redis:redis:7.2.4:*:*:*:*:*:*:*"},
      {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": "pkg:bitnami/redis@7.2.4?arch=amd64&distro=debian-12"}
    ]
  }],
  "files": [],
  "relationships": []
}`
	return image(t, map[string][]byte{
		"opt/bitnami/redis/.spdx-redis.spdx": []byte(spdx),
		"opt/bitnami/redis/bin/redis-server": []byte("\x7fELF redis-server"),
	})
}

// RPMFileImage is the fixed Alpine image plus a package file lying in it,
// srv/repo/simple-1.0.1-1.i386.rpm (scanner/testdata/rpm): downloaded, not installed.
func RPMFileImage(t testing.TB) v1.Image {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixturesDir(), "..", "rpm", "simple-1.0.1-1.i386.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(AlpineImage(t, false), Layer(t, map[string][]byte{"srv/repo/simple-1.0.1-1.i386.rpm": b}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// ConfigFilesImage is the fixed Alpine image plus files Trivy's misconfiguration
// analyzers read: a .travis.yml, a Dockerfile that runs as root from a latest tag, and
// a Kubernetes Deployment of a privileged container.
func ConfigFilesImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(AlpineImage(t, false), Layer(t, map[string][]byte{
		"app/.travis.yml": []byte("language: go\ngo:\n  - 1.22\nscript: go test ./...\n"),
		"app/Dockerfile":  []byte("FROM alpine:latest\nRUN apk add curl\nADD . /app\nCMD [\"/app/run\"]\n"),
		"app/deploy/deployment.yaml": []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: app:latest
          securityContext:
            privileged: true
`),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

package scanner_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

func newScanner(t *testing.T) *scanner.Scanner {
	t.Helper()
	s, _ := newScannerDB(t, time.Now())
	return s
}

// newScannerDB is a scanner over a test DB built at updatedAt, and that DB.
func newScannerDB(t *testing.T, updatedAt time.Time) (*scanner.Scanner, *scanner.DB) {
	t.Helper()
	dbDir := filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, dbDir, updatedAt)
	db := scanner.NewDB()
	if _, err := db.Load(dbDir, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := scanner.New(filepath.Join(t.TempDir(), "cache"), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, db
}

// findings lists "CVE pkg" pairs of a scan.
func findings(t *testing.T, s *scanner.Scanner, img v1.Image) []string {
	t.Helper()
	res, err := s.Scan(context.Background(), img, "r.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res.Report.Results {
		for _, v := range r.Vulnerabilities {
			out = append(out, v.VulnerabilityID+" "+v.PkgName+" "+v.Severity)
		}
	}
	slices.Sort(out)
	return out
}

func TestDetectsPackagesAndVulnerabilities(t *testing.T) {
	s := newScanner(t)
	for _, tc := range []struct {
		name string
		img  v1.Image
		want []string
	}{
		{"alpine apk vulnerable", scannertest.AlpineImage(t, true), []string{
			"CVE-2023-42363 busybox MEDIUM", "CVE-2024-0727 libcrypto3 MEDIUM", "CVE-2024-0727 libssl3 MEDIUM",
			"CVE-2024-5535 libcrypto3 CRITICAL", "CVE-2024-5535 libssl3 CRITICAL", "CVE-2024-6119 libcrypto3 HIGH", "CVE-2024-6119 libssl3 HIGH"}},
		{"alpine apk fixed", scannertest.AlpineImage(t, false), nil},
		{"debian dpkg status", scannertest.DebianImage(t, false), []string{"CVE-2023-4911 libc6 HIGH", "CVE-2024-6119 libssl3 HIGH"}},
		{"distroless dpkg status.d", scannertest.DebianImage(t, true), []string{"CVE-2023-4911 libc6 HIGH", "CVE-2024-6119 libssl3 HIGH"}},
		{"go binary build info", scannertest.GoBinaryImage(t), []string{"CVE-2021-38561 golang.org/x/text HIGH", "CVE-2022-32149 golang.org/x/text HIGH"}},
		{"npm and pip packages", scannertest.AppImage(t), []string{"CVE-2021-23337 lodash HIGH", "CVE-2023-32681 requests MEDIUM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := findings(t, s, tc.img); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("found %v, want %v", got, tc.want)
			}
		})
	}
}

// countingImage counts reads of its layers' content.
type countingImage struct {
	v1.Image
	reads *atomic.Int64
}

type countingLayer struct {
	v1.Layer
	reads *atomic.Int64
}

// readLog, when set, hears the digest of every layer read.
var readLog func(v1.Hash)

func (l *countingLayer) count() {
	l.reads.Add(1)
	if d, _ := l.Digest(); readLog != nil {
		readLog(d)
	}
}

func (l *countingLayer) Compressed() (io.ReadCloser, error) {
	l.count()
	return l.Layer.Compressed()
}
func (l *countingLayer) Uncompressed() (io.ReadCloser, error) {
	l.count()
	return l.Layer.Uncompressed()
}

func (i countingImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	for n := range ls {
		ls[n] = &countingLayer{ls[n], i.reads}
	}
	return ls, err
}

func (i countingImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDiffID(h)
	return &countingLayer{l, i.reads}, err
}

func (i countingImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	return &countingLayer{l, i.reads}, err
}

func TestLayerAnalysisIsCached(t *testing.T) {
	s := newScanner(t)
	base := scannertest.AlpineImage(t, true)
	reads := &atomic.Int64{}
	first := findings(t, s, countingImage{base, reads})
	baseLayers, _ := base.Layers()
	if n := reads.Load(); n != int64(len(baseLayers)) {
		t.Fatalf("the first scan opened layers %d times, want each of the %d once", n, len(baseLayers))
	}
	if n := s.Walks(); n != 0 {
		t.Fatalf("%d layers were decompressed a second time for their bin directories", n)
	}
	reads.Store(0)
	if again := findings(t, s, countingImage{base, reads}); strings.Join(again, ",") != strings.Join(first, ",") {
		t.Fatalf("re-detection differs: %v vs %v", again, first)
	}
	if n := reads.Load(); n != 0 {
		t.Fatalf("re-detection read %d layers, want 0", n)
	}
	// An image built on the same base reads only its own new layer.
	newLayer := scannertest.Layer(t, map[string][]byte{"app/config.txt": []byte("x")})
	derived, err := mutate.AppendLayers(base, newLayer)
	if err != nil {
		t.Fatal(err)
	}
	newDigest, _ := newLayer.Digest()
	var mu sync.Mutex
	read := map[v1.Hash]bool{}
	readLog = func(d v1.Hash) { mu.Lock(); read[d] = true; mu.Unlock() }
	defer func() { readLog = nil }()
	findings(t, s, countingImage{derived, reads})
	if len(read) != 1 || !read[newDigest] {
		t.Fatalf("derived image read layers %v, want only the new one %s (the shared base is cached)", read, newDigest)
	}
}

type noNetwork struct{ t *testing.T }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("a scan made a network call: %s %s", r.Method, r.URL)
	return nil, errors.New("network calls are not allowed during a scan")
}

func TestExecutables(t *testing.T) {
	s := newScanner(t)
	for _, tc := range []struct {
		name string
		img  v1.Image
		want []string
	}{
		{"alpine: busybox, sh link, apk", scannertest.AlpineImage(t, false), []string{"bin/busybox", "bin/sh", "sbin/apk"}},
		{"debian: merged /usr", scannertest.DebianImage(t, false), []string{"bin/apt", "bin/dash", "bin/dpkg", "bin/sh", "usr/bin/apt", "usr/bin/dash", "usr/bin/dpkg", "usr/bin/sh"}},
		{"distroless: none", scannertest.DebianImage(t, true), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Scan(context.Background(), tc.img, "r.test/a:1")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(res.Executables, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("executables %v, want %v", res.Executables, tc.want)
			}
		})
	}
	// A later layer that removes the shell (whiteout) leaves none.
	removed, err := mutate.AppendLayers(scannertest.AlpineImage(t, false),
		scannertest.Layer(t, map[string][]byte{"bin/.wh.sh": nil, "bin/.wh.busybox": nil}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Scan(context.Background(), removed, "r.test/a:2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Executables, ",") != "sbin/apk" {
		t.Fatalf("after whiteouts: %v", res.Executables)
	}
	// Whiting out a whole bin directory removes what is in it.
	noSbin, err := mutate.AppendLayers(scannertest.AlpineImage(t, false), scannertest.Layer(t, map[string][]byte{".wh.sbin": nil}))
	if err != nil {
		t.Fatal(err)
	}
	if res, err = s.Scan(context.Background(), noSbin, "r.test/a:3"); err != nil || strings.Join(res.Executables, ",") != "bin/busybox,bin/sh" {
		t.Fatalf("after removing sbin: %v (%v)", res.Executables, err)
	}
}

func TestRPMPackages(t *testing.T) {
	s := newScanner(t)
	res, err := s.Scan(context.Background(), scannertest.UBIImage(t), "registry.access.redhat.com/ubi9/ubi:9.3")
	if err != nil {
		t.Fatal(err)
	}
	os := res.Report.Metadata.OS
	if os == nil || string(os.Family) != "redhat" || os.Name != "9.3" {
		t.Fatalf("OS %+v", os)
	}
	var pkgs []string
	for _, r := range res.Report.Results {
		for _, p := range r.Packages {
			pkgs = append(pkgs, p.Name+"-"+p.Version+"-"+p.Release)
		}
	}
	slices.Sort(pkgs)
	if strings.Join(pkgs, ",") != "bash-5.1.8-6.el9_1,microdnf-3.9.1-3.el9,openssl-libs-3.0.7-24.el9" {
		t.Fatalf("rpm packages %v", pkgs)
	}
	if strings.Join(res.Executables, ",") != "usr/bin/bash,usr/bin/microdnf" {
		t.Fatalf("executables %v", res.Executables)
	}
}

func TestJarFiles(t *testing.T) {
	s := newScanner(t)
	img := scannertest.JavaImage(t)
	// Without a Java DB, JAR files are left out, the scan still works and says so.
	if got := findings(t, s, img); len(got) != 0 {
		t.Fatalf("without a Java DB: %v", got)
	}
	res, err := s.Scan(context.Background(), img, "r.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if res.UnanalysedJARs != 1 || res.DB.Java {
		t.Fatalf("without a Java DB: %d unanalysed JAR files (Java DB %v), want 1", res.UnanalysedJARs, res.DB.Java)
	}
	dir := t.TempDir()
	scannertest.BuildJavaDB(t, dir)
	if err := s.DB().LoadJava(dir); err != nil {
		t.Fatal(err)
	}
	if got := findings(t, s, img); strings.Join(got, ",") != "CVE-2021-44228 org.apache.logging.log4j:log4j-core CRITICAL" {
		t.Fatalf("with a Java DB: %v", got)
	}
	if res, err = s.Scan(context.Background(), img, "r.test/app:1"); err != nil || res.UnanalysedJARs != 0 {
		t.Fatalf("with a Java DB: %d unanalysed JAR files (%v), want 0", res.UnanalysedJARs, err)
	}
	if err := s.DB().LoadJava(t.TempDir()); err == nil {
		t.Fatal("an empty Java DB directory was accepted")
	}
}

func TestScanMakesNoNetworkCall(t *testing.T) {
	s := newScanner(t)
	saved := http.DefaultTransport
	http.DefaultTransport = noNetwork{t}
	defer func() { http.DefaultTransport = saved }()
	for _, img := range []v1.Image{scannertest.AlpineImage(t, true), scannertest.DebianImage(t, true)} {
		if len(findings(t, s, img)) == 0 {
			t.Fatal("nothing found")
		}
	}
}

func TestDBLifecycle(t *testing.T) {
	db := scanner.NewDB()
	defer db.Close()
	s, err := scanner.New(filepath.Join(t.TempDir(), "cache"), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Scan(context.Background(), scannertest.AlpineImage(t, true), "r.test/a:1"); !errors.Is(err, scanner.ErrNoDB) {
		t.Fatalf("scan without a DB: %v", err)
	}
	if s.Ready() == nil {
		t.Fatal("ready without a DB")
	}
	// Corrupt and mismatched DBs are rejected.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "metadata.json"), []byte(`{"Version":2}`), 0o644)
	os.WriteFile(filepath.Join(bad, "trivy.db"), []byte("not a bolt file"), 0o644)
	if _, err := db.Load(bad, "test"); err == nil {
		t.Fatal("corrupt DB accepted")
	}
	old := t.TempDir()
	scannertest.BuildDB(t, old, time.Now())
	os.WriteFile(filepath.Join(old, "metadata.json"), []byte(`{"Version":1}`), 0o644)
	if _, err := db.Load(old, "test"); err == nil || !strings.Contains(err.Error(), "schema version 1") {
		t.Fatalf("old schema: %v", err)
	}

	// Fetched from an OCI repository through an upstream, validated, loaded.
	up := proxytest.NewUpstream(t)
	good := t.TempDir()
	updated := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	scannertest.BuildDB(t, good, updated)
	if err := remote.Write(up.Ref(t, "aquasecurity/trivy-db:2"), scannertest.DBArtifact(t, good)); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(up.Host+"/aquasecurity/trivy-db:2", name.Insecure)
	dir, err := scanner.Fetch(context.Background(), ref, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	info, err := db.Load(dir, ref.String())
	if err != nil {
		t.Fatal(err)
	}
	if !info.UpdatedAt.Equal(updated) || info.Version != 2 {
		t.Fatalf("loaded %+v", info)
	}
	if _, err := db.Load(bad, "test"); err == nil {
		t.Fatal("corrupt DB replaced a good one")
	}
	if cur, err := db.Info(); err != nil || cur.Dir != dir {
		t.Fatalf("after a rejected load the good DB must stay: %+v %v", cur, err)
	}
	if _, err := s.Scan(context.Background(), scannertest.AlpineImage(t, true), "r.test/a:1"); err != nil {
		t.Fatalf("scan with the fetched DB: %v", err)
	}
}

// blockingLayer is a layer whose content can be read only once gate is closed: a scan
// of an image holding it stays in its analysis until the test lets it go on.
type blockingLayer struct {
	v1.Layer
	gate    chan struct{}
	reached func()
}

func (l *blockingLayer) wait() {
	l.reached()
	<-l.gate
}

func (l *blockingLayer) Compressed() (io.ReadCloser, error) { l.wait(); return l.Layer.Compressed() }
func (l *blockingLayer) Uncompressed() (io.ReadCloser, error) {
	l.wait()
	return l.Layer.Uncompressed()
}

// A DB swap while a long scan is analysing its layers neither waits for that scan nor
// holds new scans behind it: another image is scanned meanwhile.
func TestDBSwapDuringALongScan(t *testing.T) {
	s, db := newScannerDB(t, time.Now().Add(-time.Hour))

	gate, reached := make(chan struct{}), make(chan struct{})
	var once sync.Once
	bl := &blockingLayer{Layer: scannertest.Layer(t, map[string][]byte{"srv/data.txt": []byte("slow")}), gate: gate,
		reached: func() { once.Do(func() { close(reached) }) }}
	slow, err := mutate.AppendLayers(scannertest.AlpineImage(t, true), bl)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		res *scanner.Result
		err error
	}
	slowDone := make(chan result, 1)
	go func() {
		res, err := s.Scan(context.Background(), slow, "r.test/slow:1")
		slowDone <- result{res, err}
	}()
	<-reached // the slow scan is reading its layers

	next := filepath.Join(t.TempDir(), "db2")
	scannertest.BuildDB(t, next, time.Now())
	swapped := make(chan error, 1)
	go func() { _, err := db.Load(next, "test2"); swapped <- err }()
	select {
	case err := <-swapped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		close(gate)
		t.Fatal("the DB swap waited for a scan that was analysing its layers")
	}
	other := make(chan result, 1)
	debian := scannertest.DebianImage(t, false)
	go func() {
		res, err := s.Scan(context.Background(), debian, "r.test/other:1")
		other <- result{res, err}
	}()
	select {
	case r := <-other:
		if r.err != nil {
			t.Fatal(r.err)
		}
		var got []string
		for _, res := range r.res.Report.Results {
			for _, v := range res.Vulnerabilities {
				got = append(got, v.VulnerabilityID+" "+v.PkgName)
			}
		}
		slices.Sort(got)
		if strings.Join(got, ",") != "CVE-2023-4911 libc6,CVE-2024-6119 libssl3" {
			t.Fatalf("scan during the slow one found %v", got)
		}
	case <-time.After(60 * time.Second):
		close(gate)
		t.Fatal("a new scan waited behind the slow one")
	}
	close(gate)
	r := <-slowDone
	if r.err != nil {
		t.Fatal(r.err)
	}
	info, _ := db.Info()
	if r.res.DB.ID() != info.ID() {
		t.Fatalf("the slow scan detected with %s, want the DB loaded when it detected (%s)", r.res.DB.ID(), info.ID())
	}
}

// An SBOM shipped in an image (as Bitnami ships one per component) is read, as
// `trivy image` reads it, and what it lists is detected.
func TestEmbeddedSBOM(t *testing.T) {
	s := newScanner(t)
	if got := findings(t, s, scannertest.BitnamiImage(t)); strings.Join(got, ",") != "CVE-2024-31449 redis HIGH" {
		t.Fatalf("found %v, want CVE-2024-31449 in redis from opt/bitnami/redis/.spdx-redis.spdx", got)
	}
	// Control: with the SBOM analyzer off (as the gate had it), redis is unknown.
	withoutSBOM := func(java bool) artifact.Option {
		o := scanner.ArtifactOption(java)
		o.DisabledAnalyzers = append(o.DisabledAnalyzers, analyzer.TypeSBOM)
		return o
	}
	res, err := s.ScanWith(context.Background(), scannertest.BitnamiImage(t), "r.test/app:1", withoutSBOM)
	if err != nil {
		t.Fatal(err)
	}
	if got := packages(res); len(got) != 0 {
		t.Fatalf("without the SBOM analyzer: packages %v", got)
	}
	// A file that only looks like an SBOM is skipped, as by `trivy image`: the scan
	// still finds the rest.
	broken, err := mutate.AppendLayers(scannertest.AlpineImage(t, true),
		scannertest.Layer(t, map[string][]byte{"app/bom.cdx.json": []byte("{not json"), "app/.spdx-x.spdx": []byte("garbage")}))
	if err != nil {
		t.Fatal(err)
	}
	if got := findings(t, s, broken); len(got) != 7 {
		t.Fatalf("with broken SBOM files: %v", got)
	}
}

// packages lists "name-version" of every package a scan reports.
func packages(res *scanner.Result) []string {
	var out []string
	for _, r := range res.Report.Results {
		for _, p := range r.Packages {
			out = append(out, p.Name+"-"+p.Version)
		}
	}
	slices.Sort(out)
	return out
}

// A *.rpm file lying in an image is not installed: it is no package of the image, as
// for `trivy image` (whose RPM archive analyzer is off unless
// TRIVY_EXPERIMENTAL_RPM_ARCHIVE is set).
func TestRPMFileIsNoPackage(t *testing.T) {
	s := newScanner(t)
	img := scannertest.RPMFileImage(t)
	res, err := s.Scan(context.Background(), img, "r.test/a:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(packages(res), ","); got != "busybox-1.36.1-r16,libcrypto3-3.1.7-r0,libssl3-3.1.7-r0,musl-1.2.4_git20230717-r4" {
		t.Fatalf("packages %v", got)
	}
	// Control: with the RPM archive analyzer on, the file is a package.
	withRPMArchive := func(java bool) artifact.Option {
		o := scanner.ArtifactOption(java)
		o.DisabledAnalyzers = slices.DeleteFunc(o.DisabledAnalyzers, func(a analyzer.Type) bool { return a == analyzer.TypeRpmArchive })
		return o
	}
	res, err = s.ScanWith(context.Background(), img, "r.test/a:1", withRPMArchive)
	if err != nil {
		t.Fatal(err)
	}
	if got := packages(res); !slices.Contains(got, "simple-1.0.1") {
		t.Fatalf("with the RPM archive analyzer: packages %v, want simple-1.0.1 among them", got)
	}
}

// Config files in an image (.travis.yml, a Dockerfile, a Kubernetes manifest) are not
// analysed for misconfigurations, as `trivy image --scanners vuln` leaves them.
func TestConfigFilesAreNotAnalysed(t *testing.T) {
	s := newScanner(t)
	img := scannertest.ConfigFilesImage(t)
	misconfigs := func(res *scanner.Result) int {
		n := 0
		for _, r := range res.Report.Results {
			n += len(r.Misconfigurations)
		}
		blobs, err := s.Blobs(context.Background(), res.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blobs {
			n += len(b.Misconfigurations)
		}
		return n
	}
	res, err := s.Scan(context.Background(), img, "r.test/a:1")
	if err != nil {
		t.Fatal(err)
	}
	if n := misconfigs(res); n != 0 {
		t.Fatalf("%d misconfiguration results in the report and layer analysis", n)
	}
	// Control: with the config analyzers on (as before), the layer analysis has them.
	withConfig := func(java bool) artifact.Option {
		o := scanner.ArtifactOption(java)
		o.DisabledAnalyzers = slices.DeleteFunc(o.DisabledAnalyzers, func(a analyzer.Type) bool { return slices.Contains(analyzer.TypeConfigFiles, a) })
		return o
	}
	res, err = s.ScanWith(context.Background(), img, "r.test/a:1", withConfig)
	if err != nil {
		t.Fatal(err)
	}
	if misconfigs(res) == 0 {
		t.Fatal("with the config analyzers on, no misconfiguration was analysed: the control proves nothing")
	}
}

// The JAR files a scan without a Java DB counts are those of the image as run: every
// archive Trivy's JAR analyzer would read (.jar, .war, .ear, .par, any case), regular
// files only, after later layers remove some.
func TestUnanalysedJARs(t *testing.T) {
	s := newScanner(t)
	jar := []byte("PK\x05\x06" + strings.Repeat("\x00", 18)) // an empty zip
	img, err := mutate.AppendLayers(scannertest.AlpineImage(t, false),
		scannertest.LayerWithLinks(t, map[string][]byte{
			"app/lib/a.jar":         jar,
			"app/lib/b.JAR":         jar,
			"app/lib/gone.jar":      jar,
			"srv/web.war":           jar,
			"srv/app.ear":           jar,
			"opt/tool/tool.par":     jar,
			"opt/old/lib/x.jar":     jar,
			"opt/opaque/y.jar":      jar,
			"app/lib/notes.jar.txt": []byte("not an archive"),
			"app/lib/manifest.jarx": []byte("not an archive"),
		}, map[string]string{"app/current.jar": "lib/a.jar"}),
		scannertest.Layer(t, map[string][]byte{
			"app/lib/.wh.gone.jar":    nil, // one file removed
			"opt/.wh.old":             nil, // a directory removed
			"opt/opaque/.wh..wh..opq": nil, // a directory replaced
			"opt/opaque/z.ear":        jar,
		}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Scan(context.Background(), img, "r.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	// a.jar, b.JAR, web.war, app.ear, tool.par, z.ear; not the link, the removed ones or
	// the look-alikes.
	if res.UnanalysedJARs != 6 {
		t.Fatalf("%d unanalysed JAR files, want 6", res.UnanalysedJARs)
	}
	// A second scan takes the count from the layer facts cache.
	if res, err = s.Scan(context.Background(), img, "r.test/app:1"); err != nil || res.UnanalysedJARs != 6 {
		t.Fatalf("cached: %d unanalysed JAR files (%v), want 6", res.UnanalysedJARs, err)
	}
}

// A scan's key records what analysed the image: a key from other analyzers (an older
// goldproxy, another selection, the Java DB since loaded) asks for a new scan rather
// than a re-detection from the old analysis.
func TestNeedsAnalysis(t *testing.T) {
	s := newScanner(t)
	img := scannertest.JavaImage(t)
	res, err := s.Scan(context.Background(), img, "r.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Key.Analysis == "" || s.NeedsAnalysis(res.Key) {
		t.Fatalf("a fresh scan's key %+v needs analysis", res.Key)
	}
	old := res.Key
	old.Analysis = ""
	if !s.NeedsAnalysis(old) {
		t.Fatal("a key without its analysis recorded (made before it was) does not need analysis")
	}
	withoutSBOM := func(java bool) artifact.Option {
		o := scanner.ArtifactOption(java)
		o.DisabledAnalyzers = append(o.DisabledAnalyzers, analyzer.TypeSBOM)
		return o
	}
	other, err := s.ScanWith(context.Background(), img, "r.test/app:1", withoutSBOM)
	if err != nil {
		t.Fatal(err)
	}
	if !s.NeedsAnalysis(other.Key) {
		t.Fatal("a key made by other analyzers does not need analysis")
	}
	dir := t.TempDir()
	scannertest.BuildJavaDB(t, dir)
	if err := s.DB().LoadJava(dir); err != nil {
		t.Fatal(err)
	}
	if !s.NeedsAnalysis(res.Key) {
		t.Fatal("an analysis without JAR files does not need analysis once a Java DB is loaded")
	}
	if res, err = s.Scan(context.Background(), img, "r.test/app:1"); err != nil || s.NeedsAnalysis(res.Key) {
		t.Fatalf("after a new scan with the Java DB: %v, needs analysis %v", err, s.NeedsAnalysis(res.Key))
	}
}

package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/storage"
)

// status GETs a manifest through the proxy and returns the status and body.
func status(t *testing.T, p *proxytest.Proxy, path string) (int, string) {
	t.Helper()
	resp, body := get(t, http.MethodGet, p.URL+"/v2/"+path, nil)
	return resp.StatusCode, string(body)
}

// vulnImage is a new image the fake scanner reports opensslVulns for.
func vulnImage(t *testing.T, sc *fakeScanner) v1.Image {
	t.Helper()
	img := randomImage(t, 1)
	cfg, _ := img.ConfigName()
	sc.mu.Lock()
	if sc.vulns == nil {
		sc.vulns = map[v1.Hash][]policy.Vulnerability{}
	}
	sc.vulns[cfg] = opensslVulns
	sc.mu.Unlock()
	return img
}

// One digest held by two repositories is judged for each of them: what the policy says
// of one repository never leaks to the other, whichever is pulled first.
func TestJudgementIsPerRepository(t *testing.T) {
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	for _, tc := range []struct {
		name, policy string
		allowed      string // the repository that is served; "other" is denied
	}{
		{"exception narrowed to a repository", strictYAML + fmt.Sprintf(`exceptions:
  - id: CVE-2023-5363
    reason: not reachable in this service
    expires: 2099-12-31
    repositories: ["%s/excepted/*"]
`, up.Name), "excepted"},
		{"scopes with different policies", strictYAML + strings.TrimPrefix(looseYAML, "policies:\n") + fmt.Sprintf(`default: strict
scopes:
  - match: ["%s/lenient/**"]
    policy: loose
`, up.Name), "lenient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, mustSet(t, tc.policy)))
			for i, order := range [][]string{{tc.allowed, "other"}, {"other", tc.allowed}} {
				img := vulnImage(t, sc)
				app := fmt.Sprintf("/app%d%d", len(tc.name), i)
				d := up.Push(t, order[0]+app+":1", img)
				up.Push(t, order[1]+app+":1", img)
				before := sc.calls.Load()
				for _, repo := range order {
					code, body := status(t, p, up.Name+"/"+repo+app+"/manifests/1")
					want := http.StatusForbidden
					if repo == tc.allowed {
						want = http.StatusOK
					}
					if code != want {
						t.Fatalf("order %v: %s: %d, want %d: %s", order, repo, code, want, body)
					}
					if code == http.StatusForbidden && !strings.Contains(body, up.Name+"/"+repo+app+":1 ("+d.String()+")") {
						t.Errorf("the denial does not name the repository asked for (%s@%s): %s", repo, d, body)
					}
				}
				// Again, by digest, now that both are judged: still each its own.
				for _, repo := range order {
					code, _ := status(t, p, up.Name+"/"+repo+app+"/manifests/"+d.String())
					if (code == http.StatusOK) != (repo == tc.allowed) {
						t.Fatalf("order %v: %s by digest: %d", order, repo, code)
					}
				}
				if n := sc.calls.Load() - before; n != 1 {
					t.Fatalf("order %v: %d scans of one digest, want 1", order, n)
				}
			}
		})
	}
}

// pinned: true is a judgement of the reference asked for: by digest allowed, by tag
// denied, whichever comes first.
func TestPinnedIsJudgedPerReference(t *testing.T) {
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, mustSet(t, "policies:\n  - name: pinned\n    pinned: true\n")))
	for i, digestFirst := range []bool{true, false} {
		img := randomImage(t, 1)
		repo := fmt.Sprintf("team/pinned%d", i)
		d := up.Push(t, repo+":1", img)
		byTag := func() {
			code, body := status(t, p, up.Name+"/"+repo+"/manifests/1")
			if code != http.StatusForbidden || !strings.Contains(body, `rule \"pinned\"`) || !strings.Contains(body, up.Name+"/"+repo+"@"+d.String()) {
				t.Fatalf("digest first %v: by tag: %d %s", digestFirst, code, body)
			}
		}
		byDigest := func() {
			if code, body := status(t, p, up.Name+"/"+repo+"/manifests/"+d.String()); code != http.StatusOK {
				t.Fatalf("digest first %v: by digest: %d %s", digestFirst, code, body)
			}
		}
		if digestFirst {
			byDigest()
			byTag()
			byDigest()
		} else {
			byTag()
			byDigest()
			byTag()
		}
	}
	if n := sc.calls.Load(); n != 2 {
		t.Fatalf("%d scans, want 2", n)
	}
}

// The report, the verdict API and the dashboard name the repository they are read for.
func TestReportsAndDashboardNameTheRepositoryAsked(t *testing.T) {
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, mustSet(t, strictYAML+fmt.Sprintf(
		"exceptions:\n  - id: CVE-2023-5363\n    reason: test\n    expires: 2099-12-31\n    repositories: [\"%s/team/a\"]\n", up.Name))))
	img := vulnImage(t, sc)
	d := up.Push(t, "team/a:1", img)
	up.Push(t, "team/b:2", img)
	if code, body := status(t, p, up.Name+"/team/a/manifests/1"); code != http.StatusOK {
		t.Fatalf("a: %d %s", code, body)
	}
	code, body := status(t, p, up.Name+"/team/b/manifests/2")
	if code != http.StatusForbidden {
		t.Fatalf("b: %d", code)
	}
	report := gate.ReportPath(up.Name+"/team/b", d.String())
	if !strings.Contains(body, report) {
		t.Fatalf("denial does not link b's report %s: %s", report, body)
	}
	resp, rb := get(t, http.MethodGet, p.URL+report, nil)
	var r struct{ ArtifactName string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(rb, &r) != nil || r.ArtifactName != up.Name+"/team/b@"+d.String() {
		t.Fatalf("report: %d %s", resp.StatusCode, rb)
	}
	resp, md := get(t, http.MethodGet, p.URL+report+"&format=md", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(md), "# "+up.Name+"/team/b") || !strings.Contains(string(md), "DENIED") {
		t.Fatalf("markdown report: %d %s", resp.StatusCode, md)
	}
	var v admin.VerdictDetail
	resp, vb := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/verdict?repository="+up.Name+"/team/a", nil)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(vb, &v) != nil || v.Repository != up.Name+"/team/a" || v.State != "allowed" || len(v.Judgements) != 2 {
		t.Fatalf("verdict of a: %d %s", resp.StatusCode, vb)
	}
	var list struct{ Images []admin.ImageSummary }
	resp, lb := get(t, http.MethodGet, p.URL+"/api/v1/images", nil)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(lb, &list) != nil {
		t.Fatalf("images: %d %s", resp.StatusCode, lb)
	}
	got := map[string]string{}
	for _, s := range list.Images {
		got[s.Repository] = s.Verdict
	}
	if got[up.Name+"/team/a"] != "allowed" || got[up.Name+"/team/b"] != "denied" {
		t.Fatalf("dashboard rows: %v", got)
	}
	resp, ui := get(t, http.MethodGet, p.URL+"/ui/", nil)
	page := string(ui)
	rowB := page[strings.Index(page, "<td>"+up.Name+"/team/b</td>"):]
	rowB = rowB[:strings.Index(rowB, "</tr>")]
	if resp.StatusCode != http.StatusOK || !strings.Contains(rowB, "badge-denied") || !strings.Contains(strings.ToLower(rowB), strings.ToLower("?repository="+url.QueryEscape(up.Name+"/team/b"))) {
		t.Fatalf("dashboard row of b: %s", rowB)
	}
}

// Whether to scan is decided from the whole manifest: renaming an image's config type
// does not make it skip the scan.
func TestRenamedConfigTypeIsScanned(t *testing.T) {
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()))
	img := vulnImage(t, sc)
	img = mutate.ConfigMediaType(img, "application/vnd.example.not-a-config+json")
	up.Push(t, "team/sneaky:1", img)
	code, body := status(t, p, up.Name+"/team/sneaky/manifests/1")
	if code != http.StatusForbidden || !strings.Contains(body, "CVE-2023-5363") {
		t.Fatalf("renamed config type: %d %s", code, body)
	}
	if n := sc.calls.Load(); n != 1 {
		t.Fatalf("%d scans, want 1", n)
	}
}

// readyScanner cannot scan until its DB is "loaded".
type readyScanner struct {
	*fakeScanner
	ready atomic.Bool
}

func (r *readyScanner) Ready() error {
	if !r.ready.Load() {
		return errors.New("no usable vulnerability DB is loaded")
	}
	return nil
}

func (r *readyScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	if err := r.Ready(); err != nil {
		return nil, err
	}
	return r.fakeScanner.Scan(ctx, img, ref)
}

func factsOf(t *testing.T, p *proxytest.Proxy, d v1.Hash) gate.Facts {
	t.Helper()
	b, err := p.Store.Verdict(digest.Digest(d.String()))
	if err != nil {
		t.Fatal(err)
	}
	var f gate.Facts
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// A scan a restart interrupted is done again once the DB is in, never judged "error"
// for lack of one.
func TestRestartRescanWaitsForTheDB(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	d := up.Push(t, "team/app:1", img)
	cfg := proxytest.Config(t, up)
	cfg.Scan.Wait = 200 * time.Millisecond
	sc := &fakeScanner{block: make(chan struct{})}
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()))
	if code, _ := status(t, p, up.Name+"/team/app/manifests/1"); code != http.StatusServiceUnavailable {
		t.Fatalf("mid-scan: %d", code)
	}
	p.Close() // the scan never finishes
	close(sc.block)

	rs := &readyScanner{fakeScanner: &fakeScanner{}}
	p2 := proxytest.Start(t, cfg, proxy.WithScanner(rs, policy.DefaultSet()))
	time.Sleep(300 * time.Millisecond) // the DB is still loading
	if f := factsOf(t, p2, d); f.State != "pending" || rs.calls.Load() != 0 {
		t.Fatalf("before the DB: facts %q, %d scans; want pending and 0", f.State, rs.calls.Load())
	}
	rs.ready.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for factsOf(t, p2, d).State == "pending" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f := factsOf(t, p2, d); f.State != "scanned" {
		t.Fatalf("after the DB: facts %q (%s)", f.State, f.Error)
	}
	if code, body := status(t, p2, up.Name+"/team/app/manifests/"+d.String()); code != http.StatusOK {
		t.Fatalf("after rescan: %d %s", code, body)
	}
	if n := rs.calls.Load(); n != 1 {
		t.Fatalf("%d scans after restart, want 1", n)
	}
}

// redetectScanner re-detects with a DB version the test sets, and can cancel the
// re-evaluation that calls it after a number of calls.
type redetectScanner struct {
	*fakeScanner
	version   atomic.Value
	redetects atomic.Int64
	cancelAt  int64
	cancel    context.CancelFunc
}

func (r *redetectScanner) DBVersion() (string, error) { return r.version.Load().(string), nil }

func (r *redetectScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	res, err := r.fakeScanner.Scan(ctx, img, ref)
	if res != nil {
		res.DBVersion, res.Key = r.version.Load().(string), json.RawMessage(`{}`)
	}
	return res, err
}

func (r *redetectScanner) Redetect(ctx context.Context, key, report json.RawMessage) (*gate.ScanResult, error) {
	if n := r.redetects.Add(1); n == r.cancelAt && r.cancel != nil {
		r.cancel()
	}
	return &gate.ScanResult{DBVersion: r.version.Load().(string), Report: report}, nil
}

// A re-evaluation cancelled half way is finished by the next one with the same DB:
// what was done is not done again, what was left is.
func TestReevaluationResumes(t *testing.T) {
	up := proxytest.NewUpstream(t)
	cfg := proxytest.Config(t, up)
	cfg.Scan.Workers = 1
	rs := &redetectScanner{fakeScanner: &fakeScanner{}, cancelAt: 3}
	rs.version.Store("v1")
	p := proxytest.Start(t, cfg, proxy.WithScanner(rs, policy.DefaultSet()))
	const images = 6
	for i := range images {
		up.Push(t, fmt.Sprintf("team/app%d:1", i), randomImage(t, 1))
		if err := pullAll(fmt.Sprintf("%s/team/app%d:1", up.Name, i), p); err != nil {
			t.Fatal(err)
		}
	}
	current := func() (facts, judgements int) {
		_ = p.Store.Verdicts(func(_ digest.Digest, b []byte) error {
			var f gate.Facts
			if json.Unmarshal(b, &f) == nil && f.DBVersion == "v2" {
				facts++
			}
			return nil
		})
		_ = p.Store.Judgements(func(_ string, _ digest.Digest, b []byte) error {
			var j gate.Judgement
			if json.Unmarshal(b, &j) == nil && j.DBVersion == "v2" {
				judgements++
			}
			return nil
		})
		return facts, judgements
	}
	rs.version.Store("v2") // the DB swap
	ctx, cancel := context.WithCancel(context.Background())
	rs.cancel = cancel
	if _, err := p.Gold.Reevaluate(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled re-evaluation: %v", err)
	}
	f, j := current()
	if f != 3 || j != 3 {
		t.Fatalf("after the cancelled run: %d facts and %d judgements on the new DB, want 3 and 3", f, j)
	}
	st, err := p.Gold.Reevaluate(context.Background()) // the next start or refresh, same DB
	if err != nil {
		t.Fatal(err)
	}
	if f, j := current(); f != images || j != images {
		t.Fatalf("after the next run: %d facts and %d judgements on the new DB, want %d", f, j, images)
	}
	if st.Verdicts != images-3 || st.Current != 3 || rs.redetects.Load() != images {
		t.Fatalf("second run redid %d (with %d current), %d redetections in all: want %d, 3, %d", st.Verdicts, st.Current, rs.redetects.Load(), images-3, images)
	}
	if st, err := p.Gold.Reevaluate(context.Background()); err != nil || st.Verdicts != 0 {
		t.Fatalf("a third run found %d stale (%v)", st.Verdicts, err)
	}
}

// Close stops an ingest in progress and returns after it: nothing is written after it.
func TestCloseStopsIngest(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := bigImage(t)
	d := up.Push(t, "team/app:1", img)
	layer := layerOf(t, img)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	resume := func() { once.Do(func() { close(release) }) }
	defer resume()
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
			return false
		}
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		close(started)
		select { // the rest comes when the test says so
		case <-release:
			_, _ = io.CopyN(w, strings.NewReader(strings.Repeat("x", 999000)), 999000)
		case <-r.Context().Done():
		}
		return true
	})
	cfg := proxytest.Config(t, up)
	cfg.Scan.Wait = 100 * time.Millisecond
	p := proxytest.Start(t, cfg, proxy.WithScanner(&fakeScanner{}, policy.DefaultSet()))
	go func() { _, _ = http.Get(p.URL + "/v2/" + up.Name + "/team/app/manifests/1") }()
	<-started
	closed := make(chan struct{})
	go func() { p.Gold.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return while an ingest was running")
	}
	snapshot := func() string {
		blobs, _ := p.Store.Blobs(context.Background())
		b, _ := p.Store.Verdict(digest.Digest(d.String()))
		var f gate.Facts
		_ = json.Unmarshal(b, &f)
		return fmt.Sprintf("%d blobs, facts %q", len(blobs), f.State)
	}
	after := snapshot()
	if !strings.Contains(after, `"pending"`) {
		t.Fatalf("after Close: %s, want the scan left pending for the next start", after)
	}
	resume() // the upstream would now finish the transfer
	time.Sleep(300 * time.Millisecond)
	if now := snapshot(); now != after {
		t.Fatalf("written after Close: %s, then %s", after, now)
	}
	if _, err := p.Store.StatBlob(context.Background(), layer); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the interrupted layer is in the store: %v", err)
	}
}

// A collection while a scan reads an image deletes nothing the scan reads.
func TestGCDuringScanKeepsWhatTheScanReads(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	up.Push(t, "team/app:1", img)
	cfg := proxytest.Config(t, up)
	cfg.Storage.GC.Grace = 0
	cfg.Scan.Wait = time.Minute
	sc := &fakeScanner{block: make(chan struct{})}
	p := proxytest.Start(t, cfg, proxy.WithScanner(sc, policy.DefaultSet()))
	done := make(chan error, 1)
	go func() { done <- pullAll(up.Name+"/team/app:1", p) }()
	layers, _ := img.Layers()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		blobs, _ := p.Store.Blobs(context.Background())
		if sc.calls.Load() == 1 && len(blobs) == len(layers)+1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg.Storage.GC.MaxSize = 1 // evict everything it can
	res, err := p.Gold.GC(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Evicted) != 0 || res.DeletedBlobs != 0 {
		t.Fatalf("gc during the scan removed %v and %d blobs", res.Evicted, res.DeletedBlobs)
	}
	close(sc.block)
	if err := <-done; err != nil {
		t.Fatalf("pull after gc during its scan: %v", err)
	}
}

// The classification of manifests the gate does not scan, and how artifacts are served:
// with the image they belong to, when it is allowed in that repository.
func TestArtifactsAreServedWithTheirSubject(t *testing.T) {
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc,
		mustSet(t, strictYAML+"    artifacts: [\"application/vnd.cyclonedx+json\"]\n")))
	good, bad := randomImage(t, 1), vulnImage(t, sc)
	goodD := up.Push(t, "team/app:good", good)
	badD := up.Push(t, "team/app:bad", bad)
	for _, tag := range []string{"good", "bad"} { // the images are pulled (and judged) first
		_, _ = status(t, p, up.Name+"/team/app/manifests/"+tag)
	}
	subjectOf := func(img v1.Image) v1.Descriptor {
		d, _ := img.Digest()
		mt, _ := img.MediaType()
		sz, _ := img.Size()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: sz}
	}
	n := 0
	unique := func() string { n++; return fmt.Sprintf(`{"n":%d}`, n) }
	sig := func(subject *v1.Descriptor) v1.Image { // cosign's simple signing payload
		s := mutate.MediaType(randomImage(t, 0), types.OCIManifestSchema1)
		s, _ = mutate.Append(s, mutate.Addendum{Layer: staticLayer(t, unique(), "application/vnd.dev.cosign.simplesigning.v1+json")})
		if subject != nil {
			s = mutate.Subject(s, *subject).(v1.Image)
		}
		return s
	}
	bundle := func(subject v1.Descriptor) v1.Image { // a Sigstore bundle stored as a referrer
		b := mutate.ConfigMediaType(mutate.MediaType(randomImage(t, 0), types.OCIManifestSchema1), "application/vnd.oci.empty.v1+json")
		b, _ = mutate.Append(b, mutate.Addendum{Layer: staticLayer(t, unique(), "application/vnd.dev.sigstore.bundle.v0.3+json")})
		return mutate.Subject(b, subject).(v1.Image)
	}
	standalone := func(artifactType string) v1.Image {
		a := mutate.ConfigMediaType(mutate.MediaType(randomImage(t, 0), types.OCIManifestSchema1), types.MediaType(artifactType))
		a, _ = mutate.Append(a, mutate.Addendum{Layer: staticLayer(t, unique(), artifactType)})
		return a
	}
	gs, bs := subjectOf(good), subjectOf(bad)
	// A filesystem layer under an SBOM config type is still an image.
	disguised := mutate.ConfigMediaType(mutate.MediaType(randomImage(t, 1), types.OCIManifestSchema1), "application/spdx+json")
	for _, tc := range []struct {
		name, tag string
		img       v1.Image
		status    int
		scanned   bool
	}{
		{"signature referrer of an allowed image", "sig-good", sig(&gs), http.StatusOK, false},
		{"bundle referrer of an allowed image", "bundle-good", bundle(gs), http.StatusOK, false},
		{"legacy .sig tag of an allowed image", "sha256-" + goodD.Hex + ".sig", sig(nil), http.StatusOK, false},
		{"signature referrer of a denied image", "sig-bad", sig(&bs), http.StatusForbidden, false},
		{"legacy .sig tag of a denied image", "sha256-" + badD.Hex + ".sig", sig(nil), http.StatusForbidden, false},
		{"signature of an image never pulled", "sig-none", sig(&v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}, Size: 10}), http.StatusForbidden, false},
		{"standalone artifact the policy does not list", "sbom-alone", standalone("application/spdx+json"), http.StatusForbidden, false},
		{"standalone artifact the policy lists", "listed-alone", standalone("application/vnd.cyclonedx+json"), http.StatusOK, false},
		{"disguised image", "disguised", disguised, http.StatusOK, true},
	} {
		before := sc.calls.Load()
		d := up.Push(t, "team/app:"+tc.tag, tc.img)
		code, body := status(t, p, up.Name+"/team/app/manifests/"+tc.tag)
		if code != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, code, tc.status, body)
		}
		if tc.status == http.StatusForbidden && !strings.Contains(body, "artifact-subject") {
			t.Errorf("%s: the denial does not name the rule: %s", tc.name, body)
		}
		if scanned := sc.calls.Load() > before; scanned != tc.scanned {
			t.Errorf("%s: scanned %v, want %v (facts %+v)", tc.name, scanned, tc.scanned, factsOf(t, p, d))
		}
		// The artifact's blobs follow its manifest's verdict.
		ls, _ := tc.img.Layers()
		ld, _ := ls[0].Digest()
		resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/blobs/"+ld.String(), nil)
		if (resp.StatusCode == http.StatusOK) != (tc.status == http.StatusOK) {
			t.Errorf("%s: its layer: %d", tc.name, resp.StatusCode)
		}
	}
	// The referrers of a denied image are not listed; an allowed one's are.
	if resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/referrers/"+badD.String(), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("referrers of the denied image: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/app/referrers/"+goodD.String(), nil); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sigstore") && !strings.Contains(string(body), "manifests") {
		t.Errorf("referrers of the allowed image: %d %s", resp.StatusCode, body)
	}
}

func staticLayer(t *testing.T, content, mediaType string) v1.Layer {
	t.Helper()
	return static.NewLayer([]byte(content), types.MediaType(mediaType))
}

// jarScanner reports JAR files it could not identify (no Java DB), as the scanner does.
type jarScanner struct{ *fakeScanner }

func (j jarScanner) Scan(ctx context.Context, img v1.Image, ref string) (*gate.ScanResult, error) {
	res, err := j.fakeScanner.Scan(ctx, img, ref)
	if res != nil {
		res.UnanalysedJARs = 3
	}
	return res, err
}

// JAR files nobody could check are a fact of the verdict: a warning, or a denial when the
// policy says so.
func TestUnanalysedJARs(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	d := up.Push(t, "team/app:1", img)
	up.Push(t, "team/gold:1", img)
	sc := jarScanner{&fakeScanner{}}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, mustSet(t, fmt.Sprintf(`default: baseline
policies:
  - name: baseline
  - name: gold
    deny_unanalysed_jars: true
scopes:
  - match: ["%s/team/gold"]
    policy: gold
`, up.Name))))
	if code, body := status(t, p, up.Name+"/team/app/manifests/1"); code != http.StatusOK {
		t.Fatalf("baseline: %d %s", code, body)
	}
	resp, md := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/report?format=md&repository="+url.QueryEscape(up.Name+"/team/app"), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(md), "3 JAR files not analysed") {
		t.Fatalf("the report does not say the JARs were not analysed: %d %s", resp.StatusCode, md)
	}
	resp, ui := get(t, http.MethodGet, p.URL+"/ui/images/"+d.String()+"?repository="+url.QueryEscape(up.Name+"/team/app"), nil)
	if resp.StatusCode != 200 || !strings.Contains(string(ui), "3 JAR files not analysed") {
		t.Fatalf("the dashboard does not say the JARs were not analysed: %d", resp.StatusCode)
	}
	code, body := status(t, p, up.Name+"/team/gold/manifests/1")
	if code != http.StatusForbidden || !strings.Contains(body, "unanalysed-jars") || !strings.Contains(body, "3 JAR files not analysed") {
		t.Fatalf("gold: %d %s", code, body)
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

const mediumPolicy = "policies:\n  - name: medium\n    vulnerabilities: {severity: MEDIUM, only_fixable: true}\n"

// dbSetup: an upstream holding the alpine (fixed) image and DB v1 at trivy-db:2; a gated
// proxy that fetched v1 and judged the image allowed; a webhook receiver.
func dbSetup(t *testing.T) (*gated, *proxytest.Upstream, chan gate.VerdictChange) {
	t.Helper()
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:3.19", scannertest.AlpineImage(t, false))
	v1 := t.TempDir()
	scannertest.BuildDB(t, v1, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	up.Push(t, "aquasecurity/trivy-db:2", scannertest.DBArtifact(t, v1))

	hooks := make(chan gate.VerdictChange, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c gate.VerdictChange
		_ = json.NewDecoder(r.Body).Decode(&c)
		hooks <- c
	}))
	t.Cleanup(hook.Close)

	cfg := proxytest.Config(t, up)
	cfg.DB.Repository = up.Name + "/aquasecurity/trivy-db:2"
	cfg.Policy = write(t, t.TempDir(), "policy.yaml", mediumPolicy)
	cfg.Webhooks.URLs = []string{hook.URL}
	g := startGated(t, cfg, up, true)
	if err := g.pull(t, up.Name+"/team/alpine:3.19"); err != nil {
		t.Fatalf("with DB v1 the image is allowed: %v", err)
	}
	return g, up, hooks
}

func pushDBv2(t *testing.T, up *proxytest.Upstream) {
	t.Helper()
	v2 := t.TempDir()
	scannertest.BuildDB(t, v2, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), filepath.Join("testdata", "busybox-2023-42364.yaml"))
	up.Push(t, "aquasecurity/trivy-db:2", scannertest.DBArtifact(t, v2))
}

func imageRequests(up *proxytest.Upstream) int {
	n := 0
	up.Walk(func(key string, count int) {
		if strings.Contains(key, "/team/alpine/") {
			n += count
		}
	})
	return n
}

func TestDBSwapFlipsCachedVerdicts(t *testing.T) {
	g, up, hooks := dbSetup(t)
	reads, imageReqs := g.app.store.BlobReads(), imageRequests(up)
	pushDBv2(t, up)

	res, err := g.app.updateDB(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := res.(map[string]any)["reevaluation"].(gate.ReevalStats)
	if !res.(map[string]any)["swapped"].(bool) || st.Verdicts != 1 || st.Flipped != 1 || st.Failed != 0 {
		t.Fatalf("update: %+v", res)
	}
	resp, body := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/3.19")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "CVE-2023-42364 in busybox 1.36.1-r16 → 1.36.1-r17 (MEDIUM)") {
		t.Fatalf("after the swap: %d %s", resp.StatusCode, body)
	}
	if n := g.app.store.BlobReads() - reads; n != 0 {
		t.Fatalf("re-evaluation read %d layers", n)
	}
	if n := imageRequests(up) - imageReqs; n != 0 {
		t.Fatalf("re-evaluation asked the upstream %d times about the image", n)
	}
	select {
	case c := <-hooks:
		if c.From != "allowed" || c.To != "denied" || c.Repository != up.Name+"/team/alpine" || len(c.Reasons) == 0 {
			t.Fatalf("webhook got %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook never heard of the flip")
	}
	// No newer DB: nothing is swapped or re-evaluated.
	res, err = g.app.updateDB(context.Background())
	if err != nil || res.(map[string]any)["swapped"].(bool) {
		t.Fatalf("second update: %+v %v", res, err)
	}
	resp, body = g.get(t, "/api/v1/db")
	if resp.StatusCode != 200 || !strings.Contains(body, `"updatedAt":"2026-11-24T00:00:00Z"`) || !strings.Contains(body, "trivy-db:2") {
		t.Fatalf("/api/v1/db: %d %s", resp.StatusCode, body)
	}
}

func TestCorruptDBIsRejected(t *testing.T) {
	g, up, _ := dbSetup(t)
	bad, err := mutate.AppendLayers(mutate.MediaType(empty.Image, "application/vnd.oci.image.manifest.v1+json"),
		static.NewLayer(corruptDBTarGz(t), "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"))
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "aquasecurity/trivy-db:2", bad)
	if _, err := g.app.updateDB(context.Background()); err == nil {
		t.Fatal("a corrupt DB was accepted")
	}
	info, err := g.app.db.Info()
	if err != nil || !info.UpdatedAt.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("the good DB must stay loaded: %+v %v", info, err)
	}
	if err := g.pull(t, up.Name+"/team/alpine:3.19"); err != nil {
		t.Fatalf("pulls after a rejected update: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(filepath.Join(g.app.cfg.DataDir, "trivy-db"), "db-*"))
	if len(dirs) != 1 {
		t.Fatalf("the broken download was left behind: %v", dirs)
	}
}

func TestPullsDuringSwapSucceed(t *testing.T) {
	g, up, _ := dbSetup(t)
	// Images with nothing to find: allowed under both DBs, scanned while the swap runs.
	for _, tag := range []string{"a", "b", "c"} {
		img, err := mutate.AppendLayers(empty.Image, scannertest.Layer(t, map[string][]byte{"app/" + tag: []byte(tag + time.Now().String())}))
		if err != nil {
			t.Fatal(err)
		}
		up.Push(t, "team/other:"+tag, img)
	}
	pushDBv2(t, up)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	stop := make(chan struct{})
	for _, ref := range []string{up.Name + "/team/other:a", up.Name + "/team/other:b", up.Name + "/team/other:c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := g.pull(t, ref); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	if _, err := g.app.updateDB(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a pull during the swap failed: %v", err)
	}
}

func corruptDBTarGz(t *testing.T) []byte {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "metadata.json"), []byte(`{"Version":2,"UpdatedAt":"2026-11-25T00:00:00Z"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "trivy.db"), []byte("this is not a bolt database"), 0o644)
	img := scannertest.DBArtifact(t, dir)
	layers, _ := img.Layers()
	rc, _ := layers[0].Compressed()
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

func TestWarmCommandThroughProxy(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false))
	up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	g := startGated(t, cfg, up, true)
	list := write(t, t.TempDir(), "images.txt", "# warm these\n"+up.Name+"/team/alpine:fixed\n"+up.Name+"/team/alpine:vuln\n")
	out, code := runCLI(t, "warm", "--list", list, "--proxy", g.url)
	if code != 0 || !strings.Contains(out, "[2/2]") || !regexpMatch(out, `team/alpine:fixed\s+sha256:\S+\s+allowed`) || !regexpMatch(out, `team/alpine:vuln\s+sha256:\S+\s+denied\s+2\s+2\s+3`) {
		t.Fatalf("warm: %d\n%s", code, out)
	}
	scans := g.app.srv.Scans()
	if err := g.pull(t, up.Name+"/team/alpine:fixed"); err != nil {
		t.Fatal(err)
	}
	if g.app.srv.Scans() != scans {
		t.Fatal("the pull after warm-up scanned")
	}
	out, code = runCLI(t, "db", "status", "--proxy", g.url)
	if code != 0 || !strings.Contains(out, `"loaded":true`) {
		t.Fatalf("db status: %d %s", code, out)
	}
}

func regexpMatch(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

func TestAirGappedDBDirRefresh(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:3.19", scannertest.AlpineImage(t, false))
	site := t.TempDir() // the directory an air-gapped site keeps current
	scannertest.BuildDB(t, site, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = site
	cfg.Policy = write(t, t.TempDir(), "policy.yaml", mediumPolicy)
	g := startGated(t, cfg, up, true)
	if err := g.pull(t, up.Name+"/team/alpine:3.19"); err != nil {
		t.Fatal(err)
	}
	// Nothing new in the directory: nothing happens.
	if res, err := g.app.updateDB(context.Background()); err != nil || res.(map[string]any)["swapped"].(bool) {
		t.Fatalf("unchanged dir: %+v %v", res, err)
	}
	// A half-written update is rejected and the loaded DB stays.
	os.WriteFile(filepath.Join(site, "trivy.db"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(site, "metadata.json"), []byte(`{"Version":2,"UpdatedAt":"2026-11-24T00:00:00Z"}`), 0o644)
	if _, err := g.app.updateDB(context.Background()); err == nil {
		t.Fatal("a broken DB in the site directory was swapped in")
	}
	if err := g.pull(t, up.Name+"/team/alpine:3.19"); err != nil {
		t.Fatalf("pulls after a rejected update: %v", err)
	}
	// The site finishes its update: swapped (from a copy) and every verdict re-evaluated.
	os.Remove(filepath.Join(site, "trivy.db"))
	scannertest.BuildDB(t, site, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), filepath.Join("testdata", "busybox-2023-42364.yaml"))
	res, err := g.app.updateDB(context.Background())
	if err != nil || !res.(map[string]any)["swapped"].(bool) || res.(map[string]any)["reevaluation"].(gate.ReevalStats).Flipped != 1 {
		t.Fatalf("site update: %+v %v", res, err)
	}
	info, _ := g.app.db.Info()
	if !strings.HasPrefix(info.Dir, filepath.Join(g.app.cfg.DataDir, "trivy-db")) {
		t.Fatalf("the DB is used from the site's own directory %s, not a copy", info.Dir)
	}
	if resp, _ := g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/3.19"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after the site's update: %d", resp.StatusCode)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/goldproxy/goldproxy/cmd/goldproxy-image/imagebuild"
	"github.com/goldproxy/goldproxy/cmd/goldproxy-image/imagesbom"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// shippedHardenedPolicy is the shipped configs/policy.yaml with its `hardened` policy made the
// default, so that the test upstream's repositories are judged by it.
func shippedHardenedPolicy(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "\ndefault: baseline\n", "\ndefault: hardened\n", 1)
	if s == string(b) {
		t.Fatal("configs/policy.yaml no longer has `default: baseline`")
	}
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGoldproxyJudgesItsOwnImage builds goldproxy's release image with cmd/goldproxy-image
// (linux/amd64: arm64 is the same code with another GOARCH), attaches its SBOM from
// goldproxy's own scan, pushes both to a test upstream and pulls the image through a
// goldproxy whose policy is the shipped `hardened` one with the test DB: allowed. The
// same binary with a /bin/sh beside it, or run as root, is denied with the rule named:
// the check can fail.
func TestGoldproxyJudgesItsOwnImage(t *testing.T) {
	if _, err := os.Stat(imagebuild.DefaultCACerts); err != nil {
		requireTool(t, "update-ca-certificates") // Debian's ca-certificates; .ci/setup installs it
		t.Fatalf("ca-certificates is installed but %s is missing", imagebuild.DefaultCACerts)
	}
	ctx := context.Background()
	o := imagebuild.Options{Source: filepath.Join("..", ".."), Platforms: []string{"linux/amd64"}, Version: "v0.0.0-selftest",
		Created: time.Now().Add(-time.Hour), WorkDir: t.TempDir()}
	res, err := imagebuild.Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	o = res.Options

	up := proxytest.NewUpstream(t)
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	cfg.Policy = shippedHardenedPolicy(t)

	// The SBOM referrer, from the same scanner the proxy runs.
	sbomFn, closeSBOM, err := imagesbom.Func(ctx, cfg, "goldproxy:"+o.Version)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := imagebuild.SBOMs(res, sbomFn)
	closeSBOM()
	if err != nil {
		t.Fatal(err)
	}
	ref := up.Ref(t, "goldproxy/goldproxy:v0")
	if err := imagebuild.Push(ctx, ref, res, refs); err != nil {
		t.Fatal(err)
	}
	amd64, _ := res.Images["amd64"].Digest()
	idx, err := remote.Referrers(ref.Context().Digest(amd64.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != imagebuild.CycloneDXType {
		t.Fatalf("referrers of the amd64 image: %+v", im.Manifests)
	}
	sbom, err := refs[0].Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := sbom[0].Compressed()
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct{ Name, Version string }
	}
	err = json.NewDecoder(rc).Decode(&bom)
	rc.Close()
	if err != nil || bom.BOMFormat != "CycloneDX" || !hasComponent(bom.Components, "github.com/aquasecurity/trivy") {
		t.Fatalf("SBOM: %v %s, %d components", err, bom.BOMFormat, len(bom.Components))
	}

	// Variants of the same binary that the hardened policy must deny.
	withShell := o
	withShell.Extra = []imagebuild.File{{Path: "/bin/sh", Mode: 0o755, Content: []byte("#!fake shell\n")}}
	asRoot := o
	asRoot.User = "0"
	for tag, vo := range map[string]imagebuild.Options{"shell": withShell, "root": asRoot} {
		vo.WorkDir = t.TempDir()
		img, err := imagebuild.Image(vo, "amd64", res.Binaries["amd64"])
		if err != nil {
			t.Fatal(err)
		}
		up.Push(t, "goldproxy/goldproxy:"+tag, img)
	}

	g := startGated(t, cfg, up, true)
	if err := g.pull(t, up.Name+"/goldproxy/goldproxy:v0"); err != nil {
		_, body := g.get(t, "/v2/"+up.Name+"/goldproxy/goldproxy/manifests/"+amd64.String())
		t.Fatalf("goldproxy's own image under the hardened policy: %v\n%s", err, body)
	}
	for tag, rule := range map[string]string{"shell": `rule "no-shell"`, "root": `rule "non-root"`} {
		resp, body := g.get(t, "/v2/"+up.Name+"/goldproxy/goldproxy/manifests/"+tag)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `policy \"hardened\"`) || !strings.Contains(body, strings.ReplaceAll(rule, `"`, `\"`)) {
			t.Fatalf("variant %s: %d %s", tag, resp.StatusCode, body)
		}
	}
	// The SBOM is served through goldproxy too, as a referrer of the allowed image.
	resp, body := g.get(t, "/v2/"+up.Name+"/goldproxy/goldproxy/referrers/"+amd64.String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, imagebuild.CycloneDXType) {
		t.Fatalf("referrers through goldproxy: %d %s", resp.StatusCode, body)
	}
}

func hasComponent(cs []struct{ Name, Version string }, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

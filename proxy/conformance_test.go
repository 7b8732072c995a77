package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// TestOCIConformance runs the OCI distribution-spec conformance suite (a program, pinned
// as a tool in go.mod) against the proxy in read-only mode, with content preloaded in
// the upstream: images, an index, artifacts with a subject, tags for pagination.
func TestOCIConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the conformance program")
	}
	bin := filepath.Join(t.TempDir(), "conformance")
	build := exec.Command("go", "build", "-o", bin, "github.com/opencontainers/distribution-spec/conformance")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build conformance: %v\n%s", err, out)
	}

	up := proxytest.NewUpstream(t)
	const repo = "conformance/repo1"
	img := ociImage(t, 2)
	imgDigest := up.Push(t, repo+":image", img)
	up.Push(t, repo+":image-2", img)
	idx, _, _ := multiArch(t)
	idxDigest := up.PushIndex(t, repo+":index", idx)
	sbomDigest := up.Push(t, repo+":sbom", artifactFor(t, img, "application/vnd.example.sbom"))
	sigDigest := up.Push(t, repo+":sig", artifactFor(t, img, "application/vnd.example.sig"))
	var blobs []string
	cfgName, _ := img.ConfigName()
	blobs = append(blobs, cfgName.String())
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		blobs = append(blobs, d.String())
	}
	p := proxytest.Start(t, proxytest.Config(t, up))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+p.Host,
		"OCI_TLS=disabled",
		"OCI_REPO1="+up.Name+"/"+repo,
		"OCI_REPO2="+up.Name+"/"+repo,
		"OCI_RESULTS_DIR="+filepath.Join(cmd.Dir, "results"),
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_RO_DATA_TAGS=image image-2 index sbom sig",
		"OCI_RO_DATA_MANIFESTS="+strings.Join(hashes(imgDigest, idxDigest, sbomDigest, sigDigest), " "),
		"OCI_RO_DATA_BLOBS="+strings.Join(blobs, " "),
		"OCI_RO_DATA_REFERRERS="+imgDigest.String(),
	)
	out, _ := cmd.CombinedOutput() // its report writer may fail after the summary: judge the summary
	report := string(out)
	t.Log(report)
	if !strings.Contains(report, "OCI Conformance Result: Pass") {
		t.Fatalf("conformance did not pass")
	}
	for _, line := range []string{"FAIL", "Error"} {
		m := regexp.MustCompile(`(?m)^\s+` + line + `\.+:\s+(\d+)$`).FindStringSubmatch(report)
		if m == nil || m[1] != "0" {
			t.Errorf("%s count: %v", line, m)
		}
	}
	m := regexp.MustCompile(`(?m)^\s+Pass\.+:\s+(\d+)$`).FindStringSubmatch(report)
	if m == nil || m[1] == "0" {
		t.Fatalf("no check passed: %v", m)
	}
	for _, api := range []string{"Referrers", "Tag list", "Manifest get by digest", "Blob get"} {
		if !regexp.MustCompile(`(?mi)^\s+` + api + `[^:]*:\s+Pass$`).MatchString(report) {
			t.Errorf("API %q did not pass", api)
		}
	}
}

func hashes(hs ...v1.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

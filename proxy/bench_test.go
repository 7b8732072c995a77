package proxy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// benchImage pushes an image with one layer of size random bytes and returns the proxy
// URL of that layer and of the image's tag, both warmed by one pull.
func benchSetup(b *testing.B, size int) (blobURL, manifestURL string) {
	b.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	layer := static.NewLayer(data, types.DockerLayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.Fatal(err)
	}
	up := proxytest.NewUpstream(b)
	up.Push(b, "bench/big:1", img)
	p := proxytest.Start(b, proxytest.Config(b, up))
	ld, _ := layer.Digest()
	blobURL = p.URL + "/v2/" + up.Name + "/bench/big/blobs/" + ld.String()
	manifestURL = p.URL + "/v2/" + up.Name + "/bench/big/manifests/1"
	for _, u := range []string{manifestURL, blobURL} {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("warm-up %s: %d", u, resp.StatusCode)
		}
	}
	return blobURL, manifestURL
}

// BenchmarkWarmBlob256MiB is the throughput of serving a cached 256 MiB layer.
func BenchmarkWarmBlob256MiB(b *testing.B) {
	const size = 256 << 20
	blobURL, _ := benchSetup(b, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(blobURL)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != size {
			b.Fatalf("read %d bytes", n)
		}
	}
}

// BenchmarkWarmManifest is the latency of a manifest GET by tag answered from the cache
// (tag within its TTL, manifest and verdict stored).
func BenchmarkWarmManifest(b *testing.B) {
	_, manifestURL := benchSetup(b, 1<<10)
	req, _ := http.NewRequest(http.MethodGet, manifestURL, nil)
	req.Header.Set("Accept", string(types.DockerManifestSchema2))
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// scopedPolicy is a policy file as a platform team writes one: several policies chosen
// by repository scopes, and exceptions narrowed to repositories.
func scopedPolicy(b *testing.B, repo string) *policy.Set {
	b.Helper()
	var y strings.Builder
	y.WriteString("default: strict\npolicies:\n  - name: strict\n    vulnerabilities: {severity: HIGH, only_fixable: true}\n    non_root: false\n" +
		"  - name: hardened\n    vulnerabilities: {severity: MEDIUM}\n    no_shell: true\n  - name: loose\n    mode: audit\n    vulnerabilities: {severity: CRITICAL}\nscopes:\n")
	for i := range 10 {
		fmt.Fprintf(&y, "  - match: [\"other%d.test/team%d/**\", \"*.example/%d/*\"]\n    policy: hardened\n", i, i, i)
	}
	fmt.Fprintf(&y, "  - match: [\"%s/**\"]\n    policy: strict\nexceptions:\n", repo)
	for i := range 20 {
		fmt.Fprintf(&y, "  - id: CVE-2024-%04d\n    reason: not reachable\n    expires: 2099-12-31\n    repositories: [\"%s/*\"]\n    packages: [\"pkg%d*\"]\n", 1000+i, repo, i)
	}
	set, err := policy.Parse([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkWarmManifestScopedPolicy is the latency and allocations of a manifest GET by
// tag of a known, judged digest under a scoped policy with exceptions: the gate's hot path.
func BenchmarkWarmManifestScopedPolicy(b *testing.B) {
	up := proxytest.NewUpstream(b)
	img, err := random.Image(1<<10, 1)
	if err != nil {
		b.Fatal(err)
	}
	up.Push(b, "bench/app:1", img)
	cfgName, _ := img.ConfigName()
	var vulns []policy.Vulnerability
	for i := range 50 {
		vulns = append(vulns, policy.Vulnerability{ID: fmt.Sprintf("CVE-2024-%04d", 1000+i), Package: fmt.Sprintf("pkg%d", i),
			InstalledVersion: "1.0", FixedVersion: "1.1", Severity: policy.Severities[i%4]})
	}
	sc := &fakeScanner{vulns: map[v1.Hash][]policy.Vulnerability{cfgName: vulns}}
	p := proxytest.Start(b, proxytest.Config(b, up), proxy.WithScanner(sc, scopedPolicy(b, up.Name+"/bench")))
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/v2/"+up.Name+"/bench/app/manifests/1", nil)
	req.Header.Set("Accept", string(types.DockerManifestSchema2))
	do := func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	do() // scanned and judged once
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		do()
	}
}

// BenchmarkColdPullOne is one pull of an image the proxy has never seen (a manifest, a
// config and three 1 MiB layers fetched, verified and stored), without a scanner. With
// GOLDPROXY_TEST_SHARED_STORAGE=1 it runs on S3 and PostgreSQL: the difference is the
// cost of the shared store on a cold pull.
func BenchmarkColdPullOne(b *testing.B) {
	up := proxytest.NewUpstream(b)
	p := proxytest.Start(b, proxytest.Config(b, up))
	i := 0
	for b.Loop() {
		b.StopTimer()
		tag, _ := pushColdImage(b, up, i)
		i++
		b.StartTimer()
		if err := proxytest.PullAll(p.Host, up.Name+"/"+tag); err != nil {
			b.Fatal(err)
		}
	}
}

// pushColdImage pushes the i-th never-seen image of a cold-pull benchmark (a config and
// three 1 MiB layers) and returns its repository:tag and the image.
func pushColdImage(b *testing.B, up *proxytest.Upstream, i int) (string, v1.Image) {
	img, err := random.Image(1<<20, 3)
	if err != nil {
		b.Fatal(err)
	}
	tag := fmt.Sprintf("bench/cold:%d", i)
	up.Push(b, tag, img)
	return tag, img
}

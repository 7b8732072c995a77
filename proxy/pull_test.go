package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

func randomImage(t testing.TB, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(4096, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ociImage(t testing.TB, layers int) v1.Image {
	t.Helper()
	img := mutate.MediaType(randomImage(t, layers), types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// multiArch builds an index of a linux/amd64 and a linux/arm64 image.
func multiArch(t testing.TB) (v1.ImageIndex, v1.Image, v1.Image) {
	t.Helper()
	amd, arm := ociImage(t, 1), ociImage(t, 1)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	return idx, amd, arm
}

// artifactFor builds an OCI artifact (an SBOM-like image) whose subject is img.
func artifactFor(t testing.TB, img v1.Image, artifactType string) v1.Image {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	sz, _ := img.Size()
	mt, _ := img.MediaType()
	a := mutate.ConfigMediaType(mutate.MediaType(randomImage(t, 1), types.OCIManifestSchema1), types.MediaType(artifactType))
	a = mutate.Annotations(a, map[string]string{"org.example.kind": "sbom"}).(v1.Image)
	return mutate.Subject(a, v1.Descriptor{MediaType: mt, Digest: d, Size: sz}).(v1.Image)
}

func get(t testing.TB, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// errCode decodes the OCI error envelope and returns its first code.
func errCode(t testing.TB, body []byte) string {
	t.Helper()
	var env struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Errors) == 0 {
		t.Fatalf("not an OCI error envelope: %q", body)
	}
	return env.Errors[0].Code
}

func proxied(t testing.TB, p *proxytest.Proxy, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(p.Host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestPullThroughByteIdentical(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 3)
	imgDigest := up.Push(t, "test/app:1", img)
	idx, amd, _ := multiArch(t)
	idxDigest := up.PushIndex(t, "test/multi:latest", idx)
	p := proxytest.Start(t, proxytest.Config(t, up))

	for _, tc := range []struct {
		name, ref string
		want      v1.Hash
	}{
		{"host in path by tag", up.Name + "/test/app:1", imgDigest},
		{"host in path by digest", up.Name + "/test/app@" + imgDigest.String(), imgDigest},
		{"index by tag", up.Name + "/test/multi:latest", idxDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desc, err := remote.Get(proxied(t, p, tc.ref))
			if err != nil {
				t.Fatal(err)
			}
			want, err := remote.Get(up.Ref(t, strings.TrimPrefix(tc.ref, up.Name+"/")))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != tc.want || !bytes.Equal(desc.Manifest, want.Manifest) || desc.MediaType != want.MediaType {
				t.Fatalf("proxy served %s %s, upstream has %s %s", desc.Digest, desc.MediaType, want.Digest, want.MediaType)
			}
		})
	}

	// A whole image through the proxy, layers included, matches the upstream's.
	got, err := remote.Image(proxied(t, p, up.Name+"/test/app:1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // verifies the digest at EOF
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer through proxy: %v", err)
		}
		rc.Close()
	}
	// The platform manifest of the index is pulled (and gated) on its own request.
	amdDigest, _ := amd.Digest()
	pi, err := remote.Image(proxied(t, p, up.Name+"/test/multi:latest"), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pi.Digest(); d != amdDigest {
		t.Fatalf("platform manifest %s, want %s", d, amdDigest)
	}
}

func TestManifestHeadersAndAccept(t *testing.T) {
	up := proxytest.NewUpstream(t)
	idx, amd, _ := multiArch(t)
	idxDigest := up.PushIndex(t, "test/multi:1", idx)
	amdDigest, _ := amd.Digest()
	amdRaw, _ := amd.RawManifest()
	p := proxytest.Start(t, proxytest.Config(t, up))
	base := p.URL + "/v2/" + up.Name + "/test/multi/manifests/"
	all := string(types.OCIImageIndex) + ", " + string(types.OCIManifestSchema1) + ", " + string(types.DockerManifestSchema2) + ", " + string(types.DockerManifestList)

	for _, tc := range []struct {
		name, method, ref, accept string
		wantDigest                v1.Hash
		wantType                  types.MediaType
	}{
		{"GET index by tag", http.MethodGet, "1", all, idxDigest, types.OCIImageIndex},
		{"HEAD index by tag", http.MethodHead, "1", all, idxDigest, types.OCIImageIndex},
		{"no Accept gets what is stored", http.MethodGet, "1", "", idxDigest, types.OCIImageIndex},
		{"client without index support gets linux/amd64", http.MethodGet, "1", string(types.OCIManifestSchema1), amdDigest, types.OCIManifestSchema1},
		{"by digest", http.MethodGet, amdDigest.String(), all, amdDigest, types.OCIManifestSchema1},
		{"HEAD by digest", http.MethodHead, amdDigest.String(), all, amdDigest, types.OCIManifestSchema1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.accept != "" {
				hdr["Accept"] = tc.accept
			}
			resp, body := get(t, tc.method, base+tc.ref, hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != tc.wantDigest.String() {
				t.Errorf("Docker-Content-Digest %s, want %s", got, tc.wantDigest)
			}
			if got := resp.Header.Get("Content-Type"); got != string(tc.wantType) {
				t.Errorf("Content-Type %s, want %s", got, tc.wantType)
			}
			if resp.ContentLength <= 0 {
				t.Errorf("Content-Length %d", resp.ContentLength)
			}
			if tc.method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD returned a body")
			}
			if tc.method == http.MethodGet && tc.wantDigest == amdDigest && !bytes.Equal(body, amdRaw) {
				t.Errorf("body differs from the upstream manifest")
			}
		})
	}
}

func TestBlobRange(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	up.Push(t, "test/app:1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	full, _ := io.ReadAll(rc)
	p := proxytest.Start(t, proxytest.Config(t, up))
	url := p.URL + "/v2/" + up.Name + "/test/app/blobs/" + ld.String()
	// As a client does: the manifest first (a blob is served only for an allowed one).
	if resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}

	// A ranged request on a cold blob ingests it whole, then answers the range.
	for _, tc := range []struct {
		name, rng  string
		status     int
		start, end int
	}{
		{"cold range", "bytes=10-99", http.StatusPartialContent, 10, 100},
		{"warm range", "bytes=0-0", http.StatusPartialContent, 0, 1},
		{"suffix range", fmt.Sprintf("bytes=-%d", 5), http.StatusPartialContent, len(full) - 5, len(full)},
		{"full", "", http.StatusOK, 0, len(full)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.rng != "" {
				hdr["Range"] = tc.rng
			}
			resp, body := get(t, http.MethodGet, url, hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !bytes.Equal(body, full[tc.start:tc.end]) {
				t.Fatalf("range body differs")
			}
			if resp.Header.Get("Docker-Content-Digest") != ld.String() {
				t.Errorf("Docker-Content-Digest %q", resp.Header.Get("Docker-Content-Digest"))
			}
		})
	}
	resp, _ := get(t, http.MethodGet, url, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full)+10)})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("unsatisfiable range: status %d", resp.StatusCode)
	}
	resp, _ = get(t, http.MethodHead, url, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(full)) {
		t.Errorf("HEAD blob: status %d length %d", resp.StatusCode, resp.ContentLength)
	}
	if n := up.BlobGETs("test/app", ld); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1", n)
	}
}

func TestTagsPagination(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 1)
	for _, tag := range []string{"a", "b", "c", "d", "e"} {
		up.Push(t, "test/app:"+tag, img)
	}
	p := proxytest.Start(t, proxytest.Config(t, up))
	base := p.URL + "/v2/" + up.Name + "/test/app/tags/list"
	type list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	for _, tc := range []struct {
		query    string
		want     []string
		wantLink string
	}{
		{"", []string{"a", "b", "c", "d", "e"}, ""},
		{"?n=2", []string{"a", "b"}, "last=b&n=2"},
		{"?n=2&last=b", []string{"c", "d"}, "last=d&n=2"},
		{"?n=2&last=d", []string{"e"}, ""},
		{"?last=c", []string{"d", "e"}, ""},
		{"?n=0", []string{}, ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, body := get(t, http.MethodGet, base+tc.query, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var l list
			if err := json.Unmarshal(body, &l); err != nil {
				t.Fatal(err)
			}
			if l.Name != up.Name+"/test/app" || fmt.Sprint(l.Tags) != fmt.Sprint(tc.want) {
				t.Fatalf("got %+v, want tags %v", l, tc.want)
			}
			link := resp.Header.Get("Link")
			if (tc.wantLink == "") != (link == "") || !strings.Contains(link, tc.wantLink) {
				t.Fatalf("Link %q, want one containing %q", link, tc.wantLink)
			}
		})
	}
	resp, body := get(t, http.MethodGet, base+"?n=x", nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("n=x: status %d %s", resp.StatusCode, body)
	}
}

func TestReferrers(t *testing.T) {
	up := proxytest.NewUpstream(t)
	img := ociImage(t, 1)
	subject := up.Push(t, "test/app:1", img)
	sbom := artifactFor(t, img, "application/vnd.example.sbom")
	sig := artifactFor(t, img, "application/vnd.example.sig")
	sbomDigest := up.Push(t, "test/app:sbom", sbom)
	sigDigest := up.Push(t, "test/app:sig", sig)
	p := proxytest.Start(t, proxytest.Config(t, up))
	url := p.URL + "/v2/" + up.Name + "/test/app/referrers/" + subject.String()

	type index struct {
		MediaType string          `json:"mediaType"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	fetch := func(t *testing.T, q string) (index, *http.Response) {
		resp, body := get(t, http.MethodGet, url+q, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != string(types.OCIImageIndex) {
			t.Fatalf("status %d type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var ix index
		if err := json.Unmarshal(body, &ix); err != nil {
			t.Fatal(err)
		}
		return ix, resp
	}
	ix, _ := fetch(t, "")
	if len(ix.Manifests) != 2 {
		t.Fatalf("want 2 referrers, got %+v", ix.Manifests)
	}
	ix, resp := fetch(t, "?artifactType=application/vnd.example.sbom")
	if len(ix.Manifests) != 1 || ix.Manifests[0].Digest != sbomDigest || resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %+v (filters %q)", ix.Manifests, resp.Header.Get("OCI-Filters-Applied"))
	}

	// Pulled artifacts are indexed by subject, so the store answers when the upstream is gone.
	for _, d := range []v1.Hash{sbomDigest, sigDigest} {
		if _, err := remote.Get(proxied(t, p, up.Name+"/test/app@"+d.String())); err != nil {
			t.Fatal(err)
		}
	}
	up.Close()
	ix, _ = fetch(t, "")
	if len(ix.Manifests) != 2 {
		t.Fatalf("from the store: want 2 referrers, got %+v", ix.Manifests)
	}
	for _, m := range ix.Manifests {
		if m.ArtifactType == "" || m.Annotations["org.example.kind"] != "sbom" {
			t.Errorf("stored referrer lacks artifactType or annotations: %+v", m)
		}
	}
	// An unknown subject has an empty list, not an error.
	resp2, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/test/app/referrers/sha256:"+strings.Repeat("0", 64), nil)
	if resp2.StatusCode != http.StatusOK || !strings.Contains(string(body), `"manifests":[]`) {
		t.Fatalf("unknown subject: %d %s", resp2.StatusCode, body)
	}
}

package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/proxy/trust/trusttest"
	"github.com/goldproxy/goldproxy/storage"
)

const (
	ghIssuer  = "https://token.actions.githubusercontent.com"
	ghID      = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
	slsaBuild = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"
)

// rawManifest is a manifest pushed with its exact bytes.
type rawManifest struct {
	b  []byte
	mt string
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(r.mt), nil }

// pushArtifact writes a signature or attestation artifact to the upstream: its blobs,
// then its manifest by tag (cosign's legacy layout) or, with tag "", by digest (a
// referrer).
func pushArtifact(t *testing.T, up *proxytest.Upstream, repo, tag string, a trusttest.Artifact) {
	t.Helper()
	r, err := name.NewRepository(up.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range a.Blobs {
		if err := remote.WriteLayer(r, static.NewLayer(b, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
	}
	ref := name.Reference(r.Digest(a.Digest().String()))
	if tag != "" {
		ref = r.Tag(tag)
	}
	if err := remote.Put(ref, rawManifest{a.Manifest, a.MediaType}); err != nil {
		t.Fatal(err)
	}
}

// trustSetup starts a proxy that verifies signatures with key and the virtual
// Sigstore's trusted root (it issues no SCTs, so none is required).
func trustSetup(t *testing.T, sc *fakeScanner, pol string, ss *trusttest.Sigstore, opts ...proxy.Option) (*proxytest.Upstream, *proxytest.Proxy) {
	t.Helper()
	up := proxytest.NewUpstream(t)
	cfg := proxytest.Config(t, up)
	noSCT := false
	cfg.Trust = config.TrustConfig{TrustedRoot: ss.RootPath, RequireSCT: &noSCT, Refresh: time.Hour}
	return up, proxytest.Start(t, cfg, append([]proxy.Option{proxy.WithScanner(sc, mustSet(t, pol))}, opts...)...)
}

func digestOf(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

func TestSignaturesJudgedPerImage(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	key, stranger := trusttest.NewKey(t, "ecdsa", dir), trusttest.NewKey(t, "ecdsa", dir)
	pol := fmt.Sprintf(`policies:
  - name: keyed
    signatures: {required: true, keys: [%q]}
  - name: keyless
    signatures: {required: true, keyless: [{issuer: %q, identity_regexp: "https://github.com/acme/.*"}]}
  - name: provenance
    signatures: {required: true, keys: [%q]}
    attestations: {provenance: {required: true, builder_ids: ["https://github.com/slsa-framework/**"]}}
  - name: sbom
    signatures: {required: true, keys: [%q]}
    attestations: {sbom: {required: true}}
scopes:
  - {match: ["**/sbom/*"], policy: sbom}
  - {match: ["**/keyed/*"], policy: keyed}
  - {match: ["**/keyless/*"], policy: keyless}
  - {match: ["**/provenance/*"], policy: provenance}
`, key.Path, ghIssuer, key.Path, key.Path)
	sc := &fakeScanner{}
	reg := prometheus.NewRegistry()
	up, p := trustSetup(t, sc, pol, ss, proxy.WithRegistry(reg))
	soon := time.Now().Add(5 * time.Minute) // within the virtual certificates' validity

	type attach func(t *testing.T, repo string, d digest.Digest)
	legacySig := func(sign func(payload []byte) trusttest.Artifact, signed func(d digest.Digest) digest.Digest) attach {
		return func(t *testing.T, repo string, d digest.Digest) {
			pushArtifact(t, up, repo, trusttest.LegacyTag(d, "sig"), sign(trusttest.SimpleSigning(up.Host+"/"+repo, signed(d))))
		}
	}
	same := func(d digest.Digest) digest.Digest { return d }
	other := func(digest.Digest) digest.Digest { return digest.FromString("another image") }
	keySig := func(k *trusttest.Key) func([]byte) trusttest.Artifact {
		return func(b []byte) trusttest.Artifact { return k.Signature(t, b) }
	}
	keylessSig := func(id, iss string, at time.Time) func([]byte) trusttest.Artifact {
		return func(b []byte) trusttest.Artifact { return ss.Signature(t, b, id, iss, at) }
	}
	tampered := func(t *testing.T, repo string, d digest.Digest) {
		a := key.Signature(t, trusttest.SimpleSigning(up.Host+"/"+repo, d))
		// The payload is swapped for another with the same digest inside; the signature
		// annotation stays that of the original.
		evil := trusttest.SimpleSigning("evil.example/"+repo, d)
		var m map[string]any
		_ = json.Unmarshal(a.Manifest, &m)
		l := m["layers"].([]any)[0].(map[string]any)
		l["digest"], l["size"] = digest.FromBytes(evil).String(), len(evil)
		a.Manifest, _ = json.Marshal(m)
		a.Blobs[1] = evil
		pushArtifact(t, up, repo, trusttest.LegacyTag(d, "sig"), a)
	}
	keyBundle := func(t *testing.T, repo string, d digest.Digest) {
		b := key.Bundle(t, trusttest.Statement(d, "https://sigstore.dev/cosign/sign/v1", map[string]any{}))
		pushArtifact(t, up, repo, "", trusttest.BundleReferrer(b, string(types.DockerManifestSchema2), d, 100))
	}
	provenance := func(builder string) attach {
		return func(t *testing.T, repo string, d digest.Digest) {
			legacySig(keySig(key), same)(t, repo, d)
			st := trusttest.Statement(d, policy.SLSAProvenanceV1, trusttest.Provenance(builder))
			pushArtifact(t, up, repo, trusttest.LegacyTag(d, "att"), key.Attestation(t, st, policy.SLSAProvenanceV1))
		}
	}
	keylessBundleProvenance := func(t *testing.T, repo string, d digest.Digest) {
		legacySig(keylessSig(ghID, ghIssuer, soon), same)(t, repo, d)
		b := ss.Bundle(t, trusttest.Statement(d, policy.SLSAProvenanceV1, trusttest.Provenance(slsaBuild)), ghID, ghIssuer)
		pushArtifact(t, up, repo, "", trusttest.BundleReferrer(b, string(types.DockerManifestSchema2), d, 100))
	}

	cases := []struct {
		repo   string
		attach attach // nil: unsigned
		want   int
		says   []string // in the denial, or in the verdict's signers when allowed
	}{
		{"keyed/signed", legacySig(keySig(key), same), http.StatusOK, []string{key.Path}},
		{"keyed/bundle", keyBundle, http.StatusOK, []string{key.Path}},
		{"keyed/unsigned", nil, http.StatusForbidden, []string{`rule "signatures"`, "the image has no signature", "key " + key.Path}},
		{"keyed/tampered", tampered, http.StatusForbidden, []string{`rule "signatures"`, "not signed by a key this policy lists", "failed to verify signature"}},
		{"keyed/otherdigest", legacySig(keySig(key), other), http.StatusForbidden, []string{"the signed payload is for digest " + digest.FromString("another image").String()}},
		{"keyed/untrusted", legacySig(keySig(stranger), same), http.StatusForbidden, []string{"not signed by a key this policy lists"}},
		{"keyless/signed", legacySig(keylessSig(ghID, ghIssuer, soon), same), http.StatusOK, []string{ghID}},
		{"keyless/wrongidentity", legacySig(keylessSig("https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main", ghIssuer, soon), same), http.StatusForbidden,
			[]string{"signed by https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main (issuer " + ghIssuer + ")", "policy wants identity matching https://github.com/acme/.*"}},
		{"keyless/wrongissuer", legacySig(keylessSig(ghID, "https://accounts.google.com", soon), same), http.StatusForbidden,
			[]string{"(issuer https://accounts.google.com)", "policy wants identity matching https://github.com/acme/.* (issuer " + ghIssuer + ")"}},
		{"keyless/expired", legacySig(keylessSig(ghID, ghIssuer, time.Now().Add(30*time.Minute)), same), http.StatusForbidden,
			[]string{"cosign signature (tag sha256-", "integrated time outside certificate validity"}},
		{"keyless/keysigned", legacySig(keySig(key), same), http.StatusForbidden, []string{"signed with a key, and this policy lists no keys"}},
		{"provenance/good", provenance(slsaBuild), http.StatusOK, []string{key.Path}},
		{"provenance/wrongbuilder", provenance("https://evil.example/builder"), http.StatusForbidden,
			[]string{`rule "provenance"`, `provenance by builder "https://evil.example/builder", policy wants a builder id matching https://github.com/slsa-framework/**`}},
		{"provenance/missing", legacySig(keySig(key), same), http.StatusForbidden, []string{`rule "provenance"`, "no signed SLSA provenance attestation was found"}},
		{"keyless/bundleprovenance", keylessBundleProvenance, http.StatusOK, []string{ghID}},
		{"sbom/attested", func(t *testing.T, repo string, d digest.Digest) {
			legacySig(keySig(key), same)(t, repo, d)
			st := trusttest.Statement(d, "https://spdx.dev/Document", map[string]any{"spdxVersion": "SPDX-2.3"})
			pushArtifact(t, up, repo, trusttest.LegacyTag(d, "att"), key.Attestation(t, st, "https://spdx.dev/Document"))
		}, http.StatusOK, []string{key.Path}},
		{"sbom/missing", legacySig(keySig(key), same), http.StatusForbidden, []string{`rule "sbom"`, "no signed SBOM attestation"}},
	}
	defer func() {
		if !t.Failed() {
			signatureMetrics(t, reg, map[string]float64{"verified": 2, "unsigned": 1, "invalid": 3})
		}
	}()
	for _, tc := range cases {
		t.Run(tc.repo, func(t *testing.T) {
			img := randomImage(t, 1)
			up.Push(t, tc.repo+":1", img)
			d := digestOf(t, img)
			if tc.attach != nil {
				tc.attach(t, tc.repo, d)
			}
			resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/"+tc.repo+"/manifests/1", nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want != http.StatusOK {
				msg := denialMessage(t, body)
				for _, s := range append(tc.says, "sign the image") {
					if !strings.Contains(msg, s) {
						t.Errorf("denial does not say %q:\n%s", s, msg)
					}
				}
				return
			}
			// The verdict API lists who signed.
			var j admin.VerdictDetail
			resp, vb := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/verdict?repository="+up.Name+"/"+tc.repo, nil)
			if resp.StatusCode != http.StatusOK || json.Unmarshal(vb, &j) != nil || j.Verdict.Trust == nil || len(j.Verdict.Trust.Signers) == 0 {
				t.Fatalf("the verdict lists no signer: %d %s", resp.StatusCode, vb)
			}
			if s := j.Verdict.Trust.Signers[0]; s.Key != tc.says[0] && s.Identity != tc.says[0] {
				t.Fatalf("signer %+v, want %s", s, tc.says[0])
			} else if s.Identity != "" && (s.LogIndex == nil || s.IntegratedTime.IsZero() || s.Issuer != ghIssuer) {
				t.Fatalf("a keyless signer without its issuer or Rekor entry: %+v", s)
			}
			if tc.repo == "keyless/signed" {
				// The dashboard, the Markdown and the JSON reports show who signed.
				q := "?repository=" + up.Name + "/" + tc.repo
				_, page := get(t, http.MethodGet, p.URL+"/ui/images/"+d.String()+q, nil)
				_, md := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/report"+q+"&format=md", nil)
				_, js := get(t, http.MethodGet, p.URL+"/api/v1/images/"+d.String()+"/report"+q, nil)
				for what, doc := range map[string][]string{
					string(page): {"Signatures &amp; attestations", ghID, ghIssuer, "log index 1000"},
					string(md):   {"## Signatures & attestations", "Signed by " + ghID + " (issuer " + ghIssuer + "), rekor log index 1000"},
					string(js):   {`"Signatures":`, `"identity":"` + ghID + `"`, `"logIndex":1000`},
				} {
					for _, want := range doc {
						if !strings.Contains(what, want) {
							t.Errorf("%q missing in:\n%.3000s", want, what)
						}
					}
				}
			}
			if strings.HasPrefix(tc.repo, "keyed/signed") {
				// The signature is served through the proxy, exact bytes, with its allowed image.
				sig := p.URL + "/v2/" + up.Name + "/" + tc.repo + "/manifests/" + trusttest.LegacyTag(d, "sig")
				resp, raw := get(t, http.MethodGet, sig, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("signature: %d %s", resp.StatusCode, raw)
				}
				var m struct {
					Layers []struct{ Digest string } `json:"layers"`
				}
				if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) != 1 {
					t.Fatalf("signature manifest %s: %v", raw, err)
				}
				resp, payload := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/"+tc.repo+"/blobs/"+m.Layers[0].Digest, nil)
				if resp.StatusCode != http.StatusOK || string(payload) != string(trusttest.SimpleSigning(up.Host+"/"+tc.repo, d)) {
					t.Fatalf("signature payload: %d %s", resp.StatusCode, payload)
				}
			}
		})
	}
}

// signatureMetrics checks the pulls counted by signature result under policy keyed.
func signatureMetrics(t *testing.T, reg *prometheus.Registry, want map[string]float64) {
	t.Helper()
	for result, n := range want {
		if got := metricValue(t, reg, "goldproxy_signature_pulls_total", map[string]string{"policy": "keyed", "result": result}); got != n {
			t.Errorf("policy keyed, %s: %v pulls, want %v", result, got, n)
		}
	}
}

// denialMessage is the message of a DENIED error envelope.
func denialMessage(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != "DENIED" {
		t.Fatalf("not a DENIED error: %s", body)
	}
	return e.Errors[0].Message
}

// An index signed, with one platform signed and one not: the unsigned platform is denied.
func TestSignaturesPerPlatform(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	key := trusttest.NewKey(t, "ed25519", dir)
	up, p := trustSetup(t, &fakeScanner{}, fmt.Sprintf("policies:\n  - name: signed\n    signatures: {required: true, keys: [%q]}\n", key.Path), ss)
	amd, arm := randomImage(t, 1), randomImage(t, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	id := up.PushIndex(t, "team/multi:1", idx)
	for _, d := range []digest.Digest{digest.Digest(id.String()), digestOf(t, amd)} {
		pushArtifact(t, up, "team/multi", trusttest.LegacyTag(d, "sig"), key.Signature(t, trusttest.SimpleSigning(up.Host+"/team/multi", d)))
	}
	base := p.URL + "/v2/" + up.Name + "/team/multi/manifests/"
	if resp, body := get(t, http.MethodGet, base+"1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("index: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, http.MethodGet, base+digestOf(t, amd).String(), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed platform: %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, http.MethodGet, base+digestOf(t, arm).String(), nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "the image has no signature") {
		t.Fatalf("unsigned platform: %d %s", resp.StatusCode, body)
	}
	// The index's signature was mirrored with it (in the background): with the upstream
	// gone, cosign verifying the tag through the proxy still finds it.
	sigTag := trusttest.LegacyTag(digest.Digest(id.String()), "sig")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := p.Store.Tag(up.Name+"/team/multi", sigTag); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the index's signature was not mirrored")
		}
	}
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	if resp, body := get(t, http.MethodGet, base+sigTag, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("index signature with the upstream down: %d %s", resp.StatusCode, body)
	}
}

// A key rotation (a policy reload naming another key) flips the verdict from the stored
// signature material: no scan, no layer read, no upstream request.
func TestSignatureKeyRotationWithoutUpstream(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	oldKey, newKey := trusttest.NewKey(t, "rsa", dir), trusttest.NewKey(t, "ecdsa", dir)
	polFor := func(k *trusttest.Key) string {
		return fmt.Sprintf("policies:\n  - name: signed\n    signatures: {required: true, keys: [%q]}\n", k.Path)
	}
	sc := &fakeScanner{}
	up, p := trustSetup(t, sc, polFor(oldKey), ss)
	img := randomImage(t, 2)
	up.Push(t, "team/app:1", img)
	d := digestOf(t, img)
	pushArtifact(t, up, "team/app", trusttest.LegacyTag(d, "sig"), oldKey.Signature(t, trusttest.SimpleSigning(up.Host+"/team/app", d)))
	url := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	status := func() (int, string) {
		resp, body := get(t, http.MethodGet, url, nil)
		return resp.StatusCode, string(body)
	}
	if s, body := status(); s != http.StatusOK {
		t.Fatalf("signed with the policy's key: %d %s", s, body)
	}
	scans, reads, upstream := sc.calls.Load(), p.Store.BlobReads(), up.Total()
	for _, tc := range []struct {
		key     *trusttest.Key
		flipped int
		status  int
	}{
		{newKey, 1, http.StatusForbidden}, // rotated: the old signature no longer counts
		{oldKey, 1, http.StatusOK},        // and back
	} {
		n, err := p.Gold.SetPolicy(mustSet(t, polFor(tc.key)))
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.flipped {
			t.Fatalf("flipped %d, want %d", n, tc.flipped)
		}
		if s, body := status(); s != tc.status {
			t.Fatalf("after rotation to %s: %d, want %d: %s", tc.key.Path, s, tc.status, body)
		}
	}
	if sc.calls.Load() != scans || p.Store.BlobReads() != reads || up.Total() != upstream {
		t.Fatalf("rotations scanned %d, read %d blobs, asked the upstream %d times: want 0, 0, 0",
			sc.calls.Load()-scans, p.Store.BlobReads()-reads, up.Total()-upstream)
	}
}

// A changed trusted root is re-read and every verdict judged again from the stored
// signature material: no scan, no layer read, no upstream request.
func TestSignatureTrustedRootChange(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	sc := &fakeScanner{}
	up, p := trustSetup(t, sc, fmt.Sprintf("policies:\n  - name: gh\n    signatures: {required: true, keyless: [{issuer: %q, identity: %q}]}\n", ghIssuer, ghID), ss)
	img := randomImage(t, 1)
	up.Push(t, "team/app:1", img)
	d := digestOf(t, img)
	pushArtifact(t, up, "team/app", trusttest.LegacyTag(d, "sig"), ss.Signature(t, trusttest.SimpleSigning(up.Host+"/team/app", d), ghID, ghIssuer, time.Now().Add(5*time.Minute)))
	url := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	if resp, body := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("keyless signed: %d %s", resp.StatusCode, body)
	}
	scans, reads, upstream := sc.calls.Load(), p.Store.BlobReads(), up.Total()
	if n, err := p.Gold.TrustChanged(); err != nil || n != 0 {
		t.Fatalf("unchanged root: flipped %d, %v", n, err)
	}
	// Another Sigstore's root: the signature no longer chains to a trusted CA or log.
	other := trusttest.NewSigstore(t, t.TempDir())
	b, err := os.ReadFile(other.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ss.RootPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Gold.TrustChanged(); err != nil || n != 1 {
		t.Fatalf("new root: flipped %d, %v; want 1", n, err)
	}
	resp, body := get(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(denialMessage(t, body), "cosign signature (tag sha256-") {
		t.Fatalf("after the root changed: %d %s", resp.StatusCode, body)
	}
	if sc.calls.Load() != scans || p.Store.BlobReads() != reads || up.Total() != upstream {
		t.Fatalf("the root change scanned %d, read %d blobs, asked the upstream %d times: want 0, 0, 0",
			sc.calls.Load()-scans, p.Store.BlobReads()-reads, up.Total()-upstream)
	}
	// A root file that no longer parses: keyless signatures fail closed, saying why.
	if err := os.WriteFile(ss.RootPath, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Gold.TrustChanged(); err == nil || !strings.Contains(err.Error(), "trusted root") {
		t.Fatalf("a broken root: %v", err)
	}
	resp, body = get(t, http.MethodGet, url, nil)
	if msg := denialMessage(t, body); resp.StatusCode != http.StatusForbidden || !strings.Contains(msg, "trusted root "+ss.RootPath) {
		t.Fatalf("with a broken root: %d %s", resp.StatusCode, msg)
	}
}

func TestSignatureBadTrustedRootRefusedAtStart(t *testing.T) {
	up := proxytest.NewUpstream(t)
	cfg := proxytest.Config(t, up)
	bad := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(bad, []byte(`{"mediaType": "nope"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Trust.TrustedRoot = bad
	store, err := storage.Open(context.Background(), cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := proxy.New(cfg, store, proxy.WithScanner(&fakeScanner{}, policy.DefaultSet())); err == nil || !strings.Contains(err.Error(), "trust.trusted_root") {
		t.Fatalf("a bad trusted root at start: %v", err)
	}
}

// A signature published after the image was mirrored is picked up when its tag is
// checked with the upstream again (TTL expired), and the verdict flips.
func TestSignaturePublishedLaterPickedUpOnTagRefresh(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	key := trusttest.NewKey(t, "ecdsa", dir)
	up := proxytest.NewUpstream(t)
	cfg := proxytest.Config(t, up)
	cfg.Trust = config.TrustConfig{TrustedRoot: ss.RootPath, Refresh: time.Hour}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := proxytest.Start(t, cfg, proxy.WithScanner(&fakeScanner{}, mustSet(t, fmt.Sprintf("policies:\n  - name: signed\n    signatures: {required: true, keys: [%q]}\n", key.Path))), proxy.WithClock(clock))
	img := randomImage(t, 1)
	up.Push(t, "team/app:1", img)
	d := digestOf(t, img)
	url := p.URL + "/v2/" + up.Name + "/team/app/manifests/1"
	if resp, body := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(denialMessage(t, body), "has no signature") {
		t.Fatalf("unsigned: %d %s", resp.StatusCode, body)
	}
	sig := key.Signature(t, trusttest.SimpleSigning(up.Host+"/team/app", d))
	pushArtifact(t, up, "team/app", trusttest.LegacyTag(d, "sig"), sig)
	// Within the TTL nothing asks the upstream: still denied.
	if resp, _ := get(t, http.MethodGet, url, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("within the tag TTL: %d", resp.StatusCode)
	}
	sigGETs := func() int { return up.Count(http.MethodGet, "/v2/team/app/manifests/"+sig.Digest().String()) }
	before := sigGETs()
	mu.Lock()
	now = now.Add(cfg.Tags.TTL + time.Second)
	mu.Unlock()
	get(t, http.MethodGet, url, nil) // the tag refresh looks for signatures again, in the background
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := get(t, http.MethodGet, url, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new signature was not picked up: %d %s (signature tag asked %d times)", resp.StatusCode, body, sigGETs()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := sigGETs() - before; n != 1 {
		t.Fatalf("the signature manifest was fetched %d times on the refresh, want 1", n)
	}
}

// A bundle referrer is mirrored with its image: with the upstream gone, the referrers API
// of the proxy still lists it and serves it, exact bytes, as cosign and Kyverno read it.
func TestSignatureBundleReferrerServedOffline(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	key := trusttest.NewKey(t, "ecdsa", dir)
	up, p := trustSetup(t, &fakeScanner{}, fmt.Sprintf("policies:\n  - name: signed\n    signatures: {required: true, keys: [%q]}\n", key.Path), ss)
	img := ociImage(t, 1)
	up.Push(t, "team/app:1", img)
	d := digestOf(t, img)
	raw, _ := img.RawManifest()
	bundle := key.Bundle(t, trusttest.Statement(d, "https://sigstore.dev/cosign/sign/v1", map[string]any{}))
	ref := trusttest.BundleReferrer(bundle, string(types.OCIManifestSchema1), d, int64(len(raw)))
	pushArtifact(t, up, "team/app", "", ref)
	base := p.URL + "/v2/" + up.Name + "/team/app/"
	if resp, body := get(t, http.MethodGet, base+"manifests/1", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed by a bundle: %d %s", resp.StatusCode, body)
	}
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	resp, body := get(t, http.MethodGet, base+"referrers/"+d.String(), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), ref.Digest().String()) || !strings.Contains(string(body), "application/vnd.dev.sigstore.bundle.v0.3+json") {
		t.Fatalf("referrers with the upstream down: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, http.MethodGet, base+"manifests/"+ref.Digest().String(), map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
	if resp.StatusCode != http.StatusOK || string(body) != string(ref.Manifest) {
		t.Fatalf("bundle manifest: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, http.MethodGet, base+"blobs/"+digest.FromBytes(bundle).String(), nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(bundle) {
		t.Fatalf("bundle blob: %d %.200s", resp.StatusCode, body)
	}
}

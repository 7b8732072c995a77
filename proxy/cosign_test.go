package proxy_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/trust/trusttest"
)

// TestCosignVerifyThroughProxy runs the real cosign CLI (its path in GOLDPROXY_COSIGN;
// bench/cosign-verify.sh installs it) against goldproxy: `cosign verify --key` of a
// key-signed image succeeds through the proxy, which served the image and the signature
// it mirrored, and fails for an unsigned one, which goldproxy denies; and images signed
// and attested by cosign itself (legacy .sig/.att, and --new-bundle-format referrers)
// pass goldproxy's verification. Without GOLDPROXY_COSIGN it is skipped: CI does not
// build cosign.
func TestCosignVerifyThroughProxy(t *testing.T) {
	bin := os.Getenv("GOLDPROXY_COSIGN")
	if bin == "" {
		t.Skip("GOLDPROXY_COSIGN is not set (bench/cosign-verify.sh sets it)")
	}
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	key := trusttest.NewKey(t, "ecdsa", dir)
	up, p := trustSetup(t, &fakeScanner{}, fmt.Sprintf("policies:\n  - name: signed\n    signatures: {required: true, keys: [%q]}\n", key.Path), ss)
	img := randomImage(t, 2)
	up.Push(t, "team/app:1", img)
	d := digestOf(t, img)
	ref := p.Host + "/" + up.Name + "/team/app"
	pushArtifact(t, up, "team/app", trusttest.LegacyTag(d, "sig"), key.Signature(t, trusttest.SimpleSigning(ref, d)))
	up.Push(t, "team/unsigned:1", randomImage(t, 1))

	cosign := func(image string) (string, error) {
		cmd := exec.Command(bin, "verify", "--key", key.Path, "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry", image)
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+dir+"/tuf")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := cosign(ref + ":1")
	if err != nil {
		t.Fatalf("cosign verify through goldproxy failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, d.String()) {
		t.Fatalf("cosign verified something else:\n%s", out)
	}
	t.Logf("cosign verify %s:1 through goldproxy:\n%s", ref, out)
	if sigGets := p.Requests("GET /v2/" + up.Name + "/team/app/manifests/" + trusttest.LegacyTag(d, "sig")); len(sigGets) == 0 {
		t.Fatal("cosign did not read the signature through the proxy")
	}
	if out, err := cosign(p.Host + "/" + up.Name + "/team/unsigned:1"); err == nil {
		t.Fatalf("cosign verified an unsigned image through goldproxy:\n%s", out)
	}
	if resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/unsigned/manifests/1", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned image: %d", resp.StatusCode)
	}

	// The other way round: an image signed and attested by the real cosign (legacy
	// layout, straight to the upstream) passes goldproxy's own verification.
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+dir+"/tuf", "COSIGN_PASSWORD=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("generate-key-pair", "--output-key-prefix", "real")
	const builder = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0"
	if err := os.WriteFile(dir+"/predicate.json", []byte(`{"buildDefinition":{"buildType":"https://example.com/build"},"runDetails":{"builder":{"id":"`+builder+`"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	real := randomImage(t, 1)
	up.Push(t, "team/real:1", real)
	target := up.Host + "/team/real@" + digestOf(t, real).String()
	flags := []string{"--key", "real.key", "--tlog-upload=false", "--yes", "--allow-http-registry", "--allow-insecure-registry"}
	run(append([]string{"sign"}, append(flags, target)...)...)
	run(append([]string{"attest", "--type", "slsaprovenance1", "--predicate", "predicate.json"}, append(flags, target)...)...)
	if _, err := p.Gold.SetPolicy(mustSet(t, fmt.Sprintf("policies:\n  - name: real\n    signatures: {required: true, keys: [%q]}\n    attestations: {provenance: {required: true, builder_ids: [%q]}}\n",
		dir+"/real.pub", "https://github.com/slsa-framework/**"))); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/real/manifests/1", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an image signed and attested by cosign: %d %s", resp.StatusCode, body)
	}
	// cosign's new bundle format: a Sigstore bundle stored as an OCI 1.1 referrer.
	bundled := randomImage(t, 1)
	up.Push(t, "team/bundled:1", bundled)
	target = up.Host + "/team/bundled@" + digestOf(t, bundled).String()
	run(append([]string{"sign", "--new-bundle-format"}, append(flags, target)...)...)
	if _, err := p.Gold.SetPolicy(mustSet(t, fmt.Sprintf("policies:\n  - name: real\n    signatures: {required: true, keys: [%q]}\n", dir+"/real.pub"))); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/bundled/manifests/1", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("an image signed by cosign in the new bundle format: %d %s", resp.StatusCode, body)
	}
}

package trust_test

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/trust"
	"github.com/goldproxy/goldproxy/proxy/trust/trusttest"
)

// extract turns a test artifact into material, as the gate does from the store.
func extract(t *testing.T, a trusttest.Artifact, via string) []trust.Material {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	for _, b := range a.Blobs {
		blobs[digest.FromBytes(b)] = b
	}
	m, err := trust.Extract(a.Digest(), a.Manifest, via, func(d digest.Digest, _ int64) ([]byte, error) { return blobs[d], nil })
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	ghIssuer = "https://token.actions.githubusercontent.com"
	ghID     = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
)

func TestVerifyForms(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	v, err := trust.New(trust.Options{TrustedRoot: ss.RootPath, RequireTlog: true})
	if err != nil {
		t.Fatal(err)
	}
	subject := digest.FromString("an image manifest")
	other := digest.FromString("another image manifest")
	payload := trusttest.SimpleSigning("example.com/app", subject)
	keys := map[string]*trusttest.Key{}
	for _, kind := range []string{"ecdsa", "ed25519", "rsa"} {
		keys[kind] = trusttest.NewKey(t, kind, dir)
	}
	stranger := trusttest.NewKey(t, "ecdsa", dir)
	tampered := keys["ecdsa"].Signature(t, payload)
	tamperedPayload := []byte(strings.Replace(string(payload), "example.com/app", "example.com/evil", 1))
	tamperedMat := extract(t, tampered, "tag")
	tamperedMat[0].Payload = tamperedPayload

	type want struct {
		signer   string // identity or key path of the one signer
		attested string // predicate type of the one attestation
		problem  string // substring of the one problem
	}
	cases := []struct {
		name string
		mats []trust.Material
		keys []string
		want want
	}{
		{"ecdsa key legacy", extract(t, keys["ecdsa"].Signature(t, payload), "tag"), []string{keys["ecdsa"].Path}, want{signer: keys["ecdsa"].Path}},
		{"ed25519 key legacy", extract(t, keys["ed25519"].Signature(t, payload), "tag"), []string{keys["ecdsa"].Path, keys["ed25519"].Path}, want{signer: keys["ed25519"].Path}},
		{"rsa key legacy", extract(t, keys["rsa"].Signature(t, payload), "tag"), []string{keys["rsa"].Path}, want{signer: keys["rsa"].Path}},
		{"untrusted key", extract(t, stranger.Signature(t, payload), "tag"), []string{keys["ecdsa"].Path}, want{problem: "not signed by a key this policy lists"}},
		{"tampered payload", tamperedMat, []string{keys["ecdsa"].Path}, want{problem: "not signed by a key this policy lists"}},
		{"signature for another digest", extract(t, keys["ecdsa"].Signature(t, trusttest.SimpleSigning("example.com/app", other)), "tag"), []string{keys["ecdsa"].Path},
			want{problem: "is for digest " + other.String()}},
		{"key bundle", extract(t, trusttest.BundleReferrer(keys["ecdsa"].Bundle(t, trusttest.Statement(subject, "https://sigstore.dev/cosign/sign/v1", map[string]any{})), "", subject, 1), "referrer"),
			[]string{keys["ecdsa"].Path}, want{signer: keys["ecdsa"].Path}},
		{"key bundle for another digest", extract(t, trusttest.BundleReferrer(keys["ecdsa"].Bundle(t, trusttest.Statement(other, "https://sigstore.dev/cosign/sign/v1", map[string]any{})), "", other, 1), "referrer"),
			[]string{keys["ecdsa"].Path}, want{problem: "digest"}},
		{"key attestation legacy", extract(t, keys["ecdsa"].Attestation(t, trusttest.Statement(subject, policy.SLSAProvenanceV1, trusttest.Provenance("https://builder")), policy.SLSAProvenanceV1), "tag"),
			[]string{keys["ecdsa"].Path}, want{attested: policy.SLSAProvenanceV1}},
		{"keyless legacy", extract(t, ss.Signature(t, payload, ghID, ghIssuer, time.Now().Add(5*time.Minute)), "tag"), nil, want{signer: ghID}},
		{"keyless legacy outside certificate validity", extract(t, ss.Signature(t, payload, ghID, ghIssuer, time.Now().Add(30*time.Minute)), "tag"), nil,
			want{problem: "certificate"}},
		{"keyless bundle attestation", extract(t, trusttest.BundleReferrer(ss.Bundle(t, trusttest.Statement(subject, policy.SLSAProvenanceV1, trusttest.Provenance("https://builder")), ghID, ghIssuer), "", subject, 1), "referrer"),
			nil, want{attested: policy.SLSAProvenanceV1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := v.Verify(subject, tc.mats, tc.keys)
			switch {
			case tc.want.signer != "":
				if len(got.Signers) != 1 || (got.Signers[0].Key != tc.want.signer && got.Signers[0].Identity != tc.want.signer) {
					t.Fatalf("signers %+v, problems %q; want %s", got.Signers, got.Problems, tc.want.signer)
				}
				if s := got.Signers[0]; s.Identity != "" && (s.Issuer != ghIssuer || s.LogIndex == nil || s.IntegratedTime.IsZero()) {
					t.Fatalf("keyless signer without its issuer or Rekor entry: %+v", s)
				}
			case tc.want.attested != "":
				if len(got.Attestations) != 1 || got.Attestations[0].PredicateType != tc.want.attested || got.Attestations[0].BuilderID != "https://builder" {
					t.Fatalf("attestations %+v, problems %q", got.Attestations, got.Problems)
				}
			default:
				if len(got.Signers) != 0 || len(got.Problems) != 1 || !strings.Contains(got.Problems[0], tc.want.problem) {
					t.Fatalf("signers %+v, problems %q; want one problem with %q", got.Signers, got.Problems, tc.want.problem)
				}
			}
		})
	}
}

// A keyless bundle with only a TSA timestamp (no Rekor entry) verifies when the config
// does not require a transparency log, and is refused, saying so, when it does.
func TestVerifyTimestampWithoutTlog(t *testing.T) {
	ss := trusttest.NewSigstore(t, t.TempDir())
	subject := digest.FromString("an image manifest")
	st := trusttest.Statement(subject, "https://sigstore.dev/cosign/sign/v1", map[string]any{})
	mats := extract(t, trusttest.BundleReferrer(ss.BundleWithoutTlog(t, st, ghID, ghIssuer), "", subject, 1), "referrer")
	for _, requireTlog := range []bool{false, true} {
		v, err := trust.New(trust.Options{TrustedRoot: ss.RootPath, RequireTlog: requireTlog})
		if err != nil {
			t.Fatal(err)
		}
		got := v.Verify(subject, mats, nil)
		if requireTlog {
			if len(got.Signers) != 0 || len(got.Problems) != 1 || !strings.Contains(got.Problems[0], "transparency log") {
				t.Fatalf("require_tlog: signers %+v, problems %q", got.Signers, got.Problems)
			}
			continue
		}
		if len(got.Signers) != 1 || got.Signers[0].Identity != ghID || got.Signers[0].LogIndex != nil {
			t.Fatalf("TSA only: signers %+v, problems %q", got.Signers, got.Problems)
		}
	}
}

// BenchmarkVerify: one keyless legacy signature and one keyless bundle attestation, the
// first time (every check) and again (the cache: verdicts are judged again often).
func BenchmarkVerify(b *testing.B) {
	ss := trusttest.NewSigstore(b, b.TempDir())
	subject := digest.FromString("an image manifest")
	var mats []trust.Material
	for _, a := range []trusttest.Artifact{
		ss.Signature(b, trusttest.SimpleSigning("example.com/app", subject), ghID, ghIssuer, time.Now().Add(5*time.Minute)),
		trusttest.BundleReferrer(ss.Bundle(b, trusttest.Statement(subject, policy.SLSAProvenanceV1, trusttest.Provenance("https://builder")), ghID, ghIssuer), "", subject, 1),
	} {
		blobs := map[digest.Digest][]byte{}
		for _, bl := range a.Blobs {
			blobs[digest.FromBytes(bl)] = bl
		}
		m, err := trust.Extract(a.Digest(), a.Manifest, "bench", func(d digest.Digest, _ int64) ([]byte, error) { return blobs[d], nil })
		if err != nil {
			b.Fatal(err)
		}
		mats = append(mats, m...)
	}
	check := func(b *testing.B, got *policy.Trust) {
		if len(got.Signers) != 1 || len(got.Attestations) != 1 {
			b.Fatalf("%+v", got)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			v, err := trust.New(trust.Options{TrustedRoot: ss.RootPath, RequireTlog: true})
			if err != nil {
				b.Fatal(err)
			}
			check(b, v.Verify(subject, mats, nil))
		}
	})
	b.Run("cached", func(b *testing.B) {
		v, err := trust.New(trust.Options{TrustedRoot: ss.RootPath, RequireTlog: true})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			check(b, v.Verify(subject, mats, nil))
		}
	})
}

// With SCTs required (the default), a keyless certificate that carries none (the test
// CA's Fulcio issues none) does not verify, and says so.
func TestVerifyRequiresSCT(t *testing.T) {
	dir := t.TempDir()
	ss := trusttest.NewSigstore(t, dir)
	subject := digest.FromString("an image manifest")
	mats := extract(t, ss.Signature(t, trusttest.SimpleSigning("example.com/app", subject), ghID, ghIssuer, time.Now().Add(5*time.Minute)), "tag")
	for _, require := range []bool{false, true} {
		v, err := trust.New(trust.Options{TrustedRoot: ss.RootPath, RequireTlog: true, RequireSCT: require})
		if err != nil {
			t.Fatal(err)
		}
		got := v.Verify(subject, mats, nil)
		if !require && len(got.Signers) != 1 {
			t.Fatalf("without SCTs required: signers %+v, problems %q", got.Signers, got.Problems)
		}
		t.Logf("require_sct %v: problems %q", require, got.Problems)
		if require && (len(got.Signers) != 0 || !strings.Contains(strings.Join(got.Problems, " "), "signed certificate timestamp")) {
			t.Fatalf("with SCTs required: signers %+v, problems %q", got.Signers, got.Problems)
		}
	}
}

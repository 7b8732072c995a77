// Package trusttest signs test images the way cosign and Sigstore do: a generated key
// (cosign's legacy .sig layout, or a Sigstore bundle referrer) and keyless signing with
// sigstore-go's virtual Fulcio, Rekor and TSA, whose trusted root it writes to a file.
// Tests only: it must never be linked into a binary.
package trusttest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Artifact is a signature or attestation manifest with its blobs, exact bytes, ready to
// push to a test upstream (by tag for cosign's legacy layout, by digest for a referrer).
type Artifact struct {
	Manifest  []byte
	MediaType string
	Blobs     [][]byte
}

// Digest is the artifact manifest's digest.
func (a Artifact) Digest() digest.Digest { return digest.FromBytes(a.Manifest) }

// LegacyTag is cosign's tag for the signature (suffix "sig") or attestations ("att") of d.
func LegacyTag(d digest.Digest, suffix string) string {
	return "sha256-" + d.Encoded() + "." + suffix
}

// SimpleSigning is cosign's payload for a signature of manifest d.
func SimpleSigning(ref string, d digest.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref, d)
}

// Statement is an in-toto v1 statement about manifest d.
func Statement(d digest.Digest, predicateType string, predicate any) []byte {
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "image", "digest": map[string]string{"sha256": d.Encoded()}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// Provenance is a SLSA v1 provenance predicate by builder.
func Provenance(builder string) map[string]any {
	return map[string]any{"buildDefinition": map[string]any{"buildType": "https://example.com/build"},
		"runDetails": map[string]any{"builder": map[string]any{"id": builder}}}
}

// Layer is one layer of a legacy artifact: its content, media type and annotations.
type Layer struct {
	Content     []byte
	MediaType   string
	Annotations map[string]string
}

// Legacy builds a cosign legacy signature or attestation manifest (an OCI image
// manifest with an empty image config) of the layers.
func Legacy(layers ...Layer) Artifact {
	cfg := []byte(`{"architecture":"","created":"0001-01-01T00:00:00Z","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)
	a := Artifact{MediaType: "application/vnd.oci.image.manifest.v1+json", Blobs: [][]byte{cfg}}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Size        int               `json:"size"`
		Digest      digest.Digest     `json:"digest"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, a.MediaType, desc{MediaType: "application/vnd.oci.image.config.v1+json", Size: len(cfg), Digest: digest.FromBytes(cfg)}, nil}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc{l.MediaType, len(l.Content), digest.FromBytes(l.Content), l.Annotations})
		a.Blobs = append(a.Blobs, l.Content)
	}
	a.Manifest, _ = json.Marshal(m)
	return a
}

// BundleReferrer builds an OCI artifact manifest holding a Sigstore bundle whose
// subject is the manifest subject (its media type and size given).
func BundleReferrer(bundleJSON []byte, subjectMediaType string, subject digest.Digest, subjectSize int64) Artifact {
	empty := []byte("{}")
	const mt = "application/vnd.dev.sigstore.bundle.v0.3+json"
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":%q},`+
		`"layers":[{"mediaType":%q,"size":%d,"digest":%q}],`+
		`"subject":{"mediaType":%q,"size":%d,"digest":%q}}`,
		mt, digest.FromBytes(empty), mt, len(bundleJSON), digest.FromBytes(bundleJSON), subjectMediaType, subjectSize, subject)
	return Artifact{Manifest: m, MediaType: "application/vnd.oci.image.manifest.v1+json", Blobs: [][]byte{empty, bundleJSON}}
}

// Key is a generated signing key.
type Key struct {
	Signer signature.SignerVerifier
	Public crypto.PublicKey
	// Path is the PEM public key file.
	Path string
}

// NewKey generates a key of kind "ecdsa", "ed25519" or "rsa" and writes its public key
// to dir.
func NewKey(t testing.TB, kind, dir string) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch kind {
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, kind+"-*.pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(pem); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return &Key{Signer: sv, Public: priv.Public(), Path: f.Name()}
}

func (k *Key) sign(t testing.TB, b []byte) []byte {
	t.Helper()
	sig, err := k.Signer.SignMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Signature is cosign's legacy .sig artifact signing payload with the key.
func (k *Key) Signature(t testing.TB, payload []byte) Artifact {
	return Legacy(Layer{Content: payload, MediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(k.sign(t, payload))}})
}

// DSSE signs an in-toto statement as a DSSE envelope with the key.
func (k *Key) DSSE(t testing.TB, statement []byte) *protodsse.Envelope {
	const pt = "application/vnd.in-toto+json"
	return &protodsse.Envelope{Payload: statement, PayloadType: pt,
		Signatures: []*protodsse.Signature{{Sig: k.sign(t, pae(pt, statement))}}}
}

// Bundle is a v0.3 Sigstore bundle of a DSSE envelope signed with the key (no log entry).
func (k *Key) Bundle(t testing.TB, statement []byte) []byte {
	b := &protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "test"}}},
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: k.DSSE(t, statement)}}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Attestation is cosign's legacy .att artifact of a DSSE statement signed with the key.
func (k *Key) Attestation(t testing.TB, statement []byte, predicateType string) Artifact {
	env := k.DSSE(t, statement)
	b, _ := json.Marshal(map[string]any{"payloadType": env.PayloadType, "payload": base64.StdEncoding.EncodeToString(env.Payload),
		"signatures": []any{map[string]string{"keyid": "", "sig": base64.StdEncoding.EncodeToString(env.Signatures[0].Sig)}}})
	return Legacy(Layer{Content: b, MediaType: "application/vnd.dsse.envelope.v1+json",
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": "", "predicateType": predicateType}})
}

// pae is DSSE's pre-authentication encoding.
func pae(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// Sigstore is a virtual Fulcio, Rekor and TSA; RootPath is its trusted_root.json.
type Sigstore struct {
	*ca.VirtualSigstore
	RootPath string
}

// NewSigstore starts a virtual Sigstore and writes its trusted root to dir.
func NewSigstore(t testing.TB, dir string) *Sigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// The virtual logs' IDs are hex strings where a trusted root holds the raw key id.
	rawIDs := func(logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		for _, l := range logs {
			if id, err := hex.DecodeString(string(l.ID)); err == nil {
				l.ID = id
			}
		}
		return logs
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), rawIDs(vs.CTLogs()), vs.TimestampingAuthorities(), rawIDs(vs.RekorLogs()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Sigstore{VirtualSigstore: vs, RootPath: path}
}

// Signature is a keyless cosign legacy .sig artifact of payload by identity and issuer,
// logged in the virtual Rekor at time at (its certificate is valid for ten minutes from
// now).
func (s *Sigstore) Signature(t testing.TB, payload []byte, identity, issuer string, at time.Time) Artifact {
	t.Helper()
	e, err := s.SignAtTime(identity, issuer, payload, at)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	certPEM, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	tle := s.entry(t, entries[0])
	rekor, _ := json.Marshal(map[string]any{
		"SignedEntryTimestamp": tle.GetInclusionPromise().GetSignedEntryTimestamp(),
		"Payload": map[string]any{"body": base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
			"integratedTime": tle.GetIntegratedTime(), "logIndex": tle.GetLogIndex(), "logID": hex.EncodeToString(tle.GetLogId().GetKeyId())},
	})
	return Legacy(Layer{Content: payload, MediaType: "application/vnd.dev.cosign.simplesigning.v1+json", Annotations: map[string]string{
		"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sc.Signature()),
		"dev.sigstore.cosign/certificate":    string(certPEM),
		"dev.sigstore.cosign/bundle":         string(rekor),
	}})
}

// Bundle is a keyless v0.3 Sigstore bundle of an in-toto statement (DSSE) by identity
// and issuer, with its Rekor entry (inclusion proof) and a signed timestamp.
func (s *Sigstore) Bundle(t testing.TB, statement []byte, identity, issuer string) []byte {
	return s.bundle(t, statement, identity, issuer, true)
}

// BundleWithoutTlog is Bundle with no Rekor entry: only the TSA's signed timestamp says
// when it was signed.
func (s *Sigstore) BundleWithoutTlog(t testing.TB, statement []byte, identity, issuer string) []byte {
	return s.bundle(t, statement, identity, issuer, false)
}

func (s *Sigstore) bundle(t testing.TB, statement []byte, identity, issuer string, withTlog bool) []byte {
	t.Helper()
	e, err := s.AttestAtTime(identity, issuer, statement, time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := e.VerificationContent()
	sc, _ := e.SignatureContent()
	entries, _ := e.TlogEntries()
	stamps, _ := e.Timestamps()
	env := sc.EnvelopeContent().RawEnvelope()
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var tlogs []*protorekor.TransparencyLogEntry
	if withTlog {
		tlogs = append(tlogs, s.entry(t, entries[0]))
	}
	var rfc []*protocommon.RFC3161SignedTimestamp
	for _, ts := range stamps {
		rfc = append(rfc, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	b := &protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
			TlogEntries:               tlogs,
			TimestampVerificationData: &protobundle.TimestampVerificationData{Rfc3161Timestamps: rfc},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType,
			Signatures: []*protodsse.Signature{{Sig: sig}}}}}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// entry is a virtual Rekor entry as a bundle holds it: with its kind and version and
// its signed entry timestamp (which the virtual Rekor signs but tlog.Entry hides).
func (s *Sigstore) entry(t testing.TB, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	var body struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(tle.GetCanonicalizedBody(), &body); err != nil {
		t.Fatal(err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: body.Kind, Version: body.APIVersion}
	set, err := s.RekorSignPayload(tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(tle.GetCanonicalizedBody()),
		IntegratedTime: tle.GetIntegratedTime(), LogIndex: tle.GetLogIndex(), LogID: hex.EncodeToString(tle.GetLogId().GetKeyId())})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// Fingerprint is the SHA-256 of a public key's DER encoding, as verdicts show it.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		panic(err)
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

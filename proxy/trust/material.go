package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Kinds of signature material.
const (
	KindSignature   = "cosign-signature"   // a simple-signing payload with its signature (.sig)
	KindAttestation = "cosign-attestation" // a DSSE envelope (.att)
	KindBundle      = "sigstore-bundle"    // a Sigstore bundle (a referrer)
)

// cosign's annotations on the layers of its legacy signature and attestation manifests.
const (
	annSignature   = "dev.cosignproject.cosign/signature"
	annCertificate = "dev.sigstore.cosign/certificate"
	annChain       = "dev.sigstore.cosign/chain"
	annBundle      = "dev.sigstore.cosign/bundle"
	annTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
)

// Layer media types that carry signature material.
const (
	mtSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	mtDSSE          = "application/vnd.dsse.envelope.v1+json"
	mtBundle        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	mtBundlePrefix  = "application/vnd.dev.sigstore.bundle+json"
)

// MaxBlob bounds one signature blob: signatures, envelopes and bundles are small, and a
// larger one is refused rather than held in memory.
const MaxBlob = 4 << 20

// Material is one signature or attestation of a manifest, in the exact bytes that were
// signed and the annotations that came with them. It is a fact of the signed digest:
// verifying it needs no upstream and no layer.
type Material struct {
	Kind string `json:"kind"`
	// Artifact is the digest of the manifest it came in; Via says how it was found.
	Artifact string `json:"artifact"`
	Via      string `json:"via"`
	// Payload is what was signed (simple signing, a DSSE envelope, or a bundle).
	Payload []byte `json:"payload"`
	// Signature is the base64 signature of a simple-signing payload.
	Signature string `json:"signature,omitempty"`
	// Certificate and Chain are PEM; Rekor is cosign's bundle annotation (the Rekor
	// entry with its SET); Timestamp is an RFC 3161 timestamp annotation.
	Certificate string          `json:"certificate,omitempty"`
	Chain       string          `json:"chain,omitempty"`
	Rekor       json.RawMessage `json:"rekor,omitempty"`
	Timestamp   json.RawMessage `json:"timestamp,omitempty"`
}

// ID identifies the material by content, for reports.
func (m Material) ID() string {
	h := sha256.New()
	h.Write([]byte(m.Kind + "\x00" + m.Signature + "\x00"))
	h.Write(m.Payload)
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// Extract reads the signature material of one stored artifact manifest: blob returns a
// stored blob (at most MaxBlob bytes). A manifest with no signature layer gives none
// (an unsigned SBOM attachment, say); one that cannot be read is an error.
func Extract(artifact digest.Digest, raw []byte, via string, blob func(digest.Digest, int64) ([]byte, error)) ([]Material, error) {
	var m struct {
		ArtifactType string `json:"artifactType"`
		Layers       []struct {
			MediaType   string            `json:"mediaType"`
			Digest      digest.Digest     `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("signature manifest %s: %w", artifact, err)
	}
	var out []Material
	for i, l := range m.Layers {
		kind := ""
		switch mt := strings.ToLower(strings.ReplaceAll(l.MediaType, " ", "")); {
		case mt == mtSimpleSigning:
			kind = KindSignature
		case mt == mtDSSE:
			kind = KindAttestation
		case mt == mtBundle || strings.HasPrefix(mt, mtBundlePrefix):
			kind = KindBundle
		default:
			continue
		}
		if l.Digest.Validate() != nil {
			return nil, fmt.Errorf("signature manifest %s: layer %d has no valid digest", artifact, i)
		}
		if l.Size > MaxBlob {
			return nil, fmt.Errorf("signature manifest %s: layer %d is %d bytes, more than a signature can be (%d)", artifact, i, l.Size, MaxBlob)
		}
		b, err := blob(l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("signature manifest %s: layer %s: %w", artifact, l.Digest, err)
		}
		if l.Digest.Algorithm().FromBytes(b) != l.Digest {
			return nil, fmt.Errorf("signature manifest %s: layer %s does not match its digest", artifact, l.Digest)
		}
		mat := Material{Kind: kind, Artifact: artifact.String(), Via: via, Payload: b,
			Signature: l.Annotations[annSignature], Certificate: l.Annotations[annCertificate], Chain: l.Annotations[annChain]}
		if s := l.Annotations[annBundle]; s != "" {
			mat.Rekor = json.RawMessage(s)
		}
		if s := l.Annotations[annTimestamp]; s != "" {
			mat.Timestamp = json.RawMessage(s)
		}
		if kind == KindSignature && mat.Signature == "" {
			return nil, fmt.Errorf("signature manifest %s: layer %s has no %s annotation", artifact, l.Digest, annSignature)
		}
		out = append(out, mat)
	}
	return out, nil
}

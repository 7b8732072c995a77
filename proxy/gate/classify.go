package gate

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// What a manifest is, as far as the gate is concerned. The decision is taken from the
// whole manifest, never from one field the upstream chose: a renamed config type does not
// turn an image into something that skips the scan.
type class int

const (
	classImage    class = iota // has (or may have) filesystem layers: scanned
	classArtifact              // only signature, attestation or SBOM content: nothing to scan
	classInvalid               // cannot be scanned: denied
	classRefused               // over limits.layers: denied before any layer is fetched
)

type classification struct {
	what class
	// kind says what it was recognised as, or why it is scanned.
	kind string
	// blobs are the config and the layers, config first.
	blobs []digest.Digest
	// subject is the manifest's subject, artifactType its artifactType or config type.
	subject      digest.Digest
	artifactType string
}

// Layer media types that hold a filesystem (docker and OCI, every compression).
var filesystemLayers = map[string]bool{
	"application/vnd.docker.image.rootfs.diff.tar.gzip":                    true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":            true,
	"application/vnd.oci.image.layer.v1.tar":                               true,
	"application/vnd.oci.image.layer.v1.tar+gzip":                          true,
	"application/vnd.oci.image.layer.v1.tar+zstd":                          true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar":              true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip":         true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":         true,
	"application/vnd.docker.image.rootfs.diff.tar":                         true,
	"application/vnd.docker.image.rootfs.diff.tar.zstd":                    true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar":                 true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypt": true,
}

// Layer media types of supply-chain artifacts: signatures, attestations, SBOMs.
var artifactLayers = map[string]string{
	"application/vnd.dev.cosign.simplesigning.v1+json":     "cosign signature",
	"application/vnd.dsse.envelope.v1+json":                "attestation",
	"application/vnd.in-toto+json":                         "attestation",
	"application/vnd.dev.sigstore.bundle.v0.3+json":        "sigstore bundle",
	"application/vnd.dev.sigstore.bundle+json;version=0.3": "sigstore bundle",
	"application/vnd.dev.sigstore.bundle+json;version=0.2": "sigstore bundle",
	"application/vnd.dev.sigstore.bundle+json;version=0.1": "sigstore bundle",
	"application/spdx+json":                                "SBOM",
	"text/spdx":                                            "SBOM",
	"text/spdx+json":                                       "SBOM",
	"application/vnd.cyclonedx+json":                       "SBOM",
	"application/vnd.cyclonedx+xml":                        "SBOM",
	"application/vnd.cyclonedx":                            "SBOM",
	"application/vnd.syft+json":                            "SBOM",
	"application/jose+json":                                "notation signature",
	"application/cose":                                     "notation signature",
	"application/vnd.oci.empty.v1+json":                    "empty",
}

// Config media types and artifactTypes that name an artifact.
var artifactConfigs = map[string]bool{
	"application/vnd.oci.empty.v1+json":                    true,
	"application/vnd.dev.cosign.artifact.sig.v1+json":      true,
	"application/vnd.dev.cosign.artifact.sbom.v1+json":     true,
	"application/vnd.dev.cosign.artifact.att.v1+json":      true,
	"application/vnd.dev.sigstore.bundle.v0.3+json":        true,
	"application/vnd.dev.sigstore.bundle+json;version=0.3": true,
	"application/vnd.in-toto+json":                         true,
	"application/vnd.dsse.envelope.v1+json":                true,
	"application/spdx+json":                                true,
	"application/vnd.cyclonedx+json":                       true,
	"application/vnd.syft+json":                            true,
	"application/vnd.cncf.notary.signature":                true,
}

// Image config media types: cosign's legacy signatures and attestations use them too.
var imageConfigs = map[string]bool{
	"application/vnd.docker.container.image.v1+json": true,
	"application/vnd.oci.image.config.v1+json":       true,
}

// classify decides whether an image manifest is scanned. An image whose layers are
// filesystem layers is scanned whatever its config type says; only a manifest whose
// every layer is signature, attestation or SBOM content, and whose config or artifactType
// says so too, is an artifact; anything else is scanned (and a scan that cannot read it
// fails, so it is denied). An image with more than maxLayers layers (limits.layers; 0: no
// bound) is invalid: it is denied before any layer is fetched.
func classify(raw []byte, maxLayers int) classification {
	var m struct {
		ArtifactType string `json:"artifactType"`
		Subject      *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"subject"`
		Config *struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return classification{what: classInvalid, kind: "unreadable image manifest: " + err.Error()}
	}
	if m.Config == nil || m.Config.Digest.Validate() != nil {
		return classification{what: classInvalid, kind: "image manifest without a valid config descriptor"}
	}
	if maxLayers > 0 && len(m.Layers) > maxLayers {
		return classification{what: classRefused, kind: fmt.Sprintf("the image manifest has %d layers, more than %d", len(m.Layers), maxLayers)}
	}
	c := classification{what: classImage, kind: "image", blobs: []digest.Digest{m.Config.Digest}}
	artifactKind := ""
	allArtifact := true
	for _, l := range m.Layers {
		if l.Digest.Validate() != nil {
			return classification{what: classInvalid, kind: "layer without a valid digest"}
		}
		c.blobs = append(c.blobs, l.Digest)
		mt := normalizeMediaType(l.MediaType)
		if k, ok := artifactLayers[mt]; ok {
			if artifactKind == "" || artifactKind == "empty" {
				artifactKind = k
			}
			continue
		}
		allArtifact = false
		if !filesystemLayers[mt] && c.kind == "image" {
			c.kind = "image with layer type " + l.MediaType
		}
	}
	cfg := normalizeMediaType(m.Config.MediaType)
	at := normalizeMediaType(m.ArtifactType)
	named := artifactConfigs[cfg] || artifactConfigs[at] || (len(m.Layers) > 0 && imageConfigs[cfg] && at == "")
	if allArtifact && named {
		if artifactKind == "" || artifactKind == "empty" {
			artifactKind = "artifact " + firstNonEmpty(at, cfg)
		}
		c.what, c.kind, c.artifactType = classArtifact, artifactKind, firstNonEmpty(m.ArtifactType, m.Config.MediaType)
		if m.Subject != nil && m.Subject.Digest.Validate() == nil {
			c.subject = m.Subject.Digest
		}
		return c
	}
	if !imageConfigs[cfg] && c.kind == "image" {
		c.kind = "image with config type " + m.Config.MediaType
	}
	return c
}

// normalizeMediaType drops spaces around parameters so "a; version=0.3" matches.
func normalizeMediaType(mt string) string {
	mt = strings.ToLower(strings.TrimSpace(mt))
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i]) + ";" + strings.ReplaceAll(mt[i+1:], " ", "")
	}
	return mt
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

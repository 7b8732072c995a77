package imagebuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// CycloneDXType is the SBOM's media type and its referrer's artifactType.
const CycloneDXType = "application/vnd.cyclonedx+json"

// emptyConfig is the artifact's config content (OCI 1.1's empty JSON object).
var emptyConfig = []byte("{}")

// SBOMFunc produces the CycloneDX JSON SBOM of one platform image (cmd/goldproxy-image
// passes goldproxy's own Trivy scan).
type SBOMFunc func(img v1.Image, arch string) ([]byte, error)

// SBOMs runs fn on each platform image and returns the referrer artifacts, in
// platform order, each with its SBOM made reproducible (Normalize).
func SBOMs(r *Result, fn SBOMFunc) ([]v1.Image, error) {
	var out []v1.Image
	for _, p := range r.Options.Platforms {
		arch := p[len("linux/"):]
		img := r.Images[arch]
		sbom, err := fn(img, arch)
		if err != nil {
			return nil, fmt.Errorf("SBOM of linux/%s: %w", arch, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		a, err := SBOMArtifact(img, Normalize(sbom, d, r.Options.Created), r.Options.Created)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// Normalize makes a Trivy CycloneDX SBOM depend only on the image: every random UUID
// (the serial number, bom-refs) becomes one derived from the image digest and its order
// of appearance, and metadata.timestamp becomes the build's creation time.
func Normalize(sbom []byte, subject v1.Hash, created time.Time) []byte {
	seen := map[string]string{}
	sbom = uuidRE.ReplaceAllFunc(sbom, func(u []byte) []byte {
		if r, ok := seen[string(u)]; ok {
			return []byte(r)
		}
		h := sha256.Sum256(fmt.Appendf(nil, "%s#%d", subject, len(seen)))
		h[6], h[8] = h[6]&0x0f|0x50, h[8]&0x3f|0x80 // a version-5-shaped UUID
		r := fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
		seen[string(u)] = r
		return []byte(r)
	})
	var doc map[string]any
	if json.Unmarshal(sbom, &doc) != nil {
		return sbom
	}
	if md, ok := doc["metadata"].(map[string]any); ok {
		md["timestamp"] = created.UTC().Format(time.RFC3339)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if enc.Encode(doc) != nil {
		return sbom
	}
	return b.Bytes()
}

// artifact is an OCI 1.1 artifact manifest: a "{}" config, one blob, a subject.
type artifact struct {
	raw  []byte
	blob v1.Layer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return emptyConfig, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.raw, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, _ := a.blob.Digest(); d == h {
		return a.blob, nil
	}
	if h == emptyDigest() {
		return static.NewLayer(emptyConfig, CycloneDXType), nil
	}
	return nil, fmt.Errorf("artifact has no blob %s", h)
}

func emptyDigest() v1.Hash {
	h, _, _ := v1.SHA256(bytes.NewReader(emptyConfig))
	return h
}

// SBOMArtifact is the referrer that attaches sbom to subject: artifactType CycloneDX.
func SBOMArtifact(subject v1.Image, sbom []byte, created time.Time) (v1.Image, error) {
	sd, err := partial.Descriptor(subject)
	if err != nil {
		return nil, err
	}
	sub := v1.Descriptor{MediaType: sd.MediaType, Digest: sd.Digest, Size: sd.Size}
	blob := static.NewLayer(sbom, CycloneDXType)
	bd, _ := blob.Digest()
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  CycloneDXType,
		// The config's media type is the artifact type as well: registries that predate
		// OCI 1.1's artifactType field (go-containerregistry's, older Harbor) report a
		// referrer's type from it.
		Config: v1.Descriptor{MediaType: CycloneDXType, Digest: emptyDigest(), Size: int64(len(emptyConfig))},
		Layers: []v1.Descriptor{{MediaType: CycloneDXType, Digest: bd, Size: int64(len(sbom)),
			Annotations: map[string]string{"org.opencontainers.image.title": "sbom.cdx.json"}}},
		Subject:     &sub,
		Annotations: map[string]string{"org.opencontainers.image.created": created.UTC().Format(time.RFC3339)},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifact{raw: raw, blob: blob})
}

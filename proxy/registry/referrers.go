package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// serveReferrers answers GET /v2/<name>/referrers/<digest>: the mirror's list, filtered
// by artifactType when asked, for a subject the gate allows in this repository.
func (reg *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
	dgst, err := digest.Parse(rt.Ref)
	if err != nil {
		return httpx.DigestInvalid("invalid digest %q: %v", rt.Ref, err)
	}
	if sj, ok := reg.gate.(SubjectJudger); ok {
		allowed, known, reason := sj.Subject(r.Context(), rt.Key, dgst)
		switch {
		case known && !allowed:
			return httpx.Denied("%s@%s is denied, and so are its signatures, attestations and SBOMs: %s", rt.Key, dgst, reason)
		case !known:
			// Nothing is said about an image this proxy has not vetted: an empty list, as
			// the spec has for an unknown subject.
			return writeReferrers(w, r, nil)
		}
	}
	list, err := reg.mirror.Referrers(r.Context(), rt, dgst)
	if err != nil {
		return err
	}
	if at := r.URL.Query().Get("artifactType"); at != "" {
		filtered := list[:0]
		for _, d := range list {
			if d.ArtifactType == at {
				filtered = append(filtered, d)
			}
		}
		list = filtered
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeReferrers(w, r, list)
}

// SubjectJudger is a Gate that says whether an image is allowed for its referrers to be
// listed; known is false for one never pulled or judged.
type SubjectJudger interface {
	Subject(ctx context.Context, repo string, subject digest.Digest) (allowed, known bool, reason string)
}

func writeReferrers(w http.ResponseWriter, r *http.Request, list []storage.Descriptor) error {
	if list == nil {
		list = []storage.Descriptor{}
	}
	body, err := json.Marshal(struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		Manifests     []storage.Descriptor `json:"manifests"`
	}{2, string(types.OCIImageIndex), list})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", string(types.OCIImageIndex))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

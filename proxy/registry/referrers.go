package registry

import (
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
// by artifactType when asked.
func (reg *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
	dgst, err := digest.Parse(rt.Ref)
	if err != nil {
		return httpx.DigestInvalid("invalid digest %q: %v", rt.Ref, err)
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

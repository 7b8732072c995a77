package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// serveReferrers answers GET /v2/<name>/referrers/<digest>: the upstream's answer (its
// referrers API, or the tag schema fallback) merged with the stored manifests whose
// subject is the digest, filtered by artifactType when asked.
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, rt *route) error {
	dgst, err := digest.Parse(rt.ref)
	if err != nil {
		return httpx.DigestInvalid("invalid digest %q: %v", rt.ref, err)
	}
	var list []storage.Descriptor
	seen := map[digest.Digest]bool{}
	uctx, cancel := s.detach(r.Context())
	defer cancel()
	idx, err := remote.Referrers(rt.up.repo(rt.repo).Digest(dgst.String()), remote.Reuse(rt.up.puller), remote.WithContext(uctx))
	if err == nil {
		m, ierr := idx.IndexManifest()
		if ierr == nil {
			for _, d := range m.Manifests {
				dd := digest.Digest(d.Digest.String())
				seen[dd] = true
				list = append(list, storage.Descriptor{MediaType: string(d.MediaType), Digest: dd, Size: d.Size, ArtifactType: d.ArtifactType, Annotations: d.Annotations})
			}
		}
	} else {
		s.log.Warn("upstream referrers unavailable, answering from the store", "repository", rt.key, "subject", dgst, "err", err)
	}
	local, err := s.store.Referrers(rt.key, dgst)
	if err != nil {
		return err
	}
	for _, d := range local {
		if !seen[d.Digest] {
			list = append(list, d)
		}
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

package registry

import (
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// serveBlob answers GET/HEAD /v2/<name>/blobs/<digest> from the mirror.
func (reg *Registry) serveBlob(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
	dgst, err := digest.Parse(rt.Ref)
	if err != nil {
		return httpx.DigestInvalid("invalid digest %q: %v", rt.Ref, err)
	}
	return reg.mirror.ServeBlob(w, r, rt, dgst)
}

package registry

import (
	"context"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// Judger is a Gate that can answer from what it already knows, without scanning: how a
// blob request is judged (by the manifests that own the blob). A Gate without it is
// asked Check.
type Judger interface {
	Judged(ctx context.Context, m gate.Manifest) (v gate.Verdict, known bool)
}

// serveBlob answers GET/HEAD /v2/<name>/blobs/<digest>: only a blob that a manifest of
// this repository, allowed for this request, references; nothing is fetched for one
// that none does.
func (reg *Registry) serveBlob(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
	dgst, err := digest.Parse(rt.Ref)
	if err != nil {
		return httpx.DigestInvalid("invalid digest %q: %v", rt.Ref, err)
	}
	if err := reg.blobAllowed(r.Context(), rt, dgst); err != nil {
		return err
	}
	return reg.mirror.ServeBlob(w, r, rt, dgst)
}

// blobAllowed finds a manifest of rt's repository that references dgst and that the
// gate allows; the error says why there is none.
func (reg *Registry) blobAllowed(ctx context.Context, rt *mirror.Route, dgst digest.Digest) error {
	owners, err := reg.mirror.Owners(rt.Key, dgst)
	if err != nil {
		return err
	}
	var denied *gate.Verdict
	var deniedBy digest.Digest
	for _, o := range owners {
		m := gate.Manifest{Repository: rt.Key, Descriptor: v1.Descriptor{Digest: v1.Hash{Algorithm: o.Algorithm().String(), Hex: o.Encoded()}}}
		var v gate.Verdict
		known := true
		if j, ok := reg.gate.(Judger); ok {
			v, known = j.Judged(ctx, m)
		} else if v, err = reg.gate.Check(ctx, m); err != nil {
			return err
		}
		if known && v.Allowed {
			return nil
		}
		if known && denied == nil {
			denied, deniedBy = &v, o
		}
	}
	if denied != nil {
		return httpx.Denied("blob %s of %s belongs to %s@%s, which is denied: %s", dgst, rt.Key, rt.Key, deniedBy, denied.Message)
	}
	if len(owners) > 0 {
		return httpx.BlobUnknown("blob %s belongs only to manifests of %s that were not judged yet; pull the image's manifest first", dgst, rt.Key)
	}
	return httpx.BlobUnknown("blob %s is not part of any image this proxy has served from %s; pull the image's manifest first", dgst, rt.Key)
}

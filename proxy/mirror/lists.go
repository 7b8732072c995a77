package mirror

import (
	"context"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// Tags lists rt's tags from the upstream; when it cannot answer, the tags this proxy
// has resolved stand in.
func (m *Mirror) Tags(ctx context.Context, rt *Route) ([]string, error) {
	uctx, cancel := m.detach(ctx)
	defer cancel()
	tags, err := rt.up.puller.List(uctx, rt.up.repo(rt.Repo))
	if err != nil {
		local, lerr := m.store.Tags(rt.Key)
		if !recoverable(err) || lerr != nil || len(local) == 0 {
			return nil, upstreamErr(err, rt, "")
		}
		m.log.Warn("upstream unavailable, listing known tags", "repository", rt.Key, "err", err)
		tags = local
	}
	return tags, nil
}

// Referrers lists the manifests whose subject is dgst: the upstream's answer (its
// referrers API, or the tag schema fallback) merged with the stored ones.
func (m *Mirror) Referrers(ctx context.Context, rt *Route, dgst digest.Digest) ([]storage.Descriptor, error) {
	var list []storage.Descriptor
	seen := map[digest.Digest]bool{}
	uctx, cancel := m.detach(ctx)
	defer cancel()
	idx, err := remote.Referrers(rt.up.repo(rt.Repo).Digest(dgst.String()), remote.Reuse(rt.up.puller), remote.WithContext(uctx))
	if err == nil {
		im, ierr := idx.IndexManifest()
		if ierr == nil {
			for _, d := range im.Manifests {
				dd := digest.Digest(d.Digest.String())
				seen[dd] = true
				list = append(list, storage.Descriptor{MediaType: string(d.MediaType), Digest: dd, Size: d.Size, ArtifactType: d.ArtifactType, Annotations: d.Annotations})
			}
		}
	} else {
		m.log.Warn("upstream referrers unavailable, answering from the store", "repository", rt.Key, "subject", dgst, "err", err)
	}
	local, err := m.store.Referrers(rt.Key, dgst)
	if err != nil {
		return nil, err
	}
	for _, d := range local {
		if !seen[d.Digest] {
			list = append(list, d)
		}
	}
	return list, nil
}

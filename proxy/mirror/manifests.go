package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// ResolveTag returns the digest repo:tag points to: from the store while its TTL holds,
// else from the upstream (one HEAD shared by concurrent requests). When the upstream is
// unreachable, answers 5xx or rate-limits us, the last known digest is served.
func (m *Mirror) ResolveTag(ctx context.Context, rt *Route, tag string) (digest.Digest, error) {
	return m.ResolveTagTTL(ctx, rt, tag, rt.up.tagTTL)
}

// ResolveTagTTL is ResolveTag with the TTL given (0: always ask the upstream).
func (m *Mirror) ResolveTagTTL(ctx context.Context, rt *Route, tag string, ttl time.Duration) (digest.Digest, error) {
	known, kerr := m.store.Tag(rt.Key, tag)
	if kerr == nil && m.now().Sub(known.FetchedAt) < ttl {
		return known.Digest, nil
	}
	if kerr == nil && rt.up.health.down(m.now()) {
		// The upstream failed at the network level a moment ago: do not make this pull
		// wait for it again, the store's answer stands in until the back-off passes.
		return known.Digest, nil
	}
	v, err, _ := m.sf.Do("tag\x00"+rt.Key+"\x00"+tag, func() (any, error) {
		// A flight that ended between the read above and this one has stored the tag:
		// look again rather than ask the upstream a second time.
		if again, err := m.store.Tag(rt.Key, tag); err == nil && (kerr != nil || again.FetchedAt.After(known.FetchedAt)) && m.now().Sub(again.FetchedAt) < ttl {
			return again.Digest, nil
		}
		uctx, cancel := m.detach(ctx)
		defer cancel()
		if kerr != nil {
			rt.Missed = true
			// A tag never seen: one GET brings the manifest, whose bytes define its digest.
			return m.fetchTagged(uctx, rt, tag)
		}
		desc, err := rt.up.puller.Head(uctx, rt.up.repo(rt.Repo).Tag(tag))
		m.noteResult(rt.up, err)
		if err != nil {
			if recoverable(err) {
				m.log.Warn("upstream unavailable, serving last known tag (stale-if-error)",
					"repository", rt.Key, "tag", tag, "digest", known.Digest, "fetched_at", known.FetchedAt, "err", err)
				return known.Digest, nil
			}
			return nil, upstreamErr(err, rt, tag)
		}
		d := digest.Digest(desc.Digest.String())
		if err := m.store.SetTag(rt.Key, tag, d, m.now()); err != nil {
			return nil, err
		}
		m.refreshed(rt.Key, tag, d)
		return d, nil
	})
	if err != nil {
		return "", err
	}
	return v.(digest.Digest), nil
}

// fetchTagged GETs repo:tag from the upstream, stores the manifest under the digest of
// its bytes and records the tag.
func (m *Mirror) fetchTagged(ctx context.Context, rt *Route, tag string) (digest.Digest, error) {
	desc, err := rt.up.puller.Get(ctx, rt.up.repo(rt.Repo).Tag(tag))
	m.noteResult(rt.up, err)
	if err != nil {
		return "", upstreamErr(err, rt, tag)
	}
	dgst := digest.FromBytes(desc.Manifest)
	rec, refs := describeManifest(string(desc.MediaType), dgst, desc.Manifest)
	rec.StoredAt = m.now()
	if err := m.store.PutTaggedManifest(rt.Key, tag, m.now(), rec, desc.Manifest, refs...); err != nil {
		return "", err
	}
	return dgst, nil
}

// Manifest returns a manifest of repo from the store or, on a miss, fetches it by
// digest from the upstream, verifies it and stores it (one fetch for concurrent misses).
func (m *Mirror) Manifest(ctx context.Context, rt *Route, dgst digest.Digest) (storage.ManifestRecord, []byte, error) {
	rec, raw, err := m.store.Manifest(rt.Key, dgst)
	if err == nil {
		return rec, raw, nil
	}
	rt.Missed = true
	if !errors.Is(err, storage.ErrNotFound) {
		return rec, nil, err
	}
	type result struct {
		rec storage.ManifestRecord
		raw []byte
	}
	v, err, _ := m.sf.Do("manifest\x00"+rt.Key+"\x00"+dgst.String(), func() (any, error) {
		if rec, raw, err := m.store.Manifest(rt.Key, dgst); err == nil {
			return result{rec, raw}, nil // stored by a flight that ended a moment ago
		}
		uctx, cancel := m.detach(ctx)
		defer cancel()
		desc, err := rt.up.puller.Get(uctx, rt.up.repo(rt.Repo).Digest(dgst.String()))
		m.noteResult(rt.up, err)
		if err != nil {
			return nil, upstreamErr(err, rt, dgst.String())
		}
		raw := desc.Manifest
		if dgst.Algorithm().FromBytes(raw) != dgst {
			m.log.Error("upstream manifest does not match its digest", "repository", rt.Key, "digest", dgst)
			return nil, httpx.Upstream("upstream %s returned a manifest that does not match digest %s; nothing was stored", rt.up.name, dgst)
		}
		rec, refs := describeManifest(string(desc.MediaType), dgst, raw)
		rec.StoredAt = m.now()
		if err := m.store.PutManifest(rt.Key, rec, raw, refs...); err != nil {
			return nil, err
		}
		return result{rec, raw}, nil
	})
	if err != nil {
		return rec, nil, err
	}
	res := v.(result)
	return res.rec, res.raw, nil
}

// ManifestFields are the parts of any manifest or index the proxy reads.
type ManifestFields struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest digest.Digest `json:"digest"`
	} `json:"layers"`
	Manifests []struct {
		Digest   digest.Digest `json:"digest"`
		Platform *v1.Platform  `json:"platform"`
	} `json:"manifests"`
	Subject *struct {
		Digest digest.Digest `json:"digest"`
	} `json:"subject"`
	Annotations map[string]string `json:"annotations"`
}

// describeManifest builds the store record of a manifest and lists the blobs it references.
func describeManifest(contentType string, dgst digest.Digest, raw []byte) (storage.ManifestRecord, []digest.Digest) {
	var m ManifestFields
	_ = json.Unmarshal(raw, &m) // an unparsable manifest is still served as the upstream sent it
	mt := contentType
	if mt == "" || mt == "application/json" || mt == "text/plain" {
		mt = m.MediaType
	}
	if mt == "" {
		mt = string(types.DockerManifestSchema2)
	}
	rec := storage.ManifestRecord{Descriptor: storage.Descriptor{
		MediaType:    mt,
		Digest:       dgst,
		Size:         int64(len(raw)),
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	}}
	var refs []digest.Digest
	if m.Config != nil {
		if rec.ArtifactType == "" && !IsIndex(mt) {
			rec.ArtifactType = m.Config.MediaType
		}
		refs = append(refs, m.Config.Digest)
	}
	for _, l := range m.Layers {
		refs = append(refs, l.Digest)
	}
	if m.Subject != nil {
		rec.Subject = m.Subject.Digest
	}
	return rec, refs
}

// IsIndex reports whether mt is an image index (OCI or Docker).
func IsIndex(mt string) bool {
	return mt == string(types.OCIImageIndex) || mt == string(types.DockerManifestList)
}

// DescriptorOf is a stored manifest as a descriptor.
func DescriptorOf(rec storage.ManifestRecord) v1.Descriptor {
	return v1.Descriptor{MediaType: types.MediaType(rec.MediaType), Digest: toHash(rec.Digest), Size: rec.Size}
}

func toHash(d digest.Digest) v1.Hash {
	return v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
}

// upstreamStatus is the HTTP status of an upstream error, 0 for a network failure.
func upstreamStatus(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// recoverable errors are the upstream's trouble, not an answer: cached content may stand in.
func recoverable(err error) bool {
	var le *limitError
	if errors.As(err, &le) {
		return false
	}
	st := upstreamStatus(err)
	return st == 0 || st >= 500 || st == http.StatusTooManyRequests
}

// upstreamErr turns an upstream failure into the error the client sees.
func upstreamErr(err error, rt *Route, ref string) error {
	var re *httpx.Error
	if errors.As(err, &re) {
		return re
	}
	var le *limitError
	if errors.As(err, &le) {
		return httpx.Denied("%s:%s from upstream %s is refused: %s; nothing was stored. Ask the platform team to raise the limit if the image is genuine", rt.Key, ref, rt.up.name, le.msg)
	}
	switch st := upstreamStatus(err); {
	case st == http.StatusNotFound:
		if rt.Kind == KindBlob {
			return httpx.BlobUnknown("%s@%s is not known upstream", rt.Key, ref)
		}
		if rt.Kind == KindTags {
			return httpx.NameUnknown("repository %s is not known upstream", rt.Key)
		}
		return httpx.ManifestUnknown("manifest %s of %s is not known upstream", ref, rt.Key)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return httpx.NameUnknown("upstream %s refused access to %s (HTTP %d) for %s: the repository does not exist there, or the credentials this proxy uses for %s (it pulls %s) do not give access to it; check upstreams[%s].auth",
			rt.up.name, rt.Repo, st, ref, rt.up.name, rt.up.creds, rt.up.name)
	case st == http.StatusTooManyRequests:
		e := httpx.TooManyRequests("upstream %s is rate-limiting this proxy and %s:%s is not cached; try again later", rt.up.name, rt.Key, ref)
		e.RetryAfter = rt.up.health.retryAfterSecs()
		return e
	default:
		return httpx.Upstream("upstream %s failed for %s:%s: %v", rt.up.name, rt.Key, ref, err)
	}
}

package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

var reTag = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// serveManifest answers GET/HEAD /v2/<name>/manifests/<ref>: resolve a tag, load the
// manifest from the store or ingest it, ask the gate, then serve the exact bytes.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, rt *route) error {
	ctx := r.Context()
	var dgst digest.Digest
	tag := ""
	switch {
	case strings.Contains(rt.ref, ":"):
		d, err := digest.Parse(rt.ref)
		if err != nil {
			return httpx.DigestInvalid("invalid digest %q: %v", rt.ref, err)
		}
		dgst = d
	case reTag.MatchString(rt.ref):
		tag = rt.ref
		d, err := s.resolveTag(ctx, rt, tag)
		if err != nil {
			return err
		}
		dgst = d
	default:
		return httpx.ManifestUnknown("invalid tag %q", rt.ref)
	}
	rec, raw, err := s.loadManifest(ctx, rt, dgst)
	if err != nil {
		return err
	}
	// A client that cannot read an index gets the default platform's manifest, as
	// distribution does; by digest the exact manifest asked for is always served.
	if tag != "" && isIndex(rec.MediaType) && !accepts(r, rec.MediaType) {
		child, ok := defaultPlatform(raw)
		if !ok {
			return httpx.ManifestUnknown("%s:%s is an image index with no linux/amd64 manifest and the client does not accept indexes", rt.key, tag)
		}
		if rec, raw, err = s.loadManifest(ctx, rt, child); err != nil {
			return err
		}
	}
	result := "hit"
	if rt.missed {
		result = "miss"
	}
	s.metrics.cache.WithLabelValues("manifest", result).Inc()
	verdict, err := s.check.Check(ctx, gate.Manifest{
		Repository: rt.key,
		Tag:        tag,
		Descriptor: descriptorOf(rec),
	})
	if err != nil {
		return err
	}
	if !verdict.Allowed {
		e := httpx.Denied("%s", verdict.Message)
		e.Detail = map[string]string{"repository": rt.key, "reference": rt.ref, "digest": rec.Digest.String(), "rule": verdict.Rule,
			"report": gate.ReportPath(rt.key, rec.Digest.String())}
		return e
	}
	s.pulls.mark(rt.key, rec.Digest, s.now())
	h := w.Header()
	h.Set("Content-Type", rec.MediaType)
	h.Set("Docker-Content-Digest", rec.Digest.String())
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	h.Set("ETag", `"`+rec.Digest.String()+`"`)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, err = w.Write(raw)
	return err
}

// resolveTag returns the digest repo:tag points to: from the store while its TTL holds,
// else from the upstream (one HEAD shared by concurrent requests). When the upstream is
// unreachable, answers 5xx or rate-limits us, the last known digest is served.
func (s *Server) resolveTag(ctx context.Context, rt *route, tag string) (digest.Digest, error) {
	return s.resolveTagTTL(ctx, rt, tag, rt.up.tagTTL)
}

// resolveTagTTL is resolveTag with the TTL given (0: always ask the upstream).
func (s *Server) resolveTagTTL(ctx context.Context, rt *route, tag string, ttl time.Duration) (digest.Digest, error) {
	known, kerr := s.store.Tag(rt.key, tag)
	if kerr == nil && s.now().Sub(known.FetchedAt) < ttl {
		return known.Digest, nil
	}
	v, err, _ := s.sf.Do("tag\x00"+rt.key+"\x00"+tag, func() (any, error) {
		uctx, cancel := s.detach(ctx)
		defer cancel()
		if kerr != nil {
			rt.missed = true
			// A tag never seen: one GET brings the manifest, whose bytes define its digest.
			return s.fetchTagged(uctx, rt, tag)
		}
		desc, err := rt.up.puller.Head(uctx, rt.up.repo(rt.repo).Tag(tag))
		if err != nil {
			if recoverable(err) {
				s.log.Warn("upstream unavailable, serving last known tag (stale-if-error)",
					"repository", rt.key, "tag", tag, "digest", known.Digest, "fetched_at", known.FetchedAt, "err", err)
				return known.Digest, nil
			}
			return nil, upstreamErr(err, rt, tag)
		}
		d := digest.Digest(desc.Digest.String())
		if err := s.store.SetTag(rt.key, tag, d, s.now()); err != nil {
			return nil, err
		}
		return d, nil
	})
	if err != nil {
		return "", err
	}
	return v.(digest.Digest), nil
}

// fetchTagged GETs repo:tag from the upstream, stores the manifest under the digest of
// its bytes and records the tag.
func (s *Server) fetchTagged(ctx context.Context, rt *route, tag string) (digest.Digest, error) {
	desc, err := rt.up.puller.Get(ctx, rt.up.repo(rt.repo).Tag(tag))
	if err != nil {
		return "", upstreamErr(err, rt, tag)
	}
	dgst := digest.FromBytes(desc.Manifest)
	rec, refs := describeManifest(string(desc.MediaType), dgst, desc.Manifest)
	rec.StoredAt = s.now()
	if err := s.store.PutTaggedManifest(rt.key, tag, s.now(), rec, desc.Manifest, refs...); err != nil {
		return "", err
	}
	return dgst, nil
}

// loadManifest returns a manifest of repo from the store or, on a miss, fetches it by
// digest from the upstream, verifies it and stores it (one fetch for concurrent misses).
func (s *Server) loadManifest(ctx context.Context, rt *route, dgst digest.Digest) (storage.ManifestRecord, []byte, error) {
	rec, raw, err := s.store.Manifest(rt.key, dgst)
	if err == nil {
		return rec, raw, nil
	}
	rt.missed = true
	if !errors.Is(err, storage.ErrNotFound) {
		return rec, nil, err
	}
	type result struct {
		rec storage.ManifestRecord
		raw []byte
	}
	v, err, _ := s.sf.Do("manifest\x00"+rt.key+"\x00"+dgst.String(), func() (any, error) {
		uctx, cancel := s.detach(ctx)
		defer cancel()
		desc, err := rt.up.puller.Get(uctx, rt.up.repo(rt.repo).Digest(dgst.String()))
		if err != nil {
			return nil, upstreamErr(err, rt, dgst.String())
		}
		raw := desc.Manifest
		if dgst.Algorithm().FromBytes(raw) != dgst {
			s.log.Error("upstream manifest does not match its digest", "repository", rt.key, "digest", dgst)
			return nil, httpx.Upstream("upstream %s returned a manifest that does not match digest %s; nothing was stored", rt.up.name, dgst)
		}
		rec, refs := describeManifest(string(desc.MediaType), dgst, raw)
		rec.StoredAt = s.now()
		if err := s.store.PutManifest(rt.key, rec, raw, refs...); err != nil {
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

// manifestFields are the parts of any manifest or index the proxy reads.
type manifestFields struct {
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
	var m manifestFields
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
		if rec.ArtifactType == "" && !isIndex(mt) {
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

func isIndex(mt string) bool {
	return mt == string(types.OCIImageIndex) || mt == string(types.DockerManifestList)
}

// accepts reports whether the request's Accept header admits media type mt. No Accept
// header admits everything.
func accepts(r *http.Request, mt string) bool {
	vals := r.Header.Values("Accept")
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		for _, a := range strings.Split(v, ",") {
			a, _, _ = strings.Cut(a, ";")
			a = strings.TrimSpace(a)
			if a == mt || a == "*/*" {
				return true
			}
		}
	}
	return false
}

// defaultPlatform picks the linux/amd64 manifest of an index.
func defaultPlatform(raw []byte) (digest.Digest, bool) {
	var m manifestFields
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", false
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == "amd64" {
			return c.Digest, true
		}
	}
	return "", false
}

func descriptorOf(rec storage.ManifestRecord) v1.Descriptor {
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
	st := upstreamStatus(err)
	return st == 0 || st >= 500 || st == http.StatusTooManyRequests
}

// upstreamErr turns an upstream failure into the error the client sees.
func upstreamErr(err error, rt *route, ref string) error {
	var re *httpx.Error
	if errors.As(err, &re) {
		return re
	}
	switch st := upstreamStatus(err); {
	case st == http.StatusNotFound:
		if rt.kind == kindBlob {
			return httpx.BlobUnknown("%s@%s is not known upstream", rt.key, ref)
		}
		if rt.kind == kindTags {
			return httpx.NameUnknown("repository %s is not known upstream", rt.key)
		}
		return httpx.ManifestUnknown("manifest %s of %s is not known upstream", ref, rt.key)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return httpx.NameUnknown("upstream %s refused access to %s: the repository does not exist there or needs credentials this proxy does not have", rt.up.name, rt.repo)
	case st == http.StatusTooManyRequests:
		return httpx.TooManyRequests("upstream %s is rate-limiting this proxy and %s:%s is not cached; try again later", rt.up.name, rt.key, ref)
	default:
		return httpx.Upstream("upstream %s failed for %s:%s: %v", rt.up.name, rt.key, ref, err)
	}
}

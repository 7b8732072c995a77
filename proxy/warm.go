package proxy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/mirror"
)

// WarmResult is what warming one image reference did.
type WarmResult struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
	// Verdict is allowed, denied or error; for an index, the worst of its platforms.
	Verdict   string         `json:"verdict"`
	Counts    map[string]int `json:"counts,omitempty"`
	Platforms int            `json:"platforms,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// Warm pulls ref into the store and through the gate as a client's first pull would,
// re-resolving its tag whatever the TTL, so the first developer pull is already warm
// and a moved tag's new digest is scanned before anyone asks. For an index, every
// platform image is judged.
func (s *Server) Warm(ctx context.Context, ref string) WarmResult {
	res := WarmResult{Ref: ref, Verdict: "error"}
	fail := func(err error) WarmResult { res.Error = err.Error(); return res }
	r, err := name.ParseReference(ref)
	if err != nil {
		return fail(err)
	}
	key := gate.RepositoryOf(r)
	if !s.allow.Allowed(key) {
		return fail(fmt.Errorf("%s", gate.NotAllowedMessage(key)))
	}
	rt, err := s.mirror.RouteFor(key)
	if err != nil {
		return fail(err)
	}
	var dgst digest.Digest
	tag := ""
	if t, ok := r.(name.Tag); ok {
		tag = t.TagStr()
		if dgst, err = s.mirror.ResolveTagTTL(ctx, rt, tag, 0); err != nil {
			return fail(err)
		}
	} else {
		dgst = digest.Digest(r.Identifier())
	}
	res.Digest = dgst.String()
	mrec, raw, err := s.mirror.Manifest(ctx, rt, dgst)
	if err != nil {
		return fail(err)
	}
	targets := []digest.Digest{dgst}
	if mirror.IsIndex(mrec.MediaType) {
		var m mirror.ManifestFields
		if err := json.Unmarshal(raw, &m); err != nil {
			return fail(err)
		}
		targets = targets[:0]
		for _, c := range m.Manifests {
			targets = append(targets, c.Digest)
		}
	}
	res.Verdict, res.Counts = "allowed", map[string]int{}
	for _, d := range targets {
		crec, _, err := s.mirror.Manifest(ctx, rt, d)
		if err != nil {
			return fail(err)
		}
		v, err := s.check.Check(ctx, gate.Manifest{Repository: rt.Key, Tag: tag, Descriptor: mirror.DescriptorOf(crec), Warm: true})
		if err != nil {
			return fail(err)
		}
		res.Platforms++
		if !v.Allowed {
			res.Verdict = "denied"
			if res.Error == "" {
				res.Error = v.Message
			}
		}
		if s.gate != nil {
			if j := s.gate.Judgement(rt.Key, d); j != nil {
				for sev, n := range j.Verdict.Counts {
					res.Counts[sev] += n
				}
			}
		}
	}
	if res.Verdict == "allowed" {
		res.Error = ""
	}
	return res
}

// WarmAll warms every reference, in order.
func (s *Server) WarmAll(ctx context.Context, refs []string) []WarmResult {
	out := make([]WarmResult, 0, len(refs))
	for _, r := range refs {
		if ctx.Err() != nil {
			break
		}
		w := s.Warm(ctx, r)
		s.log.Info("warm", "ref", r, "digest", w.Digest, "verdict", w.Verdict, "err", w.Error)
		out = append(out, w)
	}
	return out
}

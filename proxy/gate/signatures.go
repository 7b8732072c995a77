package gate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/trust"
)

// SignatureFinder finds upstream what is attached to a manifest (signatures,
// attestations, SBOMs: referrers and cosign's legacy tags), stores each with its blobs,
// and says how each was found, by digest; the mirror implements it.
type SignatureFinder interface {
	FindAttached(ctx context.Context, repo string, subject digest.Digest) (map[digest.Digest]string, error)
}

// TrustVerifier verifies a digest's signature material against key files and the
// trusted root, offline; trust.Verifier implements it.
type TrustVerifier interface {
	Verify(subject digest.Digest, mats []trust.Material, keys []string) *policy.Trust
	// Refresh re-reads the trusted root and key files that changed on disk.
	Refresh() (changed bool, err error)
}

// SignatureFacts is what was found attached to a digest: the signature material, a fact
// of the digest (whoever asked), verified per judgement with the judging policy's keys.
type SignatureFacts struct {
	CheckedAt time.Time        `json:"checkedAt"`
	Material  []trust.Material `json:"material,omitempty"`
	// Error says why the upstream could not be asked (some or all of it).
	Error string `json:"error,omitempty"`
}

// same reports whether two lookups found the same material.
func (s *SignatureFacts) same(o *SignatureFacts) bool {
	if s == nil || o == nil {
		return s == o
	}
	ids := func(ms []trust.Material) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID())
		}
		slices.Sort(out)
		return out
	}
	return s.Error == o.Error && slices.Equal(ids(s.Material), ids(o.Material))
}

// lookupSignatures reports whether signatures are looked up when an image is mirrored:
// when configured to, or when a policy judges them.
func (g *Gate) lookupSignatures() bool {
	return g.signatures != nil && (g.discover || g.policy.Load().UsesTrust())
}

// findSignatures asks the upstream what is attached to dgst and reads the signature
// material of it from the store.
func (g *Gate) findSignatures(ctx context.Context, source string, dgst digest.Digest) *SignatureFacts {
	sf := &SignatureFacts{CheckedAt: g.now().UTC()}
	found, err := g.signatures.FindAttached(ctx, source, dgst)
	if err != nil {
		sf.Error = err.Error()
	}
	for d, via := range found {
		_, raw, err := g.store.Manifest(source, d)
		if err != nil {
			sf.Error = joinErr(sf.Error, fmt.Sprintf("%s: %v", via, err))
			continue
		}
		mats, err := trust.Extract(d, raw, via, func(b digest.Digest, _ int64) ([]byte, error) { return g.store.ReadBlob(ctx, b) })
		if err != nil {
			sf.Error = joinErr(sf.Error, err.Error())
			continue
		}
		sf.Material = append(sf.Material, mats...)
	}
	slices.SortFunc(sf.Material, func(a, b trust.Material) int { return strings.Compare(a.Via+a.ID(), b.Via+b.ID()) })
	return sf
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// ensureSignatures looks up the signatures of an image whose facts have none (it was
// mirrored before a policy judged them), once however many pulls ask.
func (g *Gate) ensureSignatures(ctx context.Context, f *Facts, repo string) *Facts {
	if f.State != stateScanned || f.Signatures != nil || !g.lookupSignatures() {
		return f
	}
	res, _, _ := g.sf.Do("signatures\x00"+f.Digest, func() (any, error) {
		bctx, done := g.life.Background(ctx)
		defer done()
		source := f.Source
		if source == "" {
			source = repo
		}
		next := *f
		next.Signatures = g.findSignatures(bctx, source, digest.Digest(f.Digest))
		if err := g.save(&next, nil); err != nil {
			g.log.Warn("could not record signatures", "digest", f.Digest, "err", err)
		}
		return &next, nil
	})
	return res.(*Facts)
}

// mirrorIndexSignatures mirrors, in the background and once per index since start, what
// is attached to an index (cosign signs the index a tag names): it is not judged — each
// platform is — but clients verifying the tag through the proxy find it stored.
func (g *Gate) mirrorIndexSignatures(repo string, dgst digest.Digest) {
	if !g.lookupSignatures() {
		return
	}
	if _, seen := g.indexes.LoadOrStore(repo+"@"+dgst.String(), true); seen {
		return
	}
	ctx, done := g.life.Background(context.Background())
	go func() {
		defer done()
		if _, err := g.signatures.FindAttached(ctx, repo, dgst); err != nil {
			g.log.Warn("could not mirror the signatures of an index", "repository", repo, "digest", dgst, "err", err)
		}
	}()
}

// RefreshSignatures looks again for what is attached to a digest whose tag was checked
// with the upstream (newly published signatures are picked up on the tag refresh) and
// judges the digest again when it changed. It runs in the background.
func (g *Gate) RefreshSignatures(repo string, dgst digest.Digest) {
	if !g.lookupSignatures() {
		return
	}
	ctx, done := g.life.Background(context.Background())
	go func() {
		defer done()
		_, _, _ = g.sf.Do("refresh-signatures\x00"+dgst.String(), func() (any, error) {
			f, err := g.load(dgst)
			if err != nil || f.State != stateScanned {
				if rec, ok := g.store.HasManifest(repo, dgst); ok && types.MediaType(rec.MediaType).IsIndex() {
					_, err := g.signatures.FindAttached(ctx, repo, dgst)
					return nil, err
				}
				return nil, nil
			}
			source := f.Source
			if source == "" {
				source = repo
			}
			sf := g.findSignatures(ctx, source, dgst)
			if sf.same(f.Signatures) {
				return nil, nil
			}
			f.Signatures = sf
			if err := g.save(f, nil); err != nil {
				return nil, err
			}
			if g.life.Begin() {
				defer g.life.End()
				if _, flipped, err := g.rejudge(map[digest.Digest]bool{dgst: true}); err == nil && flipped > 0 {
					g.log.Info("signatures changed upstream: verdicts re-evaluated", "digest", dgst, "flipped", flipped)
				}
			}
			return nil, nil
		})
	}()
}

// trustOf verifies a digest's stored signature material for policy p.
func (g *Gate) trustOf(f *Facts, p *policy.Policy) *policy.Trust {
	if f.Signatures == nil {
		return &policy.Trust{NotLooked: true}
	}
	var keys []string
	if p.Signatures != nil {
		keys = p.Signatures.Keys
	}
	var t *policy.Trust
	if g.verifier != nil {
		t = g.verifier.Verify(digest.Digest(f.Digest), f.Signatures.Material, keys)
	} else {
		t = &policy.Trust{}
		if len(f.Signatures.Material) > 0 {
			t.Problems = []string{"no verifier is configured"}
		}
	}
	t.Error = f.Signatures.Error
	return t
}

// WatchTrust re-reads the trusted root and the key files every interval and, when one
// changed, judges every recorded verdict again from the stored signature material (no
// layer is read, nothing is fetched). It returns when ctx ends.
func (g *Gate) WatchTrust(ctx context.Context, every time.Duration) {
	if g.verifier == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := g.TrustChanged(); err != nil {
			g.log.Error("trust material changed but could not be read: keyless signatures fail until it is fixed", "err", err)
		}
	}
}

// TrustChanged re-reads the trusted root and key files now and, when one changed, judges
// every recorded verdict again. It returns how many flipped.
func (g *Gate) TrustChanged() (flipped int, err error) {
	changed, rerr := g.verifier.Refresh()
	if !changed {
		return 0, rerr
	}
	g.memo.clear()
	flipped, err = g.Rejudge()
	g.log.Info("trusted root or keys changed: verdicts re-evaluated", "flipped", flipped)
	if rerr != nil {
		return flipped, rerr
	}
	return flipped, err
}

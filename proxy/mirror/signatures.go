package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// maxAttached bounds the signatures and attestations mirrored per manifest: a subject
// with thousands of referrers is the upstream's problem, not a reason to fetch them all.
const maxAttached = 64

// maxAttachedBlob bounds one blob of a signature, attestation or SBOM manifest that is
// mirrored with its subject; bigger ones (a large SBOM attachment) are left to be
// fetched when a client asks for them.
const maxAttachedBlob = 4 << 20

// Legacy tag suffixes cosign attaches to sha256-<hex>: signatures, attestations, SBOMs.
var legacySuffixes = []string{"sig", "att", "sbom"}

// FindAttached finds upstream the signatures, attestations and SBOMs attached to the
// manifest subject of repo ("<upstream>/<repository>") — its referrers (the referrers API
// or the sha256-<hex> tag-schema fallback) and cosign's sha256-<hex>.sig/.att/.sbom tags —
// and stores each with its blobs, exact bytes, so clients can verify through the proxy.
// It returns how each was found, by digest. A failure to ask is returned beside what was
// found; a tag that does not exist is no failure.
func (m *Mirror) FindAttached(ctx context.Context, repo string, subject digest.Digest) (map[digest.Digest]string, error) {
	rt, err := m.RouteFor(repo)
	if err != nil {
		return nil, err
	}
	found := map[digest.Digest]string{}
	var errs []error
	uctx, cancel := m.detach(ctx)
	idx, err := remote.Referrers(rt.up.repo(rt.Repo).Digest(subject.String()), remote.Reuse(rt.up.puller), remote.WithContext(uctx))
	cancel()
	if err == nil {
		if im, ierr := idx.IndexManifest(); ierr == nil {
			for _, d := range im.Manifests {
				if len(found) < maxAttached {
					found[digest.Digest(d.Digest.String())] = "referrer " + d.Digest.String()
				}
			}
		}
	} else {
		errs = append(errs, fmt.Errorf("referrers of %s: %w", subject, err))
	}
	// A HEAD per legacy tag (most do not exist; registries do not count HEADs against
	// pull limits), then the manifest by digest when it is not stored yet.
	tags := map[digest.Digest]string{}
	for _, suffix := range legacySuffixes {
		tag := "sha256-" + subject.Encoded() + "." + suffix
		uctx, cancel := m.detach(ctx)
		desc, err := rt.up.puller.Head(uctx, rt.up.repo(rt.Repo).Tag(tag))
		cancel()
		m.noteResult(rt.up, err)
		switch {
		case upstreamStatus(err) == http.StatusNotFound:
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("tag %s: %w", tag, upstreamErr(err, rt, tag)))
			continue
		}
		d := digest.Digest(desc.Digest.String())
		found[d], tags[d] = "tag "+tag, tag
	}
	for d, via := range found {
		if err := m.storeAttached(ctx, rt, d); err != nil {
			delete(found, d)
			errs = append(errs, fmt.Errorf("%s: %w", via, err))
			continue
		}
		if tag, ok := tags[d]; ok {
			if err := m.store.SetTag(rt.Key, tag, d, m.now()); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", via, err))
			}
		}
	}
	return found, errors.Join(errs...)
}

// storeAttached brings an attached manifest and its small blobs into the store.
func (m *Mirror) storeAttached(ctx context.Context, rt *Route, d digest.Digest) error {
	_, raw, err := m.Manifest(ctx, rt, d)
	if err != nil {
		return err
	}
	var mf struct {
		Config *struct {
			Digest digest.Digest `json:"digest"`
			Size   int64         `json:"size"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
			Size   int64         `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &mf); err != nil {
		return fmt.Errorf("unreadable manifest %s: %w", d, err)
	}
	blobs := mf.Layers
	if mf.Config != nil {
		blobs = append(blobs, *mf.Config)
	}
	for _, b := range blobs {
		if b.Size > maxAttachedBlob || b.Digest.Validate() != nil {
			continue
		}
		if err := m.ensureBlob(ctx, rt, b.Digest, nil); err != nil {
			return fmt.Errorf("blob %s: %w", b.Digest, err)
		}
	}
	return nil
}

// TagRefreshed is told of every tag the mirror checked with the upstream and found
// still or newly pointing at a digest: the gate looks for new signatures then.
type TagRefreshed func(repo string, d digest.Digest)

// OnTagRefresh sets what is told of tag refreshes; it must not block.
func (m *Mirror) OnTagRefresh(fn TagRefreshed) { m.onRefresh = fn }

func (m *Mirror) refreshed(repo, tag string, d digest.Digest) {
	if m.onRefresh != nil && !reLegacyTag.MatchString(tag) {
		m.onRefresh(repo, d)
	}
}

// reLegacyTag is a cosign attachment tag: refreshing one is no reason to look again.
var reLegacyTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$`)

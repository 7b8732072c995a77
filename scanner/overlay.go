package scanner

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// overlay is one scan's layer cache: what Trivy's analysis writes stays in the overlay
// (and is read back from it) until commit puts it in the shared cache. A scan may
// analyse layers whose bytes are still arriving, not yet checked against their digest;
// its analysis is committed only once they are (Verifier), so the shared cache never
// holds the analysis of bytes that were not the layer.
type overlay struct {
	cache.Cache
	mu        sync.Mutex
	artifacts map[string]types.ArtifactInfo
	blobs     map[string]types.BlobInfo
}

func newOverlay(c cache.Cache) *overlay {
	return &overlay{Cache: c, artifacts: map[string]types.ArtifactInfo{}, blobs: map[string]types.BlobInfo{}}
}

func (o *overlay) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	missingArtifact, missing, err := o.Cache.MissingBlobs(ctx, artifactID, blobIDs)
	if err != nil {
		return false, nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.artifacts[artifactID]; ok {
		missingArtifact = false
	}
	missing = slices.DeleteFunc(missing, func(id string) bool { _, ok := o.blobs[id]; return ok })
	return missingArtifact, missing, nil
}

func (o *overlay) PutArtifact(_ context.Context, id string, info types.ArtifactInfo) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.artifacts[id] = info
	return nil
}

func (o *overlay) PutBlob(_ context.Context, id string, info types.BlobInfo) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.blobs[id] = info
	return nil
}

func (o *overlay) GetArtifact(ctx context.Context, id string) (types.ArtifactInfo, error) {
	o.mu.Lock()
	info, ok := o.artifacts[id]
	o.mu.Unlock()
	if ok {
		return info, nil
	}
	return o.Cache.GetArtifact(ctx, id)
}

func (o *overlay) GetBlob(ctx context.Context, id string) (types.BlobInfo, error) {
	o.mu.Lock()
	info, ok := o.blobs[id]
	o.mu.Unlock()
	if ok {
		return info, nil
	}
	return o.Cache.GetBlob(ctx, id)
}

// Close leaves the shared cache open: it is the scanner's.
func (o *overlay) Close() error { return nil }

// commit puts the scan's analysis in the shared cache.
func (o *overlay) commit(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []error
	for id, info := range o.blobs {
		errs = append(errs, o.Cache.PutBlob(ctx, id, info))
	}
	for id, info := range o.artifacts {
		errs = append(errs, o.Cache.PutArtifact(ctx, id, info))
	}
	return errors.Join(errs...)
}

// Verifier is a layer whose bytes may be read before they are checked against its
// digest (still arriving): Verify returns once they are, or why they are not.
type Verifier interface {
	Verify() error
}

// verifyLayers waits until every layer of img that can say so is verified.
func verifyLayers(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		if v, ok := l.(Verifier); ok {
			if err := v.Verify(); err != nil {
				return err
			}
		}
	}
	return nil
}

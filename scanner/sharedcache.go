package scanner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/types"

	"github.com/goldproxy/goldproxy/storage"
)

// Values is a key/value store the replicas of one proxy share (storage/postgres
// implements it): where WithSharedLayerCache keeps the layer analyses. Value returns
// storage.ErrNotFound for a key it does not hold.
type Values interface {
	PutValue(ctx context.Context, namespace, key string, value []byte) error
	Value(ctx context.Context, namespace, key string) ([]byte, error)
	DeleteValues(ctx context.Context, namespace string, keys ...string) error
	ClearValues(ctx context.Context, namespace string) error
}

// The namespaces of the shared layer cache, as Trivy's FS cache names its buckets.
const (
	valuesArtifact = "trivy-artifact"
	valuesBlob     = "trivy-blob"
)

// Option configures New.
type Option func(*Scanner) error

// WithSharedLayerCache keeps Trivy's layer cache — each layer's and image config's
// analysis, as Trivy's JSON — in v instead of the bbolt file under the cache
// directory: replicas sharing v re-detect any image one of them analysed without
// reading a layer. The per-layer bin directory entries stay local: a miss costs one
// read of the layer at the next full scan, never a wrong verdict.
func WithSharedLayerCache(v Values) Option {
	return func(s *Scanner) error {
		if err := s.cache.Close(); err != nil {
			return err
		}
		s.cache = sharedCache{v}
		return nil
	}
}

// sharedCache is Trivy's cache.Cache on Values. Like Trivy's own caches, an entry
// written by another schema version counts as missing, so it is analysed again.
type sharedCache struct{ v Values }

var _ cache.Cache = sharedCache{}

func (c sharedCache) put(ctx context.Context, ns, id string, info any) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("scanner: shared layer cache: %w", err)
	}
	return c.v.PutValue(ctx, ns, id, b)
}

func (c sharedCache) get(ctx context.Context, ns, id string, info any) error {
	b, err := c.v.Value(ctx, ns, id)
	if err != nil {
		return fmt.Errorf("scanner: shared layer cache: %s %s: %w", ns, id, err)
	}
	if err := json.Unmarshal(b, info); err != nil {
		return fmt.Errorf("scanner: shared layer cache: %s %s: %w", ns, id, err)
	}
	return nil
}

func (c sharedCache) PutArtifact(ctx context.Context, id string, info types.ArtifactInfo) error {
	return c.put(ctx, valuesArtifact, id, info)
}

func (c sharedCache) PutBlob(ctx context.Context, id string, info types.BlobInfo) error {
	return c.put(ctx, valuesBlob, id, info)
}

func (c sharedCache) GetArtifact(ctx context.Context, id string) (types.ArtifactInfo, error) {
	var info types.ArtifactInfo
	return info, c.get(ctx, valuesArtifact, id, &info)
}

func (c sharedCache) GetBlob(ctx context.Context, id string) (types.BlobInfo, error) {
	var info types.BlobInfo
	return info, c.get(ctx, valuesBlob, id, &info)
}

// MissingBlobs reports what is not cached (or cached by another schema version); an
// error other than a miss is returned, not taken for one: a database outage must not
// make every layer be analysed again.
func (c sharedCache) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	var missing []string
	for _, id := range blobIDs {
		var info types.BlobInfo
		err := c.get(ctx, valuesBlob, id, &info)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return false, nil, err
		}
		if err != nil || info.SchemaVersion != types.BlobJSONSchemaVersion {
			missing = append(missing, id)
		}
	}
	var art types.ArtifactInfo
	err := c.get(ctx, valuesArtifact, artifactID, &art)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, nil, err
	}
	return err != nil || art.SchemaVersion != types.ArtifactJSONSchemaVersion, missing, nil
}

func (c sharedCache) DeleteBlobs(ctx context.Context, blobIDs []string) error {
	return c.v.DeleteValues(ctx, valuesBlob, blobIDs...)
}

// Close leaves Values open: it is the store's.
func (c sharedCache) Close() error { return nil }

func (c sharedCache) Clear(ctx context.Context) error {
	return errors.Join(c.v.ClearValues(ctx, valuesBlob), c.v.ClearValues(ctx, valuesArtifact))
}

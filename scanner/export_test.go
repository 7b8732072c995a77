package scanner

import (
	"context"

	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ArtifactOption is the gate's analysis option, for tests that change it.
var ArtifactOption = artifactOption

// ScanWith scans as Scan does with another analysis option: a test's control that
// a finding the gate leaves out would be found with the analyzer on.
func (s *Scanner) ScanWith(ctx context.Context, img v1.Image, ref string, option func(java bool) artifact.Option) (*Result, error) {
	return s.scan(ctx, img, ref, option)
}

// Blobs are the cached layer analyses of a scan's image.
func (s *Scanner) Blobs(ctx context.Context, key Key) ([]ftypes.BlobInfo, error) {
	var out []ftypes.BlobInfo
	for _, id := range key.BlobIDs {
		b, err := s.cache.GetBlob(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Walks is how many layers were decompressed for their entries alone, not teed from
// Trivy's analysis.
func (s *Scanner) Walks() int64 { return s.walks.Load() }

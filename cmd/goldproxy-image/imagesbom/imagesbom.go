// Package imagesbom makes the SBOM cmd/goldproxy-image attaches to goldproxy's image:
// goldproxy's own Trivy scan of each platform image, as CycloneDX. It is apart from
// imagebuild so that assembling an image (and its tests) does not link Trivy.
package imagesbom

import (
	"bytes"
	"context"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/cmd/goldproxy-image/imagebuild"
	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/scanner"
)

// Func returns an imagebuild.SBOMFunc scanning with the DB cfg names (db.dir, else the
// proxy's last download, else db.repository), as `goldproxy scan` finds it. close
// releases the DB and the layer cache.
func Func(ctx context.Context, cfg *config.Config, name string) (fn imagebuild.SBOMFunc, closeFn func(), err error) {
	db := scanner.NewDB()
	if err := cli.LoadDB(ctx, cfg, db); err != nil {
		db.Close()
		return nil, nil, err
	}
	cache, err := os.MkdirTemp("", "goldproxy-image-sbom-")
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	sc, err := scanner.New(cache, db)
	if err != nil {
		db.Close()
		os.RemoveAll(cache)
		return nil, nil, err
	}
	closeFn = func() { sc.Close(); db.Close(); os.RemoveAll(cache) }
	fn = func(img v1.Image, arch string) ([]byte, error) {
		res, err := sc.Scan(ctx, img, name)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		if err := scanner.WriteReport(ctx, &b, "cyclonedx", res.Report); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	return fn, closeFn, nil
}

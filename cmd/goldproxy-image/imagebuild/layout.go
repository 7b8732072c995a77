package imagebuild

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RefNameAnnotation tags the index in the layout's index.json, as buildx and skopeo do.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes the index (and every blob) as a fresh OCI image layout at dir, with
// the referrers (SBOMs) beside it in index.json. The index is the first descriptor.
func WriteLayout(dir string, r *Result, referrers []v1.Image) (layout.Path, error) {
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendIndex(r.Index, layout.WithAnnotations(map[string]string{RefNameAnnotation: r.Options.Version})); err != nil {
		return "", err
	}
	for _, ref := range referrers {
		if err := p.AppendImage(ref); err != nil {
			return "", err
		}
	}
	return p, nil
}

// WriteTarball packs the layout at dir into an OCI archive at dst (what
// `docker buildx build --output type=oci` writes and `skopeo copy oci-archive:` reads):
// entries sorted, times set to created, owners 0.
func WriteTarball(dst, dir string, created time.Time) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range files {
		if err = tarFile(tw, dir, p, created); err != nil {
			break
		}
	}
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func tarFile(tw *tar.Writer, root, p string, created time.Time) error {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: created, Typeflag: tar.TypeReg, Size: fi.Size()}
	if fi.IsDir() {
		h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		return tw.WriteHeader(h)
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(tw, src)
	return err
}

// Push writes the index to ref, then each referrer (whose subject names one of its
// images); go-containerregistry maintains the referrers tag schema on a registry
// without the referrers API.
func Push(ctx context.Context, ref name.Reference, r *Result, referrers []v1.Image, opts ...remote.Option) error {
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	if err := remote.WriteIndex(ref, r.Index, opts...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	for _, a := range referrers {
		d, err := a.Digest()
		if err != nil {
			return err
		}
		if err := remote.Write(ref.Context().Digest(d.String()), a, opts...); err != nil {
			return fmt.Errorf("push referrer %s: %w", d, err)
		}
	}
	return nil
}

package gate

import (
	"bytes"
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// storedImage is a v1.Image whose manifest, config and layers are read from the store:
// what the scanner analyses, so a scan never pulls anything a second time. ready is
// called before a layer is opened and returns once that blob is in the store.
func storedImage(ctx context.Context, st *storage.Store, mediaType string, raw []byte, ready func(context.Context, digest.Digest) error) (v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	cfg, err := st.ReadBlob(ctx, digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	if digest.FromBytes(cfg).String() != m.Config.Digest.String() {
		return nil, fmt.Errorf("stored config does not match %s", m.Config.Digest)
	}
	core := &storedCore{ctx: ctx, st: st, ready: ready, raw: raw, mt: types.MediaType(mediaType), cfg: cfg, layers: map[v1.Hash]v1.Descriptor{}}
	for _, l := range m.Layers {
		core.layers[l.Digest] = l
	}
	return partial.CompressedToImage(core)
}

type storedCore struct {
	ctx    context.Context
	st     *storage.Store
	ready  func(context.Context, digest.Digest) error
	raw    []byte
	mt     types.MediaType
	cfg    []byte
	layers map[v1.Hash]v1.Descriptor
}

func (c *storedCore) RawManifest() ([]byte, error)        { return c.raw, nil }
func (c *storedCore) RawConfigFile() ([]byte, error)      { return c.cfg, nil }
func (c *storedCore) MediaType() (types.MediaType, error) { return c.mt, nil }
func (c *storedCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("layer %s is not in the manifest", h)
	}
	return &storedLayer{c: c, d: d}, nil
}

type storedLayer struct {
	c *storedCore
	d v1.Descriptor
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storedLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	d := digest.Digest(l.d.Digest.String())
	if err := l.c.ready(l.c.ctx, d); err != nil {
		return nil, err
	}
	return l.c.st.OpenBlob(l.c.ctx, d)
}

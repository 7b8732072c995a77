package gate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/readahead"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
)

// ratioFloor is how far a layer may expand before limits.compression_ratio is checked:
// small layers of text compress well beyond any ratio a bomb needs.
const ratioFloor = 64 << 20

// zstdMaxWindow bounds the memory a zstd layer may make the decoder hold (zstd --long=27
// is 128 MiB; the default levels use at most 8 MiB).
const zstdMaxWindow = 128 << 20

// limitError is an image over one of the limits.* a scan enforces: a fact about its
// content, so the image is refused (not retried).
type limitError struct {
	key    string // the config key, e.g. "limits.layer_uncompressed_bytes"
	reason string
}

func (e *limitError) Error() string { return e.reason + " (" + e.key + ")" }

// storedImage is a v1.Image whose manifest, config and layers are read from the store:
// what the scanner analyses, so a scan never pulls anything a second time. A layer still
// being fetched is read from its stream as it arrives, else from the store once it is
// in; Verify tells the scanner when its bytes are checked against its digest. Layers
// decompress (gzip, zstd or none, by their first bytes) within lim: a read past a limit
// fails, and refused says which limit it was.
func storedImage(ctx context.Context, st *storage.Store, mediaType string, raw []byte, lim config.LimitsConfig, fetches *fetchSet) (*storedCore, v1.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("parse manifest: %w", err)
	}
	cfg, err := st.ReadBlob(ctx, digest.Digest(m.Config.Digest.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("read config %s: %w", m.Config.Digest, err)
	}
	if digest.FromBytes(cfg).String() != m.Config.Digest.String() {
		return nil, nil, fmt.Errorf("stored config does not match %s", m.Config.Digest)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("parse config %s: %w", m.Config.Digest, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, nil, fmt.Errorf("config %s lists %d layer diff IDs for %d layers", m.Config.Digest, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	core := &storedCore{ctx: ctx, st: st, fetches: fetches, raw: raw, mt: types.MediaType(mediaType), cfg: cfg, lim: lim,
		layers: map[v1.Hash]*storedLayer{}, read: map[v1.Hash]int64{}}
	img := &limitedImage{c: core}
	for i, l := range m.Layers {
		sl := &storedLayer{c: core, d: l, diffID: cf.RootFS.DiffIDs[i]}
		core.layers[l.Digest] = sl
		img.order = append(img.order, sl)
	}
	if img.Image, err = partial.CompressedToImage(core); err != nil {
		return nil, nil, err
	}
	return core, img, nil
}

// limitedImage hands out the image's own storedLayers: partial's layers would
// decompress with no limits.
type limitedImage struct {
	v1.Image
	c     *storedCore
	order []*storedLayer
}

func (i *limitedImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(i.order))
	for n, l := range i.order {
		out[n] = l
	}
	return out, nil
}

func (i *limitedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if l, ok := i.c.layers[h]; ok {
		return l, nil
	}
	return i.Image.LayerByDigest(h) // the config
}

func (i *limitedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.order {
		if l.diffID == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no layer with diff ID %s", h)
}

type storedCore struct {
	ctx     context.Context
	st      *storage.Store
	fetches *fetchSet
	raw     []byte
	mt      types.MediaType
	cfg     []byte
	lim     config.LimitsConfig
	layers  map[v1.Hash]*storedLayer

	mu      sync.Mutex
	read    map[v1.Hash]int64 // the most bytes one read of a layer expanded to
	refusal *limitError
}

func (c *storedCore) RawManifest() ([]byte, error)        { return c.raw, nil }
func (c *storedCore) RawConfigFile() ([]byte, error)      { return c.cfg, nil }
func (c *storedCore) MediaType() (types.MediaType, error) { return c.mt, nil }
func (c *storedCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	l, ok := c.layers[h]
	if !ok {
		return nil, fmt.Errorf("layer %s is not in the manifest", h)
	}
	return l, nil
}

// refused is the first limit a read of the image's layers went past, or nil.
func (c *storedCore) refused() *limitError {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusal
}

// account records that a read of layer l has expanded to n bytes and checks the limits.
// Layers read twice (a scanner's second look) count once, at their longest read.
func (c *storedCore) account(l *storedLayer, n int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refusal != nil {
		return c.refusal
	}
	if n > c.read[l.d.Digest] {
		c.read[l.d.Digest] = n
	}
	var total int64
	for _, r := range c.read {
		total += r
	}
	size := func(b int64) string { return units.HumanSizeWithPrecision(float64(b), 3) }
	switch lim := c.lim; {
	case lim.LayerUncompressedBytes > 0 && n > int64(lim.LayerUncompressedBytes):
		c.refusal = &limitError{key: "limits.layer_uncompressed_bytes", reason: fmt.Sprintf(
			"layer %s expands to more than %s", l.d.Digest, size(int64(lim.LayerUncompressedBytes)))}
	case lim.CompressionRatio > 0 && n > ratioFloor && l.d.Size > 0 && n/l.d.Size >= int64(lim.CompressionRatio):
		c.refusal = &limitError{key: "limits.compression_ratio", reason: fmt.Sprintf(
			"layer %s expands to more than %d times its compressed size (%s to over %s): a decompression bomb",
			l.d.Digest, lim.CompressionRatio, size(l.d.Size), size(n))}
	case lim.ImageUncompressedBytes > 0 && total > int64(lim.ImageUncompressedBytes):
		c.refusal = &limitError{key: "limits.image_uncompressed_bytes", reason: fmt.Sprintf(
			"the image's layers expand to more than %s", size(int64(lim.ImageUncompressedBytes)))}
	default:
		return nil
	}
	return c.refusal
}

// storedLayer is a layer of a storedImage: a whole v1.Layer, so its decompression (and
// the limits on it) is goldproxy's, not a generic one.
type storedLayer struct {
	c      *storedCore
	d      v1.Descriptor
	diffID v1.Hash
}

func (l *storedLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *storedLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	d := digest.Digest(l.d.Digest.String())
	if s := l.c.fetches.streams[d]; s != nil && s.claim() {
		return &streamReader{ctx: l.c.ctx, s: s, d: d, open: l.c.st.OpenBlob}, nil
	}
	if err := l.c.fetches.wait(l.c.ctx, d); err != nil {
		return nil, err
	}
	return l.c.st.OpenBlob(l.c.ctx, d)
}

// Verify returns once the layer is in the store, its digest checked, or why it is not:
// what a scanner made of the layer's bytes before that is kept only if this is nil.
func (l *storedLayer) Verify() error {
	return l.c.fetches.wait(l.c.ctx, digest.Digest(l.d.Digest.String()))
}

// Uncompressed decompresses the stored layer by its first bytes: gzip (klauspost's,
// about twice as fast as the standard library's), zstd, or an uncompressed tar.
func (l *storedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, fmt.Errorf("layer %s: %w", l.d.Digest, err)
	}
	var r io.Reader = br
	closeDec := func() {}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("layer %s: gzip: %w", l.d.Digest, err)
		}
		r = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderLowmem(true))
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("layer %s: zstd: %w", l.d.Digest, err)
		}
		r, closeDec = zr, zr.Close
	}
	lr := &limitedLayer{r: r, l: l, close: func() error { closeDec(); return rc.Close() }}
	// Decompression runs ahead of its reader in a goroutine of its own (up to 4 × 1 MiB):
	// inflating a layer and Trivy's walk of it use two cores, not one after the other.
	return readahead.NewReadCloserSize(lr, 4, 1<<20)
}

// limitedLayer counts a layer's decompressed bytes against the image's limits.
type limitedLayer struct {
	r     io.Reader
	l     *storedLayer
	n     int64
	close func() error
}

func (r *limitedLayer) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if lerr := r.l.c.account(r.l, r.n); lerr != nil {
		return n, lerr
	}
	return n, err
}

func (r *limitedLayer) Close() error { return r.close() }

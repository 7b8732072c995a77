package scanner

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
)

// binDirs are the directories whose entries are reported as executables.
var binDirs = []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin"}

// layerEntries is what one layer does to the bin directories: the entries it adds
// (files and links), the paths it whites out and the directories it makes opaque, and
// bin directories that it makes links to others (merged /usr: bin -> usr/bin).
type layerEntries struct {
	Paths     []string          `json:"paths,omitempty"`
	Whiteouts []string          `json:"whiteouts,omitempty"`
	Opaque    []string          `json:"opaque,omitempty"`
	DirLinks  map[string]string `json:"dirLinks,omitempty"`
}

var bucketEntries = []byte("bin-entries-v1")

// executables lists the entries of the image's bin directories once every layer is
// applied (whiteouts honoured, merged-/usr links followed). Each layer is read at most
// once ever: its entries are cached by layer digest beside Trivy's layer cache.
func (s *Scanner) executables(img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	merged := map[string]bool{}
	links := map[string]string{}
	for _, l := range layers {
		e, err := s.layerEntries(l)
		if err != nil {
			return nil, err
		}
		for _, dir := range e.Opaque {
			for p := range merged {
				if strings.HasPrefix(p, dir+"/") {
					delete(merged, p)
				}
			}
		}
		for _, w := range e.Whiteouts {
			delete(merged, w)
			delete(links, w)
		}
		for _, p := range e.Paths {
			merged[p] = true
		}
		for from, to := range e.DirLinks {
			links[from] = to
		}
	}
	for from, to := range links {
		for p := range merged {
			if rest, ok := strings.CutPrefix(p, to+"/"); ok {
				merged[from+"/"+rest] = true
			}
		}
	}
	out := make([]string, 0, len(merged))
	for p := range merged {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Scanner) layerEntries(l v1.Layer) (*layerEntries, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	var e layerEntries
	var cached bool
	_ = s.facts.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketEntries).Get([]byte(d.String())); b != nil {
			cached = json.Unmarshal(b, &e) == nil
		}
		return nil
	})
	if cached {
		return &e, nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if err := walkBinDirs(rc, &e); err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	b, err := json.Marshal(&e)
	if err != nil {
		return nil, err
	}
	if err := s.facts.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(d.String()), b) }); err != nil {
		return nil, err
	}
	return &e, nil
}

func inBinDir(p string) bool {
	return slices.Contains(binDirs, path.Dir(p))
}

// walkBinDirs reads a layer's tar headers (not its contents) for bin directory entries.
func walkBinDirs(r io.Reader, e *layerEntries) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := strings.TrimLeft(path.Clean(h.Name), "/")
		dir, name := path.Split(p)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case name == ".wh..wh..opq":
			if slices.Contains(binDirs, dir) {
				e.Opaque = append(e.Opaque, dir)
			}
		case strings.HasPrefix(name, ".wh."):
			if w := path.Join(dir, strings.TrimPrefix(name, ".wh.")); inBinDir(w) || slices.Contains(binDirs, w) {
				e.Whiteouts = append(e.Whiteouts, w)
			}
		case h.Typeflag == tar.TypeSymlink && slices.Contains(binDirs, p):
			target := strings.TrimLeft(path.Clean(path.Join(dir, h.Linkname)), "/")
			if path.IsAbs(h.Linkname) {
				target = strings.TrimLeft(path.Clean(h.Linkname), "/")
			}
			if slices.Contains(binDirs, target) {
				if e.DirLinks == nil {
					e.DirLinks = map[string]string{}
				}
				e.DirLinks[p] = target
			}
		case inBinDir(p) && (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink):
			e.Paths = append(e.Paths, p)
		}
	}
}

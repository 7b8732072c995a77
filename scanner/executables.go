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

// jarExtensions are the archives Trivy's JAR analyzer reads (language/java/jar), matched
// without regard to case as there.
var jarExtensions = []string{".jar", ".war", ".ear", ".par"}

func isJAR(p string) bool {
	ext := path.Ext(p)
	return slices.ContainsFunc(jarExtensions, func(e string) bool { return strings.EqualFold(ext, e) })
}

// layerEntries is what one layer does to the files the scanner reports itself: the bin
// directory entries it adds (files and links), the JAR files it adds, every path it
// whites out and directory it makes opaque, and bin directories that it makes links to
// others (merged /usr: bin -> usr/bin).
type layerEntries struct {
	Paths     []string          `json:"paths,omitempty"`
	JARs      []string          `json:"jars,omitempty"`
	Whiteouts []string          `json:"whiteouts,omitempty"`
	Opaque    []string          `json:"opaque,omitempty"`
	DirLinks  map[string]string `json:"dirLinks,omitempty"`
}

// bucketEntries holds layerEntries by layer digest. v1 entries knew no JAR files and
// only bin directory whiteouts: New drops that bucket.
var bucketEntries, bucketEntriesV1 = []byte("layer-entries-v2"), []byte("bin-entries-v1")

// imageFacts is what the layer walk finds in an image once every layer is applied.
type imageFacts struct {
	// Executables are the entries of the bin directories (merged-/usr links followed).
	Executables []string
	// JARs are the JAR (WAR, EAR, PAR) files.
	JARs []string
}

// remove deletes p and everything under it from set.
func remove(set map[string]bool, p string) {
	delete(set, p)
	for q := range set {
		if strings.HasPrefix(q, p+"/") {
			delete(set, q)
		}
	}
}

// walkLayers lists the entries of the image's bin directories and its JAR files once every
// layer is applied (whiteouts and opaque directories honoured). A layer's entries come
// from teed (read from the stream Trivy's analysis decompressed, see teeImage), else
// from the cache by layer digest, else from a walk of the layer's headers: a layer is
// decompressed once per scan, and not at all once its entries are cached.
func (s *Scanner) walkLayers(img v1.Image, teed *teeImage) (*imageFacts, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	merged := map[string]bool{}
	jars := map[string]bool{}
	links := map[string]string{}
	for _, l := range layers {
		e := teed.entries(l)
		if e == nil {
			if e, err = s.layerEntries(l); err != nil {
				return nil, err
			}
		}
		for _, dir := range e.Opaque {
			for _, set := range []map[string]bool{merged, jars} {
				for p := range set {
					if strings.HasPrefix(p, dir+"/") {
						delete(set, p)
					}
				}
			}
		}
		for _, w := range e.Whiteouts {
			remove(merged, w)
			remove(jars, w)
			delete(links, w)
		}
		for _, p := range e.Paths {
			merged[p] = true
		}
		for _, p := range e.JARs {
			jars[p] = true
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
	return &imageFacts{Executables: sorted(merged), JARs: sorted(jars)}, nil
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// cachedEntries are a layer's entries from the cache, or nil.
func (s *Scanner) cachedEntries(d v1.Hash) *layerEntries {
	var e *layerEntries
	_ = s.facts.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketEntries).Get([]byte(d.String())); b != nil {
			var c layerEntries
			if json.Unmarshal(b, &c) == nil {
				e = &c
			}
		}
		return nil
	})
	return e
}

func (s *Scanner) cacheEntries(d v1.Hash, e *layerEntries) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return s.facts.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(d.String()), b) })
}

// layerEntries are a layer's entries from the cache, or from a walk of its headers.
func (s *Scanner) layerEntries(l v1.Layer) (*layerEntries, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	if e := s.cachedEntries(d); e != nil {
		return e, nil
	}
	s.walks.Add(1)
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var e layerEntries
	if err := walkBinDirs(rc, &e); err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	if err := s.cacheEntries(d, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

func inBinDir(p string) bool {
	return slices.Contains(binDirs, path.Dir(p))
}

// walkBinDirs reads a layer's tar headers (not its contents) for bin directory
// entries, JAR files (regular files, as Trivy's layer walker analyses only those),
// whiteouts and opaque directories.
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
			e.Opaque = append(e.Opaque, dir)
		case strings.HasPrefix(name, ".wh."):
			e.Whiteouts = append(e.Whiteouts, path.Join(dir, strings.TrimPrefix(name, ".wh.")))
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
		if h.Typeflag == tar.TypeReg && !strings.HasPrefix(name, ".wh.") && isJAR(p) {
			e.JARs = append(e.JARs, p)
		}
	}
}

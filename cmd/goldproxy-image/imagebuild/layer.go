package imagebuild

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// passwd and group hold root (for files' owner names), nobody and nonroot (65532), as
// distroless does; no login shell exists in the image.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
)

// entry is one file or directory of the layer.
type entry struct {
	name     string // without the leading /
	mode     int64
	uid      int
	dir      bool
	content  []byte
	fromPath string // file content read from here instead (the binary: streamed, not held)
}

// entries lists the layer: directories first by path order, every parent present.
func entries(o Options, binary string) ([]entry, error) {
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates %s (apt-get install ca-certificates, or --ca-certs): %w", o.CACerts, err)
	}
	es := []entry{
		{name: "etc/passwd", mode: 0o644, content: []byte(passwd)},
		{name: "etc/group", mode: 0o644, content: []byte(group)},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, content: ca},
		{name: "usr/bin/goldproxy", mode: 0o755, fromPath: binary},
		{name: "tmp", mode: 0o1777, dir: true},
		{name: "data", mode: 0o750, uid: 65532, dir: true},
		{name: "home/nonroot", mode: 0o750, uid: 65532, dir: true},
	}
	for _, f := range o.Extra {
		es = append(es, entry{name: strings.TrimPrefix(path.Clean(f.Path), "/"), mode: f.Mode, content: f.Content})
	}
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.name] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				es = append(es, entry{name: d, mode: 0o755, dir: true})
			}
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es, nil
}

// writeLayer writes the gzipped tar at dst. Times are o.Created, owners numeric, no
// user or group names, and the gzip header carries no name or time: the bytes depend
// only on the inputs.
func writeLayer(dst string, o Options, binary string) error {
	es, err := entries(o, binary)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.DefaultCompression)
	tw := tar.NewWriter(zw)
	for _, e := range es {
		if err = writeEntry(tw, e, o); err != nil {
			break
		}
	}
	for _, c := range []io.Closer{tw, zw, f} {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func writeEntry(tw *tar.Writer, e entry, o Options) error {
	h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: o.Created}
	if e.dir {
		h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		return tw.WriteHeader(h)
	}
	h.Typeflag = tar.TypeReg
	if e.fromPath == "" {
		h.Size = int64(len(e.content))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(e.content)
		return err
	}
	src, err := os.Open(e.fromPath)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}

// WriteRootFS writes the layer's files for linux/arch into dir as a plain directory tree
// (modes kept, owners not): what the Dockerfile copies into its scratch stage, so that a
// Docker build ships the same files as this builder.
func WriteRootFS(dir string, o Options, binary string) error {
	es, err := entries(o, binary)
	if err != nil {
		return err
	}
	for _, e := range es {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		if e.dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(e.mode&0o777)|modeBits(e.mode)); err != nil {
				return err
			}
			continue
		}
		content := e.content
		if e.fromPath != "" {
			if content, err = os.ReadFile(e.fromPath); err != nil {
				return err
			}
		}
		if err := os.WriteFile(p, content, os.FileMode(e.mode)); err != nil {
			return err
		}
	}
	return nil
}

// modeBits maps tar's sticky bit (/tmp is 1777) to Go's.
func modeBits(m int64) os.FileMode {
	if m&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pushdir pushes an image of one gzip layer holding a directory tree (files, links and
// directories as they are on disk): a root filesystem built by debootstrap, .debs or
// npm pack, as the real-content benchmarks need.
func pushdir(args []string) error {
	flags := flag.NewFlagSet("pushdir", flag.ExitOnError)
	dir := flags.String("dir", "", "directory to pack as the image's filesystem")
	ref := flags.String("ref", "", "host:port/repo:tag (plain HTTP)")
	salt := flags.String("salt", "", "if set, a file etc/bench-salt holding it is added: the same tree as a never-seen layer")
	_ = flags.Parse(args)
	if *dir == "" || *ref == "" {
		return fmt.Errorf("pushdir: --dir and --ref are required")
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	tw := tar.NewWriter(zw)
	root := filepath.Clean(*dir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !info.Mode().IsRegular() && !info.IsDir() && link == "" {
			return nil // devices, sockets, fifos: not image content
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *salt != "" {
		if err := tw.WriteHeader(&tar.Header{Name: "etc/bench-salt", Mode: 0o644, Size: int64(len(*salt)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, *salt); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz.Bytes())), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(*ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}

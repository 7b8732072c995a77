// Command goldproxy-image builds goldproxy's own container image without a Docker engine:
// a static binary per platform, a non-root user, CA certificates and OCI labels, as an
// OCI image index in a layout directory and an OCI archive, with goldproxy's own SBOM of
// each platform image attached as a referrer. See package imagebuild.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy-image/imagebuild"
	"github.com/goldproxy/goldproxy/cmd/goldproxy-image/imagesbom"
	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func main() { os.Exit(cli.Execute(newCmd())) }

func newCmd() *cobra.Command {
	var o imagebuild.Options
	var out, tarPath, push, configPath, dbDir, rootfs string
	var noSBOM, insecure bool
	cmd := &cobra.Command{
		Use:   "goldproxy-image [--output DIR] [--tarball FILE] [--push REF]",
		Short: "Build goldproxy's image (OCI index for linux/amd64 and linux/arm64) without Docker",
		Long: `Build goldproxy's container image from the source tree, without a Docker engine:
go build (CGO_ENABLED=0, -trimpath, -ldflags "-s -w", GOEXPERIMENT=jsonv2) for each
--platform, one layer holding /usr/bin/goldproxy, /etc/passwd and /etc/group with the
user nonroot (65532), /etc/ssl/certs/ca-certificates.crt read from the build machine
(Debian: apt-get install ca-certificates) and empty /tmp and /data; config User
65532:65532 and the OCI labels (source, version, revision, created).

The result is an OCI image index, written as an OCI layout (--output) and as an OCI
archive of that layout (--tarball), and pushed when --push names a repository. Each
platform image gets its CycloneDX SBOM from goldproxy's own scan attached as a referrer
(--no-sbom skips it; the DB is found as goldproxy scan finds it: --db-dir, the config's
db.dir, data_dir's last download, else a download from db.repository).

Reproducible: times come from SOURCE_DATE_EPOCH (default: the commit time), so two
builds of one commit with one Go toolchain give the same index digest, which is printed.

Example:
  go run ./cmd/goldproxy-image --output dist/oci --tarball dist/goldproxy.oci.tar
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) go run ./cmd/goldproxy-image --platform linux/amd64 --db-dir /srv/trivy-db --push registry.internal/goldproxy:v0.4.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o.Log = cmd.ErrOrStderr()
			res, err := imagebuild.Build(ctx, o)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			if rootfs != "" {
				if len(res.Options.Platforms) != 1 {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--rootfs writes one platform's files: give one --platform")}
				}
				for arch, bin := range res.Binaries {
					if err := imagebuild.WriteRootFS(rootfs, res.Options, bin); err != nil {
						return &cli.ExitError{Code: 2, Err: fmt.Errorf("--rootfs linux/%s: %w", arch, err)}
					}
				}
			}
			var refs []v1.Image
			if !noSBOM {
				if refs, err = sboms(ctx, res, configPath, dbDir); err != nil {
					return &cli.ExitError{Code: 2, Err: err}
				}
			}
			if out != "" {
				if _, err := imagebuild.WriteLayout(out, res, refs); err != nil {
					return &cli.ExitError{Code: 2, Err: err}
				}
			}
			if tarPath != "" {
				if out == "" {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--tarball packs the --output layout: set --output too")}
				}
				if err := os.MkdirAll(filepath.Dir(tarPath), 0o755); err != nil {
					return err
				}
				if err := imagebuild.WriteTarball(tarPath, out, res.Options.Created); err != nil {
					return &cli.ExitError{Code: 2, Err: err}
				}
			}
			if push != "" {
				var nopts []name.Option
				if insecure {
					nopts = append(nopts, name.Insecure)
				}
				ref, err := name.ParseReference(push, nopts...)
				if err != nil {
					return &cli.ExitError{Code: 2, Err: err}
				}
				if err := imagebuild.Push(ctx, ref, res, refs, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
					return &cli.ExitError{Code: 2, Err: err}
				}
			}
			d, err := res.Index.Digest()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "goldproxy %s (%s) index %s\n", res.Options.Version, res.Options.Revision, d)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Source, "source", ".", "module root holding cmd/goldproxy")
	f.StringSliceVar(&o.Platforms, "platform", []string{"linux/amd64", "linux/arm64"}, "platforms to build (linux/amd64, linux/arm64)")
	f.StringVar(&o.Version, "version", "", "org.opencontainers.image.version and goldproxy version (default: git describe --tags --always)")
	f.StringVar(&o.Revision, "revision", "", "commit (default: git rev-parse HEAD)")
	f.StringVar(&o.SourceURL, "source-url", imagebuild.DefaultSourceURL, "org.opencontainers.image.source")
	f.StringVar(&o.CACerts, "ca-certs", imagebuild.DefaultCACerts, "CA bundle to ship (Debian's ca-certificates)")
	f.StringVar(&o.WorkDir, "work-dir", "", "where binaries and layers are built (default: a temp dir)")
	f.StringVar(&out, "output", "dist/oci", "OCI layout directory to write (replaced)")
	f.StringVar(&tarPath, "tarball", "", "OCI archive (tar of the layout) to write")
	f.StringVar(&rootfs, "rootfs", "", "also write the image's files as a directory tree (one --platform; the Dockerfile copies it)")
	f.StringVar(&push, "push", "", "push the index and its SBOM referrers to this reference")
	f.BoolVar(&insecure, "insecure", false, "allow a plain-HTTP registry for --push")
	f.BoolVar(&noSBOM, "no-sbom", false, "do not scan the images or attach SBOMs")
	f.StringVar(&configPath, "config", "", "goldproxy config whose db keys locate the DB for the SBOM scan")
	f.StringVar(&dbDir, "db-dir", "", "vulnerability DB directory for the SBOM scan (config: db.dir)")
	return cmd
}

func sboms(ctx context.Context, res *imagebuild.Result, configPath, dbDir string) ([]v1.Image, error) {
	cfg, err := cli.LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	if dbDir != "" {
		cfg.DB.Dir = dbDir
	}
	fn, closeFn, err := imagesbom.Func(ctx, cfg, "goldproxy:"+res.Options.Version)
	if err != nil {
		return nil, fmt.Errorf("SBOM scan (--no-sbom skips it): %w", err)
	}
	defer closeFn()
	return imagebuild.SBOMs(res, fn)
}

// Package imagebuild assembles goldproxy's own container image without a Docker engine:
// the static binary (built with go build for each GOARCH), /etc/passwd and /etc/group
// with the non-root user 65532, the build machine's CA bundle (Debian's ca-certificates)
// and the OCI labels, as one layer per platform under an OCI image index. Every input
// that could vary between two builds of one commit — file times, owners, the creation
// time, gzip headers, SBOM UUIDs — is fixed or derived from SOURCE_DATE_EPOCH, so two
// builds give the same index digest. It never pushes on its own and never runs Trivy
// (the caller passes an SBOM function; cmd/goldproxy-image passes goldproxy's scanner).
package imagebuild

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultCACerts is where Debian's ca-certificates package keeps the bundle the image
// ships (apt-get install ca-certificates; .ci/setup makes sure it is there).
const DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

// DefaultUser is the image's user: distroless' and Chainguard's "nonroot".
const DefaultUser = "65532:65532"

// DefaultSourceURL is the org.opencontainers.image.source label.
const DefaultSourceURL = "https://github.com/goldproxy/goldproxy"

// CLIPackage is where the ldflags-overridable version variables live.
const CLIPackage = "github.com/goldproxy/goldproxy/cmd/goldproxy/cli"

// File is an extra file put into the image (tests add /bin/sh to prove the gate denies it).
type File struct {
	Path    string // absolute path in the image
	Mode    int64  // permission bits, e.g. 0o755
	Content []byte
}

// Options say what to build. Zero values take the defaults named on each field.
type Options struct {
	Source    string            // module root holding cmd/goldproxy; default "."
	Platforms []string          // "linux/amd64", "linux/arm64"; default both
	Binaries  map[string]string // GOARCH → prebuilt static binary; skips go build for it
	WorkDir   string            // where binaries and layers are written; default a temp dir
	Version   string            // default git describe --tags --always
	Revision  string            // default git rev-parse HEAD
	Created   time.Time         // default SOURCE_DATE_EPOCH, else the commit time
	SourceURL string            // default DefaultSourceURL
	CACerts   string            // default DefaultCACerts
	User      string            // default DefaultUser; tests build a root variant with "0"
	Extra     []File            // extra files in the layer
	Log       io.Writer         // progress (go build output); default discarded
}

// Result is a built image.
type Result struct {
	Index    v1.ImageIndex
	Images   map[string]v1.Image // by GOARCH
	Binaries map[string]string   // GOARCH → the static binary built (or given)
	Options  Options             // with every default filled in
}

// Build compiles goldproxy for each platform and assembles the index.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(ctx); err != nil {
		return nil, err
	}
	res := &Result{Images: map[string]v1.Image{}, Binaries: map[string]string{}, Options: o}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		goos, arch, ok := strings.Cut(p, "/")
		if !ok || goos != "linux" || (arch != "amd64" && arch != "arm64") {
			return nil, fmt.Errorf("platform %q: only linux/amd64 and linux/arm64 are built", p)
		}
		bin := o.Binaries[arch]
		if bin == "" {
			bin = filepath.Join(o.WorkDir, "goldproxy-linux-"+arch)
			if err := BuildBinary(ctx, o, arch, bin); err != nil {
				return nil, err
			}
		}
		res.Binaries[arch] = bin
		img, err := Image(o, arch, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		res.Images[arch] = img
		plat := v1.Platform{OS: "linux", Architecture: arch}
		if arch == "arm64" {
			plat.Variant = "v8"
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	res.Index = mutate.Annotations(idx, o.Labels()).(v1.ImageIndex)
	return res, nil
}

// Labels are the OCI annotations and config labels of the image.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   o.SourceURL,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.title":    "goldproxy",
	}
}

func (o *Options) defaults(ctx context.Context) error {
	if o.Source == "" {
		o.Source = "."
	}
	if len(o.Platforms) == 0 {
		o.Platforms = []string{"linux/amd64", "linux/arm64"}
	}
	if o.WorkDir == "" {
		d, err := os.MkdirTemp("", "goldproxy-image-")
		if err != nil {
			return err
		}
		o.WorkDir = d
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.SourceURL == "" {
		o.SourceURL = DefaultSourceURL
	}
	if o.CACerts == "" {
		o.CACerts = DefaultCACerts
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	var err error
	if o.Revision == "" {
		if o.Revision, err = git(ctx, o.Source, "rev-parse", "HEAD"); err != nil {
			return fmt.Errorf("revision (set --revision outside a git checkout): %w", err)
		}
	}
	if o.Version == "" {
		if o.Version, err = git(ctx, o.Source, "describe", "--tags", "--always"); err != nil {
			return fmt.Errorf("version (set --version outside a git checkout): %w", err)
		}
	}
	if o.Created.IsZero() {
		if o.Created, err = SourceDateEpoch(ctx, o.Source); err != nil {
			return err
		}
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	return nil
}

// SourceDateEpoch is $SOURCE_DATE_EPOCH (seconds since 1970), else the time of the
// commit checked out in dir: the one creation time a reproducible build may use.
func SourceDateEpoch(ctx context.Context, dir string) (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		var err error
		if s, err = git(ctx, dir, "log", "-1", "--format=%ct"); err != nil {
			return time.Time{}, fmt.Errorf("creation time (set SOURCE_DATE_EPOCH outside a git checkout): %w", err)
		}
	}
	var secs int64
	if _, err := fmt.Sscanf(s, "%d", &secs); err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return time.Unix(secs, 0).UTC(), nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// LDFlags are the linker flags of the release binary: stripped (-s -w) and stamped with
// the version, commit and date `goldproxy version` prints.
func (o Options) LDFlags() string {
	return fmt.Sprintf("-s -w -X %[1]s.version=%[2]s -X %[1]s.commit=%[3]s -X %[1]s.date=%[4]s",
		CLIPackage, o.Version, o.Revision, o.Created.UTC().Format(time.RFC3339))
}

// BuildBinary runs go build for linux/arch: CGO_ENABLED=0, -trimpath, GOEXPERIMENT=jsonv2.
func BuildBinary(ctx context.Context, o Options, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", o.LDFlags(), "-o", out, "./cmd/goldproxy")
	cmd.Dir = o.Source
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOEXPERIMENT=jsonv2")
	cmd.Stdout, cmd.Stderr = o.Log, o.Log
	fmt.Fprintf(o.Log, "go build linux/%s -> %s\n", arch, out)
	unlock, err := buildLock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build linux/%s: %w", arch, err)
	}
	return nil
}

// Image assembles one platform's image from its binary.
func Image(o Options, arch, binary string) (v1.Image, error) {
	layerPath := filepath.Join(o.WorkDir, "layer-"+arch+".tar.gz")
	if err := writeLayer(layerPath, o, binary); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			User:         o.User,
			Entrypoint:   []string{"/usr/bin/goldproxy"},
			Cmd:          []string{"serve", "--listen", ":5000", "--data-dir", "/data"},
			Env:          []string{"PATH=/usr/bin", "SSL_CERT_FILE=" + DefaultCACerts},
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{"5000/tcp": {}, "9102/tcp": {}},
			Volumes:      map[string]struct{}{"/data": {}},
			Labels:       o.Labels(),
		},
	}
	if arch == "arm64" {
		cfg.Variant = "v8"
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{Created: created, CreatedBy: fmt.Sprintf("goldproxy-image %s: /usr/bin/goldproxy (static, linux/%s), /etc/passwd and /etc/group (nonroot 65532), CA certificates", o.Version, arch),
			Comment: "built by cmd/goldproxy-image"},
	})
}

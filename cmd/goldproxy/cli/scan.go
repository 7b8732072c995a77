package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/scanner"
)

// ScanOptions say what `scan` scans and where its reports go. Exactly one of Image,
// Input and SBOM is set.
type ScanOptions struct {
	Image    string   // registry reference, pulled with the docker config keychain
	Input    string   // docker tarball or OCI layout directory
	SBOM     string   // CycloneDX or SPDX JSON file (e.g. from cosign download sbom)
	OutDir   string   // where the reports are written
	Insecure bool     // allow plain-HTTP registries for Image
	Formats  []string // report formats; default json and md
	// Verify looks up and verifies Image's signatures and attestations (offline, with
	// the policy's keys and trust.trusted_root), as the proxy does.
	Verify bool
}

// NewScanCmd is `scan`: one image (or SBOM) scanned and judged without a proxy.
func NewScanCmd() *cobra.Command {
	var configPath, dbDir, trustedRoot string
	o := ScanOptions{}
	cmd := &cobra.Command{
		Use:   "scan (--image REF | --input FILE | --sbom FILE) [--output-dir DIR]",
		Short: "Scan one image or SBOM and judge it by the policy",
		Long: `Scan one image with the embedded Trivy, without a proxy: from any registry (--image,
with the docker config keychain for credentials, i.e. what docker login stored), from a
docker tarball or OCI layout (--input), or the packages an SBOM lists (--sbom: CycloneDX
or SPDX JSON, e.g. from cosign download sbom). Writes report.json (Trivy's JSON report
schema) and report.md to --output-dir (--format json,md,sarif,cyclonedx,spdx picks the
reports: report.sarif, report.cdx.json, report.spdx.json), prints a severity summary and
exits 1 when the policy denies the image (2 on errors), so it can gate a CI job.

--verify (with --image) also looks up the image's signatures and attestations in its
registry and verifies them offline, as the proxy does: the policy's signatures and
attestations rules judge them, the reports list who signed. Keyless signatures need a
trusted root (--trusted-root, config trust.trusted_root).

An SBOM carries packages, not the image config: rules on the user, the shell or the age
are judged on what it does not say (non_root fails closed).

The vulnerability DB is --db-dir, else the config's db.dir, else the one the proxy
downloaded under data_dir, else it is downloaded from db.repository.

Example:
  goldproxy scan --image cgr.dev/chainguard/static:latest --output-dir reports/static
  goldproxy scan --input image.tar --db-dir /srv/trivy-db
  goldproxy scan --image cgr.dev/chainguard/static:latest --verify --trusted-root trusted_root.json
  cosign download sbom myregistry.company.com/myteam/api:v1 > sbom.json && goldproxy scan --sbom sbom.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, s := range []string{o.Image, o.Input, o.SBOM} {
				if s != "" {
					n++
				}
			}
			if n != 1 {
				return &ExitError{Code: 2, Err: fmt.Errorf("give exactly one of --image, --input and --sbom")}
			}
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if dbDir != "" {
				cfg.DB.Dir = dbDir
			}
			if trustedRoot != "" {
				cfg.Trust.TrustedRoot = trustedRoot
			}
			return RunScan(cmd.Context(), cmd.OutOrStdout(), cfg, o)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (db, data_dir and policy keys are used; default: the embedded one)")
	cmd.Flags().StringVar(&o.Image, "image", "", "image reference to pull and scan")
	cmd.Flags().StringVar(&o.Input, "input", "", "docker tarball (docker save) or OCI layout directory to scan")
	cmd.Flags().StringVar(&o.SBOM, "sbom", "", "CycloneDX or SPDX JSON SBOM whose packages to scan")
	cmd.Flags().StringVar(&o.OutDir, "output-dir", ".", "where report.json and report.md are written")
	cmd.Flags().StringVar(&dbDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "allow plain-HTTP registries for --image")
	cmd.Flags().BoolVar(&o.Verify, "verify", false, "look up and verify the image's signatures and attestations (with --image)")
	cmd.Flags().StringVar(&trustedRoot, "trusted-root", "", "Sigstore trusted_root.json for keyless signatures (config: trust.trusted_root)")
	cmd.Flags().StringSliceVar(&o.Formats, "format", []string{"json", "md"}, "reports to write: json (report.json), md, sarif (report.sarif), cyclonedx (report.cdx.json), spdx (report.spdx.json)")
	return cmd
}

// reportFiles names the file each report format is written to.
var reportFiles = map[string]string{"json": "report.json", "md": "report.md", "sarif": "report.sarif", "cyclonedx": "report.cdx.json", "spdx": "report.spdx.json"}

const formatsHint = "use json, md, sarif, cyclonedx or spdx"

// WriteReportFile writes one report of a scan into dir, named as reportFiles says.
func WriteReportFile(ctx context.Context, dir, format string, res *scanner.Result, in policy.Input, v policy.Verdict) error {
	name, ok := reportFiles[format]
	if !ok {
		return fmt.Errorf("--format %q: %s", format, formatsHint)
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if format == "md" {
		_, err = io.WriteString(f, gate.MarkdownReport(in, v, res.DB.ID()))
	} else {
		err = scanner.WriteReport(ctx, f, format, res.Report)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// RunScan scans what o names, writes its reports and prints the verdict; the error is
// an *ExitError (1: denied, 2: could not scan).
func RunScan(ctx context.Context, out io.Writer, cfg *config.Config, o ScanOptions) error {
	if len(o.Formats) == 0 {
		o.Formats = []string{"json", "md"}
	}
	for _, f := range o.Formats {
		if _, ok := reportFiles[f]; !ok {
			return &ExitError{Code: 2, Err: fmt.Errorf("--format %q: %s", f, formatsHint)}
		}
	}
	if o.OutDir == "" {
		o.OutDir = "."
	}
	if ctx == nil {
		ctx = context.Background()
	}
	pol, err := LoadPolicy(cfg)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	var sc *Scanned
	if o.SBOM != "" {
		sc, err = ScanSBOM(ctx, cfg, o.SBOM)
	} else {
		sc, err = ScanOne(ctx, cfg, o.Image, o.Input, o.Insecure)
	}
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if o.Verify && o.Image == "" {
		return &ExitError{Code: 2, Err: fmt.Errorf("--verify needs --image: signatures are found in the image's registry")}
	}
	p, _ := pol.Choose(sc.In.Repository)
	switch {
	case o.Verify:
		var keys []string
		if p.Signatures != nil {
			keys = p.Signatures.Keys
		}
		sc.In.Trust = VerifySignatures(ctx, cfg, o.Image, o.Insecure, digest.Digest(sc.In.Digest), keys)
	case p.UsesTrust():
		sc.In.Trust = &policy.Trust{Error: "not checked: run goldproxy scan --verify --image to check signatures"}
	}
	verdict := pol.Evaluate(sc.In, time.Now())
	if verdict.Trust == nil {
		verdict.Trust = sc.In.Trust
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	for _, f := range o.Formats {
		if err := WriteReportFile(ctx, o.OutDir, f, sc.Res, sc.In, verdict); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
	}
	fmt.Fprintf(out, "%s (%s)\n", sc.Ref, orNone(sc.In.Digest))
	if t := verdict.Trust; t != nil && o.Verify {
		for _, s := range t.Signers {
			fmt.Fprintf(out, "signed by %s\n", s)
		}
		for _, a := range t.Attestations {
			fmt.Fprintf(out, "attestation %s %s, signed by %s\n", a.PredicateType, a.BuilderID, a.Signer)
		}
		for _, pr := range t.Problems {
			fmt.Fprintf(out, "did not verify: %s\n", pr)
		}
	}
	err = PrintVerdict(out, sc.In, verdict)
	fmt.Fprintf(out, "reports: %s\n", o.OutDir)
	return err
}

// PrintVerdict writes the summary and every reason; a denial is an *ExitError with
// status 1 wrapping ErrDenied.
func PrintVerdict(out io.Writer, in policy.Input, v policy.Verdict) error {
	fmt.Fprintf(out, "OS: %s\n", orNone(in.OS))
	fmt.Fprintf(out, "%s\n", summaryLine(v))
	for _, e := range v.Exceptions {
		fmt.Fprintf(out, "exception %s applied (%s), expires %s\n", e.ID, e.Reason, e.Expires.Format(time.DateOnly))
	}
	for _, r := range v.Reasons {
		word := "DENIED"
		if v.Audit {
			word = "AUDIT (would deny)"
		}
		fmt.Fprintf(out, "%s by policy %q, rule %q: %s\n", word, v.Policy, r.Rule, r.Message)
		for i, e := range r.Evidence {
			if i == 5 {
				fmt.Fprintf(out, "  and %d more\n", len(r.Evidence)-5)
				break
			}
			fmt.Fprintf(out, "  %s\n", e)
		}
		for _, d := range r.Details {
			fmt.Fprintf(out, "  %s\n", d)
		}
	}
	if !v.Allowed {
		if v.Contact != "" {
			fmt.Fprintln(out, v.Contact)
		}
		return &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", in.Repository, ErrDenied)}
	}
	fmt.Fprintf(out, "ALLOWED by policy %q\n", v.Policy)
	return nil
}

// Scanned is one image (or SBOM) scanned outside the proxy.
type Scanned struct {
	Res *scanner.Result
	Ref string       // what was scanned, as given
	In  policy.Input // the policy's view of it
}

// oneOff runs fn with a scanner over the CLI's DB and a throw-away layer cache.
func oneOff(ctx context.Context, cfg *config.Config, fn func(*scanner.Scanner) (*scanner.Result, error)) (*scanner.Result, error) {
	db := scanner.NewDB()
	defer db.Close()
	if err := LoadDB(ctx, cfg, db); err != nil {
		return nil, err
	}
	cacheDir, err := os.MkdirTemp("", "goldproxy-scan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cacheDir)
	sc, err := scanner.New(cacheDir, db)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	return fn(sc)
}

// ScanOne scans an image from a registry (image) or a file (input).
func ScanOne(ctx context.Context, cfg *config.Config, image, input string, insecure bool) (*Scanned, error) {
	img, ref, err := OpenImage(ctx, image, input, insecure)
	if err != nil {
		return nil, err
	}
	res, err := oneOff(ctx, cfg, func(s *scanner.Scanner) (*scanner.Result, error) { return s.Scan(ctx, img, ref) })
	if err != nil {
		return nil, err
	}
	sr, err := ToScanResult(res)
	if err != nil {
		return nil, err
	}
	dgst, _ := img.Digest()
	repo, tag := RepositoryAndTag(ref, insecure)
	return &Scanned{Res: res, Ref: ref, In: PolicyInput(sr, repo, tag, dgst.String())}, nil
}

// ScanSBOM scans the packages an SBOM file lists. The image it describes names the
// repository the policy judges (its RepoTags/RepoDigests, as Trivy and cosign record
// them); an SBOM that names none is judged as its path.
func ScanSBOM(ctx context.Context, cfg *config.Config, path string) (*Scanned, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--sbom: %w", err)
	}
	res, err := oneOff(ctx, cfg, func(s *scanner.Scanner) (*scanner.Result, error) { return s.ScanSBOM(ctx, path) })
	if err != nil {
		return nil, err
	}
	sr, err := ToScanResult(res)
	if err != nil {
		return nil, err
	}
	return &Scanned{Res: res, Ref: path, In: sbomInput(sr, res, path)}, nil
}

// sbomInput names an SBOM's scan by the image it describes.
func sbomInput(sr *gate.ScanResult, res *scanner.Result, path string) policy.Input {
	md := res.Report.Metadata
	repo, tag, digest := path, "", ""
	if len(md.RepoDigests) > 0 {
		if r, d, ok := strings.Cut(md.RepoDigests[0], "@"); ok {
			repo, _ = RepositoryAndTag(r, false)
			digest = d
		}
	}
	if len(md.RepoTags) > 0 {
		r, t := RepositoryAndTag(md.RepoTags[0], false)
		if t != "" {
			repo, tag = r, t
		}
	}
	return PolicyInput(sr, repo, tag, digest)
}

// RepositoryAndTag names an image as the proxy's policies do ("docker.io/library/alpine")
// when ref is a registry reference; a file path stays as it is.
func RepositoryAndTag(ref string, insecure bool) (string, string) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil || strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, ".") {
		return ref, ""
	}
	tag := ""
	if t, ok := r.(name.Tag); ok {
		tag = t.TagStr()
	}
	return gate.RepositoryOf(r), tag
}

func orNone(s string) string {
	if s == "" {
		return "none detected"
	}
	return s
}

func summaryLine(v policy.Verdict) string {
	var parts []string
	for _, sev := range policy.Severities {
		parts = append(parts, fmt.Sprintf("%s: %d (%d fixable)", sev, v.Counts[sev], v.Fixable[sev]))
	}
	return strings.Join(parts, ", ")
}

// OpenImage reads the image to scan from a registry (with the docker config keychain)
// or a local file.
func OpenImage(ctx context.Context, image, input string, insecure bool) (v1.Image, string, error) {
	platform := v1.Platform{OS: "linux", Architecture: "amd64"}
	if image != "" {
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(image, opts...)
		if err != nil {
			return nil, "", err
		}
		img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithPlatform(platform))
		return img, image, err
	}
	fi, err := os.Stat(input)
	if err != nil {
		return nil, "", err
	}
	if !fi.IsDir() {
		img, err := tarball.ImageFromPath(input, nil)
		return img, input, err
	}
	idx, err := layout.ImageIndexFromPath(input)
	if err != nil {
		return nil, "", fmt.Errorf("%s is neither a docker tarball nor an OCI layout: %w", input, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	for _, d := range m.Manifests {
		if d.Platform == nil || d.Platform.Satisfies(platform) {
			if img, err := idx.Image(d.Digest); err == nil {
				return img, input, nil
			}
		}
	}
	return nil, "", fmt.Errorf("%s has no linux/amd64 image", input)
}

// LoadDBLocal loads db.dir or the proxy's last download, without fetching.
func LoadDBLocal(cfg *config.Config, db *scanner.DB) error {
	if cfg.DB.Dir != "" {
		_, err := db.Load(cfg.Resolve(cfg.DB.Dir), "dir:"+cfg.DB.Dir)
		return err
	}
	root := filepath.Join(cfg.DataDir, "trivy-db")
	dir, _ := scanner.ReadPointer(root, "current")
	if dir == "" {
		return fmt.Errorf("no vulnerability DB under %s (run goldproxy db update)", root)
	}
	_, err := db.Load(dir, cfg.DB.Repository)
	return err
}

// LoadDB finds a DB for a one-off scan: db.dir, else the proxy's last download, else a
// download from db.repository with the docker config keychain.
func LoadDB(ctx context.Context, cfg *config.Config, db *scanner.DB) error {
	if err := LoadDBLocal(cfg, db); err == nil || cfg.DB.Dir != "" {
		return err
	}
	root := filepath.Join(cfg.DataDir, "trivy-db")
	ref, err := name.ParseReference(cfg.DB.Repository)
	if err != nil {
		return fmt.Errorf("db.repository: %w", err)
	}
	dir, err := scanner.Fetch(ctx, ref, root, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return fmt.Errorf("no vulnerability DB (set --db-dir or db.dir for air-gapped use): %w", err)
	}
	_, err = db.Load(dir, ref.String())
	if err == nil {
		err = scanner.WritePointer(root, "current", dir, "")
	}
	return err
}

package main

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
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/scanner"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func newScanCmd() *cobra.Command {
	var configPath, image, input, outDir, dbDir string
	var insecure bool
	var formats []string
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Scan one image and judge it by the policy",
		Long: `Scan one image with the embedded Trivy, without a proxy: from any registry (--image,
with the docker config keychain for credentials) or from a docker tarball or OCI layout
(--input). Writes report.json (Trivy's JSON report schema) and report.md to --output-dir
(--format json,md,sarif,cyclonedx picks the reports: report.sarif, report.cdx.json),
prints a severity summary and exits 1 when the policy denies the image (2 on errors), so
it can gate a CI job.

The vulnerability DB is --db-dir, else the config's db.dir, else the one the proxy
downloaded under data_dir, else it is downloaded from db.repository.

Example:
  goldproxy scan --image cgr.dev/chainguard/static:latest --output-dir reports/static
  goldproxy scan --input image.tar --db-dir /srv/trivy-db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (image == "") == (input == "") {
				return &exitError{2, fmt.Errorf("give exactly one of --image and --input")}
			}
			cfg, err := loadConfig(configPath)
			if err != nil {
				return &exitError{2, err}
			}
			if dbDir != "" {
				cfg.DB.Dir = dbDir
			}
			return runScan(cmd.Context(), cmd.OutOrStdout(), cfg, image, input, outDir, insecure, formats...)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (db and data_dir keys are used)")
	cmd.Flags().StringVar(&image, "image", "", "image reference to pull and scan")
	cmd.Flags().StringVar(&input, "input", "", "docker tarball (docker save) or OCI layout directory to scan")
	cmd.Flags().StringVar(&outDir, "output-dir", ".", "where report.json and report.md are written")
	cmd.Flags().StringVar(&dbDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain-HTTP registries for --image")
	cmd.Flags().StringSliceVar(&formats, "format", []string{"json", "md"}, "reports to write: json (report.json), md, sarif (report.sarif), cyclonedx (report.cdx.json)")
	return cmd
}

// reportFiles names the file each report format is written to.
var reportFiles = map[string]string{"json": "report.json", "md": "report.md", "sarif": "report.sarif", "cyclonedx": "report.cdx.json"}

func writeReportFile(ctx context.Context, dir, format string, res *scanner.Result, in policy.Input, v policy.Verdict) error {
	name, ok := reportFiles[format]
	if !ok {
		return fmt.Errorf("--format %q: use json, md, sarif or cyclonedx", format)
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

func runScan(ctx context.Context, out io.Writer, cfg *config.Config, image, input, outDir string, insecure bool, formats ...string) error {
	if len(formats) == 0 {
		formats = []string{"json", "md"}
	}
	for _, f := range formats {
		if _, ok := reportFiles[f]; !ok {
			return &exitError{2, fmt.Errorf("--format %q: use json, md, sarif or cyclonedx", f)}
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	pol, err := loadPolicy(cfg)
	if err != nil {
		return &exitError{2, err}
	}
	sc, err := scanOne(ctx, cfg, image, input, insecure)
	if err != nil {
		return &exitError{2, err}
	}
	res, ref, in := sc.res, sc.ref, sc.in
	dgst := sc.in.Digest
	verdict := pol.Evaluate(in, time.Now())
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return &exitError{2, err}
	}
	for _, f := range formats {
		if err := writeReportFile(ctx, outDir, f, res, in, verdict); err != nil {
			return &exitError{2, err}
		}
	}
	fmt.Fprintf(out, "%s (%s)\n", ref, dgst)
	err = printVerdict(out, in, verdict)
	fmt.Fprintf(out, "reports: %s\n", outDir)
	return err
}

// printVerdict writes the summary and every reason; a denial is exit status 1.
func printVerdict(out io.Writer, in policy.Input, v policy.Verdict) error {
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
		return &exitError{1, fmt.Errorf("%s: %w", in.Repository, errDenied)}
	}
	fmt.Fprintf(out, "ALLOWED by policy %q\n", v.Policy)
	return nil
}

// scanned is one image scanned outside the proxy.
type scanned struct {
	res *scanner.Result
	ref string
	in  policy.Input
}

// scanOne scans an image from a registry or a file with a one-off layer cache.
func scanOne(ctx context.Context, cfg *config.Config, image, input string, insecure bool) (*scanned, error) {
	img, ref, err := openImage(ctx, image, input, insecure)
	if err != nil {
		return nil, err
	}
	db := scanner.NewDB()
	defer db.Close()
	if err := loadCLIDB(ctx, cfg, db); err != nil {
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
	res, err := sc.Scan(ctx, img, ref)
	if err != nil {
		return nil, err
	}
	sr, err := toScanResult(res)
	if err != nil {
		return nil, err
	}
	dgst, _ := img.Digest()
	repo, tag := repositoryAndTag(ref, insecure)
	return &scanned{res: res, ref: ref, in: policyInput(sr, repo, tag, dgst.String())}, nil
}

// repositoryAndTag names an image as the proxy's policies do ("docker.io/library/alpine")
// when ref is a registry reference; a file path stays as it is.
func repositoryAndTag(ref string, insecure bool) (string, string) {
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

// openImage reads the image to scan from a registry or a local file.
func openImage(ctx context.Context, image, input string, insecure bool) (v1.Image, string, error) {
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

// loadCLIDBLocal loads db.dir or the proxy's last download, without fetching.
func loadCLIDBLocal(cfg *config.Config, db *scanner.DB) error {
	if cfg.DB.Dir != "" {
		_, err := db.Load(cfg.Resolve(cfg.DB.Dir), "dir:"+cfg.DB.Dir)
		return err
	}
	root := filepath.Join(cfg.DataDir, "trivy-db")
	dir, _ := readPointer(root, "current")
	if dir == "" {
		return fmt.Errorf("no vulnerability DB under %s (run goldproxy db update)", root)
	}
	_, err := db.Load(dir, cfg.DB.Repository)
	return err
}

// loadCLIDB finds a DB for a one-off scan: db.dir, else the proxy's last download, else a
// download from db.repository with the docker config keychain.
func loadCLIDB(ctx context.Context, cfg *config.Config, db *scanner.DB) error {
	if err := loadCLIDBLocal(cfg, db); err == nil || cfg.DB.Dir != "" {
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
		err = writePointer(root, "current", dir, "")
	}
	return err
}

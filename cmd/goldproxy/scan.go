package main

import (
	"context"
	"encoding/json"
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
	"github.com/goldproxy/goldproxy/proxy"
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
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Scan one image and judge it by the policy",
		Long: `Scan one image with the embedded Trivy, without a proxy: from any registry (--image,
with the docker config keychain for credentials) or from a docker tarball or OCI layout
(--input). Writes report.json (Trivy's JSON report schema) and report.md to --output-dir,
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
			return runScan(cmd.Context(), cmd.OutOrStdout(), cfg, image, input, outDir, insecure)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (db and data_dir keys are used)")
	cmd.Flags().StringVar(&image, "image", "", "image reference to pull and scan")
	cmd.Flags().StringVar(&input, "input", "", "docker tarball (docker save) or OCI layout directory to scan")
	cmd.Flags().StringVar(&outDir, "output-dir", ".", "where report.json and report.md are written")
	cmd.Flags().StringVar(&dbDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain-HTTP registries for --image")
	return cmd
}

func runScan(ctx context.Context, out io.Writer, cfg *proxy.Config, image, input, outDir string, insecure bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	img, ref, err := openImage(ctx, image, input, insecure)
	if err != nil {
		return &exitError{2, err}
	}
	db := scanner.NewDB()
	defer db.Close()
	if err := loadCLIDB(ctx, cfg, db); err != nil {
		return &exitError{2, err}
	}
	cacheDir, err := os.MkdirTemp("", "goldproxy-scan-")
	if err != nil {
		return &exitError{2, err}
	}
	defer os.RemoveAll(cacheDir)
	sc, err := scanner.New(cacheDir, db)
	if err != nil {
		return &exitError{2, err}
	}
	defer sc.Close()
	res, err := sc.Scan(ctx, img, ref)
	if err != nil {
		return &exitError{2, err}
	}
	dgst, _ := img.Digest()
	pol, err := loadPolicy(cfg)
	if err != nil {
		return &exitError{2, err}
	}
	sr, err := toScanResult(res)
	if err != nil {
		return &exitError{2, err}
	}
	in := policyInput(sr, ref, "", dgst.String())
	verdict := pol.Evaluate(in, time.Now())
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return &exitError{2, err}
	}
	report, err := json.MarshalIndent(res.Report, "", "  ")
	if err != nil {
		return &exitError{2, err}
	}
	if err := os.WriteFile(filepath.Join(outDir, "report.json"), report, 0o644); err != nil {
		return &exitError{2, err}
	}
	if err := os.WriteFile(filepath.Join(outDir, "report.md"), []byte(markdownReport(in, verdict, res.DB.ID())), 0o644); err != nil {
		return &exitError{2, err}
	}
	fmt.Fprintf(out, "%s (%s)\n", ref, dgst)
	fmt.Fprintf(out, "OS: %s\n", orNone(in.OS))
	fmt.Fprintf(out, "%s\n", summaryLine(verdict))
	if !verdict.Allowed {
		for _, r := range verdict.Reasons {
			fmt.Fprintf(out, "DENIED by policy %q, rule %q: %s\n", verdict.Policy, r.Rule, r.Message)
		}
		fmt.Fprintf(out, "reports: %s\n", outDir)
		return &exitError{1, fmt.Errorf("%s: %w", ref, errDenied)}
	}
	fmt.Fprintf(out, "ALLOWED by policy %q\nreports: %s\n", verdict.Policy, outDir)
	return nil
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

// loadCLIDB finds a DB for a one-off scan: db.dir, else the proxy's last download, else a
// download from db.repository with the docker config keychain.
func loadCLIDB(ctx context.Context, cfg *proxy.Config, db *scanner.DB) error {
	if cfg.DB.Dir != "" {
		_, err := db.Load(cfg.Resolve(cfg.DB.Dir), "dir")
		return err
	}
	root := filepath.Join(cfg.DataDir, "trivy-db")
	if cur, err := os.ReadFile(filepath.Join(root, "current")); err == nil {
		if _, err := db.Load(filepath.Join(root, strings.TrimSpace(string(cur))), cfg.DB.Repository); err == nil {
			return nil
		}
	}
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
		err = os.WriteFile(filepath.Join(root, "current"), []byte(filepath.Base(dir)+"\n"), 0o644)
	}
	return err
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/scanner"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate a policy file or try it on an image",
		Long: `Validate a policy file (policy check) or see what it decides for an image without
serving anything (policy test).

Example:
  goldproxy policy check configs/policy.yaml
  goldproxy policy test --policy configs/policy.yaml cgr.dev/chainguard/static:latest
  goldproxy policy test --policy configs/policy.yaml --report reports/app/report.json`,
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyTestCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file",
		Long: `Validate a policy file: strict decoding, every key checked. Exits 1 and names the
key when the file is wrong.

Example:
  goldproxy policy check configs/policy.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := policy.Load(args[0])
			if err != nil {
				return &exitError{Code: 1, Err: err}
			}
			expired := 0
			for _, e := range s.Exceptions {
				if time.Now().After(e.Expires.Time) {
					expired++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d policies (default %q), %d scopes, %d exceptions (%d expired), hash %s\n",
				args[0], len(s.Policies), s.Default, len(s.Scopes), len(s.Exceptions), expired, s.Hash())
			return nil
		},
	}
}

func newPolicyTestCmd() *cobra.Command {
	var configPath, policyPath, reportPath, repository, tag, dbDir string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "test --policy FILE (REF | --report report.json)",
		Short: "Print the verdict a policy gives an image",
		Long: `Print the verdict and every reason a policy gives an image, serving nothing: scan REF
(a registry reference, docker tarball or OCI layout) or judge a Trivy JSON report
(--report, e.g. from goldproxy scan or /api/v1/images/<digest>/report). A report has no
file list, so the shell and package-manager rules need a scan. Exits 1 when denied.

Example:
  goldproxy policy test --policy configs/policy.yaml docker.io/library/alpine:3.20
  goldproxy policy test --policy configs/policy.yaml --report report.json --repository docker.io/library/alpine`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (reportPath != "") {
				return &exitError{Code: 2, Err: fmt.Errorf("give exactly one of REF and --report")}
			}
			cfg, err := cli.LoadConfig(configPath)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			if policyPath != "" {
				cfg.Policy = policyPath
			}
			if dbDir != "" {
				cfg.DB.Dir = dbDir
			}
			pol, err := cli.LoadPolicy(cfg)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			var in policy.Input
			if reportPath != "" {
				in, err = inputFromReport(reportPath)
			} else {
				var sc *cli.Scanned
				image, input := args[0], ""
				if _, statErr := os.Stat(args[0]); statErr == nil {
					image, input = "", args[0]
				}
				sc, err = cli.ScanOne(context.Background(), cfg, image, input, insecure)
				if sc != nil {
					in = sc.In
				}
			}
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			if repository != "" {
				in.Repository = repository
			}
			if cmd.Flags().Changed("tag") {
				in.Tag = tag
			}
			// Signature rules judge what the image's registry holds, verified offline as
			// the proxy does; a report or a file carries no signatures.
			if p, _ := pol.Choose(in.Repository); p.UsesTrust() {
				if reportPath == "" && len(args) == 1 && !isFile(args[0]) {
					var keys []string
					if p.Signatures != nil {
						keys = p.Signatures.Keys
					}
					in.Trust = cli.VerifySignatures(context.Background(), cfg, args[0], insecure, digest.Digest(in.Digest), keys)
				} else {
					in.Trust = &policy.Trust{Error: "a report or an image file carries no signatures: give a registry reference to check them"}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) under policy file %s\n", in.Repository, in.Digest, cli.OrDefault(cfg.Policy))
			return cli.PrintVerdict(cmd.OutOrStdout(), in, pol.Evaluate(in, time.Now()))
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (db and policy keys are used)")
	cmd.Flags().StringVar(&policyPath, "policy", "", "policy file (config: policy)")
	cmd.Flags().StringVar(&reportPath, "report", "", "judge this Trivy JSON report instead of scanning")
	cmd.Flags().StringVar(&repository, "repository", "", "repository to judge as, e.g. docker.io/library/alpine (scopes and exceptions match it)")
	cmd.Flags().StringVar(&tag, "tag", "", "tag the image is pulled by (empty: by digest)")
	cmd.Flags().StringVar(&dbDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain-HTTP registries for REF")
	return cmd
}

// inputFromReport builds a policy input from a Trivy JSON report.
func inputFromReport(path string) (policy.Input, error) {
	f, err := os.Open(path)
	if err != nil {
		return policy.Input{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return policy.Input{}, err
	}
	var rep types.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return policy.Input{}, fmt.Errorf("%s is not a Trivy JSON report: %w", path, err)
	}
	sr, err := cli.ToScanResult(&scanner.Result{Report: rep})
	if err != nil {
		return policy.Input{}, err
	}
	repo, tag := cli.RepositoryAndTag(rep.ArtifactName, false)
	digest := ""
	if len(rep.Metadata.RepoDigests) > 0 {
		if _, d, ok := cutLast(rep.Metadata.RepoDigests[0], "@"); ok {
			digest = d
		}
	}
	return cli.PolicyInput(sr, repo, tag, digest), nil
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func isFile(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

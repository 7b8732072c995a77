// Command scanner is `goldproxy scan` under the name the hardened-images guide uses:
//
//	go run ./cmd/scanner scan --image myregistry.company.com/myteam/api:v1 --output-dir ./reports
//	go build ./cmd/scanner && ./scanner scan --sbom sbom.json
//
// The code is package cli's, the same as goldproxy's.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "scanner",
		Short: "Scan images and SBOMs with goldproxy's embedded Trivy and policy",
		Long: `scanner scans one image (from a registry with docker login's credentials, a docker
tarball or an OCI layout) or an SBOM, writes report.json and report.md and exits 1 when
the policy denies it: goldproxy scan as a stand-alone tool for CI jobs.

Example:
  scanner scan --image myregistry.company.com/myteam/api:v1 --output-dir ./reports`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(cli.NewScanCmd())
	return root
}

func main() { os.Exit(cli.Execute(newRootCmd())) }

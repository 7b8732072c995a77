// Command goldproxy is a pull-through registry mirror that serves only vetted images.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func main() { os.Exit(cli.Execute(newRootCmd())) }

// exitError is the exit status a command returns, shared with cmd/scanner and
// cmd/baseline through package cli.
type exitError = cli.ExitError

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "goldproxy",
		Short: "A pull-through registry mirror that only lets vetted images through",
		Long: `goldproxy is a read-only OCI registry mirror in front of Docker Hub, cgr.dev, gcr.io,
quay.io and private registries. It fetches what clients pull into a local store and
serves a manifest only when its gate allows it.

Example:
  goldproxy serve --config configs/goldproxy.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), cli.NewScanCmd(), newPolicyCmd(), newCheckDockerfileCmd(), newWarmCmd(), newDBCmd(), newGCCmd(), newRobotCmd(), cli.NewBaselineCmd(), newNodeConfigCmd(), cli.NewVersionCmd(), cli.NewBackupCmd())
	return root
}

// Command goldproxy is a pull-through registry mirror that serves only vetted images.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "goldproxy:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

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
	root.AddCommand(newServeCmd(), newScanCmd(), newPolicyCmd(), newCheckDockerfileCmd(), newWarmCmd(), newDBCmd(), newGCCmd(), newRobotCmd(), newBaselineCmd())
	return root
}

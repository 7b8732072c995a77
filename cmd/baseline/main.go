// Command baseline is `goldproxy baseline` on its own, as the hardened-images guide runs
// it:
//
//	BASELINE_IMAGES=tests/baseline/images-standard.txt \
//	BASELINE_IMAGES_HARDENED=tests/baseline/images-hardened-myteam.txt \
//	BASELINE_HARDENED_LIMIT=5 go run ./cmd/baseline
//
// Every flag of `goldproxy baseline` works too; the code is package cli's.
package main

import (
	"os"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func main() {
	cmd := cli.NewBaselineCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	os.Exit(cli.Execute(cmd))
}

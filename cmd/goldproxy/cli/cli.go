// Package cli holds the goldproxy commands that run without a proxy process — scan and
// baseline — and what they share, so that cmd/goldproxy, cmd/scanner and cmd/baseline
// are entry points over one implementation. It never starts a server.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/scanner"
)

// ExitError carries a process exit status out of a command: 1 for a denial or a
// failed image, 2 for a usage or set-up error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }

// Unwrap returns the error behind the exit status.
func (e *ExitError) Unwrap() error { return e.Err }

// ErrDenied is wrapped by the error a command returns when the policy denies an image.
var ErrDenied = errors.New("denied by policy")

// Execute runs root and returns the process exit status, printing any error to stderr
// prefixed with the command's name. A main is `os.Exit(cli.Execute(root))`.
func Execute(root *cobra.Command) int {
	defer func() { _ = scanner.CleanupTemp() }() // Trivy's per-process temp directory
	return ExecuteTo(root, os.Stderr)
}

// ExecuteTo is Execute with the error written to errOut.
func ExecuteTo(root *cobra.Command, errOut io.Writer) int {
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(errOut, "%s: %v\n", root.Name(), err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// LoadConfig reads the config file at path, or the embedded default when path is "".
func LoadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default()
	}
	return config.Load(path)
}

// LoadPolicy reads the configured policy file, or returns the built-in default.
func LoadPolicy(cfg *config.Config) (*policy.Set, error) {
	if cfg.Policy == "" {
		return policy.DefaultSet(), nil
	}
	return policy.Load(cfg.Resolve(cfg.Policy))
}

// OrDefault names a policy file, or the built-in default when there is none.
func OrDefault(p string) string {
	if p == "" {
		return "(built-in default)"
	}
	return p
}

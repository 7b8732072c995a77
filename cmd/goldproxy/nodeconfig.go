package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func newNodeConfigCmd() *cobra.Command {
	var configPath, proxyURL, outDir, caFile string
	cmd := &cobra.Command{
		Use:   "node-config --url URL --output-dir DIR",
		Short: "Write fail-closed client configs for every configured upstream",
		Long: `Write the node configurations that make goldproxy the only source of every upstream
in the config: containerd/CRI (certs.d/<host>/hosts.toml, goldproxy both server and
host), podman/CRI-O/skopeo (registries.conf, goldproxy the location with the upstream
host in the path) and k3s/RKE2 (registries.yaml). No file names the real registry as a
place to fall back to, so a denial is final; block direct egress to the registries too.

Example:
  goldproxy node-config --config /etc/goldproxy/goldproxy.yaml --url https://goldproxy.internal:5000 \
    --ca /etc/goldproxy/ca.pem --output-dir nodes/
  sudo cp -r nodes/containerd/certs.d /etc/containerd/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cli.LoadConfig(configPath)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			if proxyURL == "" {
				proxyURL = cfg.External()
			}
			files, err := cfg.NodeFiles(proxyURL, caFile)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			paths := make([]string, 0, len(files))
			for p := range files {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, p := range paths {
				full := filepath.Join(outDir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					return &exitError{Code: 2, Err: err}
				}
				if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
					return &exitError{Code: 2, Err: err}
				}
				fmt.Fprintln(cmd.OutOrStdout(), full)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "goldproxy config (its upstreams); default: the embedded one")
	cmd.Flags().StringVar(&proxyURL, "url", "", "where nodes reach goldproxy (default: external_url)")
	cmd.Flags().StringVar(&caFile, "ca", "", "CA file on the nodes that signed goldproxy's certificate")
	cmd.Flags().StringVar(&outDir, "output-dir", "nodes", "directory to write the files under")
	return cmd
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
)

func newGCCmd() *cobra.Command {
	var configPath, proxyURL, user string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "gc [--dry-run]",
		Short: "Evict least recently pulled images to the storage.gc bounds",
		Long: `Evict the least recently pulled images until the store is under storage.gc.max_size and
nothing is older than storage.gc.max_age: manifests, then blobs no kept manifest
references, with their verdicts and cached analysis. Images pulled within
storage.gc.grace and blobs in use are kept. With --proxy the running goldproxy does it
(POST /api/v1/gc, as an admin: --user, password in GOLDPROXY_PASSWORD); without, the config's data directory is used (stop the proxy first).

Example:
  goldproxy gc --dry-run --proxy http://localhost:5000
  goldproxy gc --config /etc/goldproxy/goldproxy.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proxyURL != "" {
				path := "/api/v1/gc"
				if dryRun {
					path += "?dry_run=true"
				}
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodPost, proxyURL, path, user, nil)
			}
			return withLocalApp(configPath, func(a *app) error {
				res, err := a.srv.GC(context.Background(), dryRun)
				if err != nil {
					return err
				}
				b, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be removed, remove nothing")
	cmd.Flags().StringVar(&configPath, "config", "", "config file (storage.gc keys)")
	cmd.Flags().StringVar(&proxyURL, "proxy", "", "ask this running goldproxy (e.g. http://localhost:5000)")
	cmd.Flags().StringVar(&user, "user", "", "admin user for --proxy (password from GOLDPROXY_PASSWORD)")
	return cmd
}

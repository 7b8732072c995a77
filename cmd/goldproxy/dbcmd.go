package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/scanner"
)

func newDBCmd() *cobra.Command {
	var configPath, proxyURL, user string
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Show or update the vulnerability DB",
		Long: `Show the vulnerability DB (version, build time, age, source) or update it now.
With --proxy the running goldproxy answers (GET /api/v1/db, POST /api/v1/db/update, which
also re-evaluates every stored verdict; an update needs an admin: --user, with the
password in GOLDPROXY_PASSWORD); without, the config's data directory is used.

Example:
  goldproxy db status --proxy http://localhost:5000
  goldproxy db update --proxy http://localhost:5000`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the vulnerability DB",
		Long:  "Show the vulnerability DB's version, build time, age and source.\n\nExample:\n  goldproxy db status --config /etc/goldproxy/goldproxy.yaml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proxyURL != "" {
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodGet, proxyURL, "/api/v1/db", user, nil)
			}
			cfg, err := cli.LoadConfig(configPath)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			db := scanner.NewDB()
			defer db.Close()
			if err := cli.LoadDBLocal(cfg, db); err != nil {
				return &exitError{Code: 1, Err: err}
			}
			info, _ := db.Info()
			b, _ := json.MarshalIndent(dbStatus(info), "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	update := &cobra.Command{
		Use:   "update",
		Short: "Fetch a newer vulnerability DB now",
		Long:  "Fetch a newer vulnerability DB now; a running proxy swaps it in and re-evaluates every stored verdict.\n\nExample:\n  goldproxy db update --proxy http://localhost:5000",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proxyURL != "" {
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodPost, proxyURL, "/api/v1/db/update", user, nil)
			}
			return withLocalApp(configPath, func(a *app) error {
				ctx := context.Background()
				_ = a.dbs.Load(ctx)
				res, err := a.updateDB(ctx)
				if err != nil {
					return err
				}
				b, _ := json.MarshalIndent(res, "", "  ")
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			})
		},
	}
	cmd.PersistentFlags().StringVar(&configPath, "config", "", "config file (db and data_dir keys)")
	cmd.PersistentFlags().StringVar(&proxyURL, "proxy", "", "ask this running goldproxy (e.g. http://localhost:5000)")
	cmd.PersistentFlags().StringVar(&user, "user", "", "admin user for --proxy (password from GOLDPROXY_PASSWORD)")
	cmd.AddCommand(status, update)
	return cmd
}

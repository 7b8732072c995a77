package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/storage"
)

func newRobotCmd() *cobra.Command {
	var configPath, proxyURL, user string
	cmd := &cobra.Command{
		Use:   "robot",
		Short: "Manage pull-only robot accounts",
		Long: `Manage pull-only robot accounts for CI systems and clusters: long random tokens, stored
hashed, optionally scoped to repository globs and expiring. Log in as robot$NAME with the
token. With --proxy the running goldproxy does it (admin credentials: --user, password in
GOLDPROXY_PASSWORD); without, the config's data directory is used (stop the proxy first).

Example:
  goldproxy robot add ci --scope 'cgr.dev/chainguard/**' --expires 90d --proxy https://goldproxy.internal --user alice
  docker login goldproxy.internal -u 'robot$ci' -p <token>
  goldproxy robot revoke ci --proxy https://goldproxy.internal --user alice`,
	}
	var scopes []string
	var expires string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a robot and print its token (shown once)",
		Long:  "Create a robot and print its token, which is shown only now.\n\nExample:\n  goldproxy robot add ci --scope 'docker.io/library/*' --expires 30d",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if proxyURL != "" {
				body, _ := json.Marshal(map[string]any{"name": args[0], "scopes": scopes, "expires": expires})
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodPost, proxyURL, "/api/v1/robots", user, body)
			}
			var ttl time.Duration
			if expires != "" {
				d, err := policy.ParseDuration(expires)
				if err != nil {
					return &exitError{Code: 2, Err: err}
				}
				ttl = d
			}
			return withLocalApp(configPath, func(a *app) error {
				tok, err := a.srv.AddRobot(args[0], scopes, ttl)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "username: robot$%s\ntoken:    %s\n(the token is shown only now)\n", args[0], tok)
				return nil
			})
		},
	}
	add.Flags().StringArrayVar(&scopes, "scope", nil, "repository glob the robot may pull (repeatable; none: all allowed)")
	add.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d (none: no expiry)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List robots",
		Long:  "List robots with their scopes and expiry (never their tokens).\n\nExample:\n  goldproxy robot list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if proxyURL != "" {
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodGet, proxyURL, "/api/v1/robots", user, nil)
			}
			return withLocalApp(configPath, func(a *app) error {
				rs, err := a.srv.Robots()
				if err != nil {
					return err
				}
				printRobots(cmd.OutOrStdout(), rs)
				return nil
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a robot: its token stops working at once",
		Long:  "Revoke a robot: its password and any token issued to it stop working at once.\n\nExample:\n  goldproxy robot revoke ci",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if proxyURL != "" {
				return cli.AdminCall(cmd.OutOrStdout(), http.MethodDelete, proxyURL, "/api/v1/robots/"+args[0], user, nil)
			}
			return withLocalApp(configPath, func(a *app) error {
				if err := a.srv.RevokeRobot(args[0]); err != nil {
					return fmt.Errorf("revoke %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "robot %s revoked\n", args[0])
				return nil
			})
		},
	}
	cmd.PersistentFlags().StringVar(&configPath, "config", "", "config file (data_dir)")
	cmd.PersistentFlags().StringVar(&proxyURL, "proxy", "", "manage robots on this running goldproxy")
	cmd.PersistentFlags().StringVar(&user, "user", "", "admin user for --proxy (password from GOLDPROXY_PASSWORD)")
	cmd.AddCommand(add, list, revoke)
	return cmd
}

func withLocalApp(configPath string, fn func(*app) error) error {
	cfg, err := cli.LoadConfig(configPath)
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	a, err := newApp(context.Background(), cfg, newLogger(cfg))
	if err != nil {
		return &exitError{Code: 2, Err: err}
	}
	defer a.Close()
	if err := fn(a); err != nil {
		return &exitError{Code: 1, Err: err}
	}
	return nil
}

func printRobots(out io.Writer, rs []storage.Robot) {
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tSCOPES\tCREATED\tEXPIRES")
	for _, r := range rs {
		exp := "never"
		if !r.Expires.IsZero() {
			exp = r.Expires.Format(time.DateOnly)
		}
		sc := strings.Join(r.Scopes, ",")
		if sc == "" {
			sc = "(all allowed)"
		}
		fmt.Fprintf(tw, "robot$%s\t%s\t%s\t%s\n", r.Name, sc, r.Created.Format(time.DateOnly), exp)
	}
	tw.Flush()
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

func newWarmCmd() *cobra.Command {
	var configPath, proxyURL string
	var lists []string
	cmd := &cobra.Command{
		Use:   "warm --list FILE [--proxy URL]",
		Short: "Pull, scan and judge a list of images now",
		Long: `Pull, scan and judge every image of list files (one ref per line, "#" comments) so the
first developer pull is already warm. Tags are re-resolved, so a moved tag's new digest
is scanned now. With --proxy the images are pulled through a running goldproxy;
without, the config's data directory is used directly (stop the proxy first). Shows a
progress bar on a terminal and ends with a table: ref, digest, verdict, counts.

Example:
  goldproxy warm --list configs/images-hardened.txt --proxy http://goldproxy.internal:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var refs []string
			for _, l := range lists {
				f, err := os.Open(l)
				if err != nil {
					return &exitError{Code: 2, Err: err}
				}
				rs, err := gate.ParseImageList(f)
				f.Close()
				if err != nil {
					return &exitError{Code: 2, Err: fmt.Errorf("%s: %w", l, err)}
				}
				for _, r := range rs {
					refs = append(refs, r.Name())
				}
			}
			if len(refs) == 0 {
				return &exitError{Code: 2, Err: fmt.Errorf("no images: give --list FILE")}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			out := cmd.OutOrStdout()
			var warm func(string) proxy.WarmResult
			if proxyURL != "" {
				warm = func(r string) proxy.WarmResult { return cli.WarmViaProxy(ctx, proxyURL, r) }
			} else {
				cfg, err := cli.LoadConfig(configPath)
				if err != nil {
					return &exitError{Code: 2, Err: err}
				}
				a, err := newApp(ctx, cfg, newLogger(cfg))
				if err != nil {
					return &exitError{Code: 2, Err: err}
				}
				defer a.Close()
				if err := a.dbs.Load(ctx); err != nil {
					return &exitError{Code: 2, Err: err}
				}
				warm = func(r string) proxy.WarmResult { return a.srv.Warm(ctx, r) }
			}
			results := make([]proxy.WarmResult, 0, len(refs))
			bar := cli.NewProgress(out, len(refs))
			for _, r := range refs {
				bar.Step(r)
				results = append(results, warm(r))
			}
			bar.Done()
			failed := printWarmTable(out, results)
			if failed > 0 {
				return &exitError{Code: 1, Err: fmt.Errorf("%d of %d images could not be warmed", failed, len(refs))}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&lists, "list", nil, "image list file (repeatable)")
	cmd.Flags().StringVar(&proxyURL, "proxy", "", "pull through this running goldproxy (e.g. http://localhost:5000)")
	cmd.Flags().StringVar(&configPath, "config", "", "config file, when not using --proxy")
	return cmd
}

// printWarmTable prints the results and returns how many failed (not denied: failed).
func printWarmTable(out io.Writer, results []proxy.WarmResult) int {
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "REF\tDIGEST\tVERDICT\tCRITICAL\tHIGH\tMEDIUM\tLOW")
	failed := 0
	for _, r := range results {
		d := r.Digest
		if len(d) > 19 {
			d = d[:19]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", r.Ref, d, r.Verdict, r.Counts["CRITICAL"], r.Counts["HIGH"], r.Counts["MEDIUM"], r.Counts["LOW"])
		if r.Verdict == "error" {
			failed++
		}
	}
	tw.Flush()
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(out, "%s: %s\n", r.Ref, r.Error)
		}
	}
	return failed
}

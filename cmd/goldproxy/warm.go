package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/policy"
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
					return &exitError{2, err}
				}
				rs, err := gate.ParseImageList(f)
				f.Close()
				if err != nil {
					return &exitError{2, fmt.Errorf("%s: %w", l, err)}
				}
				for _, r := range rs {
					refs = append(refs, r.Name())
				}
			}
			if len(refs) == 0 {
				return &exitError{2, fmt.Errorf("no images: give --list FILE")}
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			out := cmd.OutOrStdout()
			var warm func(string) proxy.WarmResult
			if proxyURL != "" {
				warm = func(r string) proxy.WarmResult { return warmViaProxy(ctx, proxyURL, r) }
			} else {
				cfg, err := loadConfig(configPath)
				if err != nil {
					return &exitError{2, err}
				}
				a, err := newApp(ctx, cfg, newLogger(cfg))
				if err != nil {
					return &exitError{2, err}
				}
				defer a.Close()
				if err := a.loadDB(ctx); err != nil {
					return &exitError{2, err}
				}
				warm = func(r string) proxy.WarmResult { return a.srv.Warm(ctx, r) }
			}
			results := make([]proxy.WarmResult, 0, len(refs))
			bar := newProgress(out, len(refs))
			for _, r := range refs {
				bar.step(r)
				results = append(results, warm(r))
			}
			bar.done()
			failed := printWarmTable(out, results)
			if failed > 0 {
				return &exitError{1, fmt.Errorf("%d of %d images could not be warmed", failed, len(refs))}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&lists, "list", nil, "image list file (repeatable)")
	cmd.Flags().StringVar(&proxyURL, "proxy", "", "pull through this running goldproxy (e.g. http://localhost:5000)")
	cmd.Flags().StringVar(&configPath, "config", "", "config file, when not using --proxy")
	return cmd
}

// warmViaProxy pulls ref's manifest (and each platform's, for an index) through a
// running proxy and reads the verdict back from its API.
func warmViaProxy(ctx context.Context, base, ref string) proxy.WarmResult {
	res := proxy.WarmResult{Ref: ref, Verdict: "error", Counts: map[string]int{}}
	r, err := name.ParseReference(ref)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	repo := gate.RepositoryOf(r)
	base = strings.TrimRight(base, "/")
	accept := "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
	get := func(path string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	resp, body, err := get("/v2/" + repo + "/manifests/" + r.Identifier())
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Digest = resp.Header.Get("Docker-Content-Digest")
	targets := []string{res.Digest}
	switch {
	case resp.StatusCode == http.StatusForbidden:
		res.Verdict, res.Error = "denied", errorMessage(body)
		var env struct {
			Errors []struct {
				Detail struct{ Digest string } `json:"detail"`
			} `json:"errors"`
		}
		if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 && env.Errors[0].Detail.Digest != "" {
			res.Digest = env.Errors[0].Detail.Digest
			targets = []string{res.Digest}
		}
	case resp.StatusCode != http.StatusOK:
		res.Error = fmt.Sprintf("%s: %s", resp.Status, errorMessage(body))
		return res
	default:
		var idx struct {
			Manifests []struct{ Digest string } `json:"manifests"`
		}
		if json.Unmarshal(body, &idx) == nil && len(idx.Manifests) > 0 {
			targets = targets[:0]
			for _, m := range idx.Manifests {
				targets = append(targets, m.Digest)
			}
		}
		res.Verdict = "allowed"
	}
	for _, d := range targets {
		if len(targets) > 1 || d != res.Digest {
			cresp, cbody, err := get("/v2/" + repo + "/manifests/" + d)
			if err != nil {
				res.Verdict, res.Error = "error", err.Error()
				return res
			}
			if cresp.StatusCode == http.StatusForbidden {
				res.Verdict, res.Error = "denied", errorMessage(cbody)
			}
		}
		res.Platforms++
		if vresp, vbody, err := get("/api/v1/images/" + d + "/verdict?repository=" + url.QueryEscape(repo)); err == nil && vresp.StatusCode == http.StatusOK {
			var rec struct {
				Verdict policy.Verdict `json:"verdict"`
			}
			if json.Unmarshal(vbody, &rec) == nil {
				for sev, n := range rec.Verdict.Counts {
					res.Counts[sev] += n
				}
			}
		}
	}
	return res
}

func errorMessage(body []byte) string {
	var env struct {
		Errors []struct{ Message string } `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		return env.Errors[0].Message
	}
	return strings.TrimSpace(string(body))
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

// progress draws a bar on a terminal and plain lines otherwise.
type progress struct {
	out   io.Writer
	total int
	n     int
	tty   bool
	start time.Time
}

func newProgress(out io.Writer, total int) *progress {
	tty := false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{out: out, total: total, tty: tty, start: time.Now()}
}

func (p *progress) step(label string) {
	p.n++
	if !p.tty {
		fmt.Fprintf(p.out, "[%d/%d] %s\n", p.n, p.total, label)
		return
	}
	const width = 30
	filled := width * (p.n - 1) / p.total
	fmt.Fprintf(p.out, "\r\033[K[%s%s] %d/%d %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total, label)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K[%s] %d/%d in %s\n", strings.Repeat("=", 30), p.total, p.total, time.Since(p.start).Round(time.Millisecond))
	}
}

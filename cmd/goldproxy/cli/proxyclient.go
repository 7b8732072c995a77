package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

// The client side of a running goldproxy, for commands given --proxy.

// WarmViaProxy pulls ref's manifest (and each platform's, for an index) through a
// running proxy and reads the verdict back from its API.
func WarmViaProxy(ctx context.Context, base, ref string) proxy.WarmResult {
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

// AdminCall sends an API request to a running goldproxy (Basic auth as user, password
// from GOLDPROXY_PASSWORD) and prints the response body to out.
func AdminCall(out io.Writer, method, base, path, user string, body []byte) error {
	req, err := http.NewRequest(method, strings.TrimRight(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if user != "" {
		req.SetBasicAuth(user, os.Getenv("GOLDPROXY_PASSWORD"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if len(bytes.TrimSpace(b)) > 0 {
		fmt.Fprintln(out, strings.TrimSpace(string(b)))
	}
	if resp.StatusCode >= 300 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%s %s: %s", method, path, resp.Status)}
	}
	return nil
}

// Progress draws a bar on a terminal and plain lines otherwise.
type Progress struct {
	out   io.Writer
	total int
	n     int
	tty   bool
	start time.Time
}

// NewProgress counts total steps on out.
func NewProgress(out io.Writer, total int) *Progress {
	tty := false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &Progress{out: out, total: total, tty: tty, start: time.Now()}
}

// Step starts the next step, named label.
func (p *Progress) Step(label string) {
	p.n++
	if !p.tty {
		fmt.Fprintf(p.out, "[%d/%d] %s\n", p.n, p.total, label)
		return
	}
	const width = 30
	filled := width * (p.n - 1) / p.total
	fmt.Fprintf(p.out, "\r\033[K[%s%s] %d/%d %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.n, p.total, label)
}

// Done ends the bar.
func (p *Progress) Done() {
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K[%s] %d/%d in %s\n", strings.Repeat("=", 30), p.total, p.total, time.Since(p.start).Round(time.Millisecond))
	}
}

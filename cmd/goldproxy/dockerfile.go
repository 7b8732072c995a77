package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

func newCheckDockerfileCmd() *cobra.Command {
	var configPath, policyPath, proxyURL string
	var buildArgs []string
	var requireDigest bool
	cmd := &cobra.Command{
		Use:   "check-dockerfile [--policy FILE] [--require-digest] [--proxy URL] Dockerfile...",
		Short: "Check that every FROM uses an allowed base image, pinned by digest",
		Long: `Check that every FROM of every stage uses a base image the proxy allows: the config's
allowlist (allow.repositories and allow.lists) plus the policy's base_images. ARGs are
expanded (defaults, or --build-arg), FROM of an earlier stage and scratch are allowed.

A base that is not pinned by digest — ":latest" (hadolint DL3007), no tag (which means
latest), or a tag without "@sha256:" — is a warning, and an error with --require-digest
or when the policy for its repository has "pinned: true" (in enforce mode). The warning
suggests the pinned form; with --proxy the digest is resolved through that goldproxy.

Prints one line per finding ("error:" or "warning:") and exits 1 if there is any error:
run it in CI.

Example:
  goldproxy check-dockerfile --config /etc/goldproxy/goldproxy.yaml Dockerfile build/*.Dockerfile
  goldproxy check-dockerfile --require-digest --proxy http://goldproxy.internal:5000 Dockerfile`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cli.LoadConfig(configPath)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			if policyPath != "" {
				cfg.Policy = policyPath
			}
			pol, err := cli.LoadPolicy(cfg)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			lists := make([]string, len(cfg.Allow.Lists))
			for i, l := range cfg.Allow.Lists {
				lists[i] = cfg.Resolve(l)
			}
			allow, err := gate.NewAllowlist(append(append([]string{}, cfg.Allow.Repositories...), pol.BaseImages...), lists)
			if err != nil {
				return &exitError{Code: 2, Err: err}
			}
			overrides := map[string]string{}
			for _, a := range buildArgs {
				k, v, _ := strings.Cut(a, "=")
				overrides[k] = v
			}
			pin := pinCheck{require: func(repo string) bool { return requireDigest || pinnedByPolicy(pol, repo) }}
			if proxyURL != "" {
				pin.digest = func(ref name.Reference) (string, error) { return digestViaProxy(cmd.Context(), proxyURL, ref) }
			}
			bad := 0
			for _, path := range args {
				f, err := os.Open(path)
				if err != nil {
					return &exitError{Code: 2, Err: err}
				}
				problems, err := checkDockerfile(f, allow, overrides, pin)
				f.Close()
				if err != nil {
					return &exitError{Code: 2, Err: fmt.Errorf("%s: %w", path, err)}
				}
				for _, p := range problems {
					level := "error"
					if p.warning {
						level = "warning"
					} else {
						bad++
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s:%d: %s: %s\n", path, p.line, level, p.msg)
				}
			}
			if bad > 0 {
				return &exitError{Code: 1, Err: fmt.Errorf("%d FROM line(s) use base images that are not allowed or not pinned", bad)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file whose allowlist applies (default: the embedded one)")
	cmd.Flags().StringVar(&policyPath, "policy", "", "policy file whose base_images are allowed too and whose pinned rule applies (config: policy)")
	cmd.Flags().StringArrayVar(&buildArgs, "build-arg", nil, "NAME=VALUE, as docker build takes it")
	cmd.Flags().BoolVar(&requireDigest, "require-digest", false, "a base not pinned by digest is an error, not a warning")
	cmd.Flags().StringVar(&proxyURL, "proxy", "", "resolve the digest to suggest through this goldproxy (e.g. http://localhost:5000)")
	return cmd
}

type fromProblem struct {
	line    int
	msg     string
	warning bool // a finding that fails nothing unless pinning is required
}

var (
	reFrom = regexp.MustCompile(`(?i)^FROM\s+(.*)$`)
	reArg  = regexp.MustCompile(`(?i)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$`)
	reVar  = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
)

// checkDockerfile returns the FROM lines whose image the allowlist does not admit, and
// those whose image is not pinned by digest (warnings unless pin requires it).
func checkDockerfile(r io.Reader, allow *gate.Allowlist, overrides map[string]string, pin pinCheck) ([]fromProblem, error) {
	args := map[string]string{}
	stages := map[string]bool{}
	var problems []fromProblem
	sawFrom := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo, start := 0, 0
	var logical strings.Builder
	for sc.Scan() {
		lineNo++
		text := strings.TrimSpace(sc.Text())
		if logical.Len() == 0 {
			start = lineNo
			if strings.HasPrefix(text, "#") {
				continue
			}
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			logical.WriteString(cont + " ")
			continue
		}
		logical.WriteString(text)
		line := strings.TrimSpace(logical.String())
		logical.Reset()
		if m := reArg.FindStringSubmatch(line); m != nil {
			// Only ARGs before the first FROM are in scope for FROM lines.
			if !sawFrom {
				v := strings.Trim(m[2], `"'`)
				if o, ok := overrides[m[1]]; ok {
					v = o
				}
				args[m[1]] = v
			}
			continue
		}
		m := reFrom.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sawFrom = true
		fields := strings.Fields(m[1])
		for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
			fields = fields[1:] // --platform=...
		}
		if len(fields) == 0 {
			problems = append(problems, fromProblem{line: start, msg: "FROM without an image"})
			continue
		}
		image, unresolved := expandArgs(fields[0], args)
		switch {
		case unresolved != "":
			problems = append(problems, fromProblem{line: start, msg: fmt.Sprintf("FROM %s: ARG %s has no value, so the base image cannot be checked", fields[0], unresolved)})
		case strings.EqualFold(image, "scratch"), stages[strings.ToLower(image)]:
		default:
			ref, err := name.ParseReference(image)
			if err != nil {
				problems = append(problems, fromProblem{line: start, msg: fmt.Sprintf("FROM %s: not an image reference: %v", image, err)})
				continue
			}
			repo := gate.RepositoryOf(ref)
			if !allow.Allowed(repo) {
				problems = append(problems, fromProblem{line: start, msg: fmt.Sprintf("FROM %s: %s is not on the allowlist of approved base images", image, repo)})
			}
			if msg := pin.check(image, ref); msg != "" {
				problems = append(problems, fromProblem{line: start, msg: msg, warning: !pin.required(repo)})
			}
		}
		if len(fields) >= 3 && strings.EqualFold(fields[1], "AS") {
			stages[strings.ToLower(fields[2])] = true
		}
	}
	return problems, sc.Err()
}

// expandArgs substitutes $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt}; it returns the
// first variable left without a value.
func expandArgs(s string, args map[string]string) (string, string) {
	unresolved := ""
	out := reVar.ReplaceAllStringFunc(s, func(m string) string {
		sm := reVar.FindStringSubmatch(m)
		name := sm[1] + sm[4]
		v, ok := args[name]
		switch sm[2] {
		case "-":
			if !ok || v == "" {
				return sm[3]
			}
		case "+":
			if ok && v != "" {
				return sm[3]
			}
			return ""
		}
		if !ok || v == "" {
			if unresolved == "" {
				unresolved = name
			}
		}
		return v
	})
	return out, unresolved
}

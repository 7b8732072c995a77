package gate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/policy"
)

// Manifest is what the gate judges: a manifest of an upstream repository.
type Manifest struct {
	// Repository is "<upstream>/<repository>", e.g. "docker.io/library/alpine".
	Repository string
	// Tag is the tag it was pulled by, empty for a pull by digest.
	Tag        string
	Descriptor v1.Descriptor
	// Warm is set for a warm-up (prefetch), which is no client's pull.
	Warm bool
}

// Verdict is the gate's answer for one request.
type Verdict struct {
	Allowed bool
	// Policy names the policy that decided ("allowlist" for the allowlist).
	Policy string
	// Rule names what decided, e.g. "allowlist".
	Rule string
	// Message is written for the developer who was denied: what, why, what next.
	Message string
	// Report is where the full report of a denied image is read (an absolute URL).
	Report string
	// Short is the denial in one line, for clients that show only a status line.
	Short string
}

// Allowlist admits repositories matching configured globs or named in list files.
// It is the first Gate, and also the check that keeps the proxy from fetching anything
// of a repository no list admits.
type Allowlist struct {
	globs []*regexp.Regexp
	repos map[string]bool
}

// NewAllowlist builds an allowlist from globs and list files (one image ref per line,
// "#" comments, blank lines ignored).
func NewAllowlist(globs []string, lists []string) (*Allowlist, error) {
	a := &Allowlist{repos: map[string]bool{}}
	for _, g := range globs {
		re, err := policy.CompileGlob(g)
		if err != nil {
			return nil, err
		}
		a.globs = append(a.globs, re)
	}
	for _, l := range lists {
		f, err := os.Open(l)
		if err != nil {
			return nil, fmt.Errorf("allowlist: %w", err)
		}
		refs, err := ParseImageList(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("allowlist: %s: %w", l, err)
		}
		for _, r := range refs {
			a.repos[RepositoryOf(r)] = true
		}
	}
	return a, nil
}

// Allowed reports whether repository ("<upstream>/<repo>") may be pulled.
func (a *Allowlist) Allowed(repository string) bool {
	if a.repos[repository] {
		return true
	}
	for _, g := range a.globs {
		if g.MatchString(repository) {
			return true
		}
	}
	return false
}

// Check implements Gate.
func (a *Allowlist) Check(_ context.Context, m Manifest) (Verdict, error) {
	if a.Allowed(m.Repository) {
		return Verdict{Allowed: true, Policy: "allowlist", Rule: "allowlist"}, nil
	}
	return Verdict{Policy: "allowlist", Rule: "allowlist", Message: NotAllowedMessage(m.Repository),
		Short: "denied: repository " + m.Repository + " is not on the allowlist of this proxy"}, nil
}

// Judged is Check: the allowlist always knows.
func (a *Allowlist) Judged(ctx context.Context, m Manifest) (Verdict, bool) {
	v, _ := a.Check(ctx, m)
	return v, true
}

// NotAllowedMessage is the denial of a repository no allowlist admits.
func NotAllowedMessage(repo string) string {
	return fmt.Sprintf("repository %s is not on the allowlist of this proxy; ask the platform team to add it (allow.repositories or an allow list file) or use an approved hardened image", repo)
}

// A repository path component, as the distribution spec defines it.
var reComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// ParseImageList reads the seed list format: one image reference per line, "#" starts a
// comment, blank lines are ignored. A line that is not a valid reference is an error
// naming its line number.
func ParseImageList(r io.Reader) ([]name.Reference, error) {
	var refs []name.Reference
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		ref, err := name.ParseReference(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", n, line, err)
		}
		// go-containerregistry accepts "/" and "a//b"; no registry serves such a name.
		for _, c := range strings.Split(ref.Context().RepositoryStr(), "/") {
			if !reComponent.MatchString(c) {
				return nil, fmt.Errorf("line %d: %q: repository %q is not a valid repository name", n, line, ref.Context().RepositoryStr())
			}
		}
		refs = append(refs, ref)
	}
	return refs, sc.Err()
}

// RepositoryOf is the "<upstream>/<repo>" name of a reference, with Docker Hub spelled
// docker.io as the proxy's upstream names do.
func RepositoryOf(ref name.Reference) string {
	reg := ref.Context().RegistryStr()
	if reg == name.DefaultRegistry || reg == "docker.io" {
		reg = "docker.io"
	}
	return reg + "/" + ref.Context().RepositoryStr()
}

package mirror

import (
	"regexp"
	"strings"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/config"
)

// The distribution spec's path component, written out again so the test does not trust
// the code under test.
var specComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// FuzzResolve: the router never panics; a name it resolves has the key
// "<upstream>/<repo>", a repository of spec components within the length limits, and the
// upstream ?ns= named. The seeds are in testdata/fuzz/FuzzResolve.
func FuzzResolve(f *testing.F) {
	cfg := &config.Config{
		Upstreams: []config.UpstreamConfig{
			{Name: "docker.io", Aliases: []string{"registry-1.docker.io"}},
			{Name: "cgr.dev"},
			{Name: "quay.io", Aliases: []string{"127.0.0.1:5001"}},
		},
		Aliases: map[string]string{"chainguard": "cgr.dev/chainguard", "cg": "cgr.dev/chainguard/images"},
	}
	ups := []*upstream{{name: "docker.io"}, {name: "cgr.dev"}, {name: "quay.io"}}
	rr := newRouter(ups, cfg)
	f.Add("library/alpine", "docker.io")
	f.Fuzz(func(t *testing.T, name, ns string) {
		rt := &Route{Kind: KindManifest, Name: name, NS: ns}
		if err := rr.resolve(rt); err != nil {
			if rt.up != nil || rt.Key != "" || rt.Repo != "" {
				t.Fatalf("refused %q but filled the route: %+v", name, rt)
			}
			return
		}
		if rt.up == nil {
			t.Fatalf("%q resolved without an upstream", name)
		}
		if rt.Key != rt.up.name+"/"+rt.Repo {
			t.Fatalf("key %q is not %q + / + %q", rt.Key, rt.up.name, rt.Repo)
		}
		if ns != "" && rr.byHost[ns] != rt.up {
			t.Fatalf("ns %q resolved to %s", ns, rt.up.name)
		}
		if len(name) > maxNameLen || len(rt.Repo) > maxNameLen {
			t.Fatalf("name of %d, repository of %d characters accepted", len(name), len(rt.Repo))
		}
		for _, c := range strings.Split(rt.Repo, "/") {
			if len(c) > maxComponentLen || !specComponent.MatchString(c) {
				t.Fatalf("repository %q (from %q) has component %q", rt.Repo, name, c)
			}
		}
	})
}

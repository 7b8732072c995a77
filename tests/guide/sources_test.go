package guide

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

// sources knows which registries are documented in docs/image-sources.md or configured
// as upstreams in configs/goldproxy.yaml.
type sources struct {
	doc        string
	configured map[string]bool
	upstreams  []string // the names of the configured upstreams
}

func loadSources(t *testing.T) sources {
	t.Helper()
	doc, err := os.ReadFile("../../docs/image-sources.md")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../configs/goldproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, "../../configs")
	if err != nil {
		t.Fatal(err)
	}
	s := sources{doc: string(doc), configured: map[string]bool{}}
	for _, u := range cfg.Upstreams {
		s.upstreams = append(s.upstreams, u.Name)
		s.configured[u.Name] = true
		for _, a := range u.Aliases {
			s.configured[a] = true
		}
	}
	return s
}

// known reports whether ref's registry is documented (a row of the table names it) or
// configured.
func (s sources) known(ref name.Reference) (string, bool) {
	reg, _, _ := strings.Cut(gate.RepositoryOf(ref), "/")
	return reg, s.configured[reg] || strings.Contains(s.doc, "| `"+reg+"` |")
}

// readList parses a list in the seed format with the proxy's parser; "sbom:PATH" lines,
// which the baseline also takes, name no registry.
func readList(t *testing.T, path string) []name.Reference {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "sbom:") {
			lines[i] = ""
		}
	}
	refs, err := gate.ParseImageList(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return refs
}

// TestImageSources checks docs/image-sources.md has a row for every configured upstream,
// and parses every list under tests/baseline (and the seeds in configs/): each is named
// there and each registry it uses is documented there or configured as an upstream.
func TestImageSources(t *testing.T) {
	s := loadSources(t)
	lists, _ := filepath.Glob("../../tests/baseline/*.txt")
	seeds, _ := filepath.Glob("../../configs/images-*.txt")
	if len(lists) < 5 {
		t.Fatalf("tests/baseline has %d lists, want the standard, hardened, team, local, private and microservices ones", len(lists))
	}
	for _, u := range s.upstreams {
		if !strings.Contains(s.doc, "| `"+u+"` |") {
			t.Errorf("the upstream %s of configs/goldproxy.yaml has no row in docs/image-sources.md", u)
		}
	}
	for _, path := range append(lists, seeds...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			if !strings.Contains(s.doc, "`"+filepath.Base(path)+"`") && !strings.Contains(s.doc, filepath.Base(path)+"`") {
				t.Errorf("docs/image-sources.md does not name the list %s", filepath.Base(path))
			}
			refs := readList(t, path)
			if len(refs) == 0 {
				t.Fatalf("%s lists no image", path)
			}
			for _, r := range refs {
				if reg, ok := s.known(r); !ok {
					t.Errorf("%s: registry %s (of %s) is neither in docs/image-sources.md nor an upstream in configs/goldproxy.yaml", path, reg, r)
				}
			}
		})
	}
}

// TestImageSourcesCheckFails shows the check above rejects what it should.
func TestImageSourcesCheckFails(t *testing.T) {
	s := loadSources(t)
	for _, tc := range []struct {
		ref  string
		want bool
	}{
		{"alpine:3.20", true},                              // docker.io, configured
		{"quay.io/prometheus/busybox:latest", true},        // configured
		{"localhost:5001/library/alpine:3.20", true},       // documented only
		{"myregistry.company.com/myteam/api:v1", true},     // documented only
		{"registry.unknown.example/team/app:1", false},     // neither
		{"myregistry.company.com.evil.example/x:1", false}, // a documented name as a prefix is not enough
	} {
		r, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if reg, got := s.known(r); got != tc.want {
			t.Errorf("%s: registry %s known = %v, want %v", tc.ref, reg, got, tc.want)
		}
	}
}

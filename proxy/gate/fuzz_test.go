package gate

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// The distribution spec's path component, written out again so the test does not trust
// the code under test.
var specComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

// FuzzImageList: ParseImageList never panics; every reference it returns parses again to
// the same name, and RepositoryOf is "<host>/<repo>" with Docker Hub as docker.io. The
// seeds are in testdata/fuzz/FuzzImageList.
func FuzzImageList(f *testing.F) {
	f.Add([]byte("# hardened\ncgr.dev/chainguard/static:latest\nalpine:3.20 # hub\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := ParseImageList(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, ref := range refs {
			again, err := name.ParseReference(ref.String())
			if err != nil {
				t.Fatalf("%q does not parse again: %v", ref.String(), err)
			}
			if again.Name() != ref.Name() {
				t.Fatalf("%q parses again as %q", ref.Name(), again.Name())
			}
			host := ref.Context().RegistryStr()
			if host == name.DefaultRegistry {
				host = "docker.io"
			}
			repo := RepositoryOf(ref)
			if repo != host+"/"+ref.Context().RepositoryStr() || strings.HasSuffix(repo, "/") {
				t.Fatalf("RepositoryOf(%q) = %q", ref.Name(), repo)
			}
			for _, c := range strings.Split(ref.Context().RepositoryStr(), "/") {
				if !specComponent.MatchString(c) {
					t.Fatalf("%q has repository component %q", ref.Name(), c)
				}
			}
		}
	})
}

// FuzzClassify: classify never panics; an artifact has no filesystem layer; what is not
// invalid lists the config digest first and then every layer. The seeds are in
// testdata/fuzz/FuzzClassify.
func FuzzClassify(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}`), 0)
	f.Fuzz(func(t *testing.T, raw []byte, maxLayers int) {
		c := classify(raw, maxLayers)
		if c.what != classImage && c.what != classArtifact && c.what != classInvalid && c.what != classRefused {
			t.Fatalf("class %d", c.what)
		}
		if c.kind == "" {
			t.Fatal("no kind")
		}
		if c.what == classInvalid || c.what == classRefused {
			return
		}
		var m struct {
			Config struct {
				Digest digest.Digest `json:"digest"`
			} `json:"config"`
			Layers []struct {
				MediaType string `json:"mediaType"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("classified %v but does not decode: %v", c.what, err)
		}
		if len(c.blobs) != 1+len(m.Layers) || c.blobs[0] != m.Config.Digest {
			t.Fatalf("blobs %v for config %s and %d layers", c.blobs, m.Config.Digest, len(m.Layers))
		}
		if maxLayers > 0 && len(m.Layers) > maxLayers {
			t.Fatalf("%d layers over a limit of %d classified %v", len(m.Layers), maxLayers, c.what)
		}
		if c.what == classArtifact {
			for _, l := range m.Layers {
				if filesystemLayers[normalizeMediaType(l.MediaType)] {
					t.Fatalf("artifact (%s) with filesystem layer %q", c.kind, l.MediaType)
				}
			}
		}
	})
}

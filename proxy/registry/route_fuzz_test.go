package registry

import (
	"strings"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/mirror"
)

// FuzzParsePath: parsePath never panics, names only known kinds, and a name it accepts has
// no empty component, no "..", and no leading or trailing slash. The seeds are in
// testdata/fuzz/FuzzParsePath.
func FuzzParsePath(f *testing.F) {
	f.Add("/v2/library/alpine/manifests/3.20")
	f.Fuzz(func(t *testing.T, p string) {
		kind, name, ref, ok := parsePath(p)
		_ = RouteLabel(p)
		if !ok {
			if kind != "" || name != "" || ref != "" {
				t.Fatalf("not ok but %q %q %q", kind, name, ref)
			}
			return
		}
		switch kind {
		case mirror.KindBase:
			if name != "" || ref != "" {
				t.Fatalf("base with name %q ref %q", name, ref)
			}
			return
		case mirror.KindUpload, mirror.KindTags:
			if ref != "" {
				t.Fatalf("%s with ref %q", kind, ref)
			}
		case mirror.KindManifest, mirror.KindBlob, mirror.KindReferrers:
			if ref == "" || strings.Contains(ref, "/") {
				t.Fatalf("%s with ref %q", kind, ref)
			}
		default:
			t.Fatalf("unknown kind %q", kind)
		}
		if name == "" || strings.Contains(name, "..") || strings.HasSuffix(name, "/") {
			t.Fatalf("name %q accepted", name)
		}
		for _, c := range strings.Split(name, "/") {
			if c == "" {
				t.Fatalf("name %q with an empty component accepted", name)
			}
		}
		if !strings.HasPrefix(p, "/v2/"+name+"/") {
			t.Fatalf("name %q is not what %q starts with", name, p)
		}
	})
}

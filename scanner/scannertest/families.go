package scannertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// WolfiImage is a Wolfi image (os-release ID=wolfi, apk database) with libcrypto3 and
// libssl3 3.1.3-r0 from openssl (CVE-2023-5363 HIGH, fixed in Wolfi's 3.1.4-r0).
func WolfiImage(t testing.TB) v1.Image {
	installed := apkEntry("ca-certificates-bundle", "20230506-r0", "ca-certificates") + apkEntry("libcrypto3", "3.1.3-r0", "openssl") + apkEntry("libssl3", "3.1.3-r0", "openssl")
	return imageWith(t, map[string][]byte{
		"etc/os-release":       []byte("ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\nHOME_URL=\"https://wolfi.dev\"\n"),
		"lib/apk/db/installed": []byte(installed),
	}, nil, "65532")
}

// GemImage holds the specification rubygems installs for rack 2.2.3 under the
// official ruby image's GEM_HOME (CVE-2022-30123 CRITICAL, fixed in 2.2.3.1).
func GemImage(t testing.TB) v1.Image {
	spec := `# -*- encoding: utf-8 -*-
# stub: rack 2.2.3 ruby lib

Gem::Specification.new do |s|
  s.name = "rack".freeze
  s.version = "2.2.3"

  s.required_rubygems_version = Gem::Requirement.new(">= 0".freeze) if s.respond_to? :required_rubygems_version=
  s.require_paths = ["lib".freeze]
  s.authors = ["Leah Neukirchen".freeze]
  s.date = "2020-06-15"
  s.description = "Rack provides a minimal, modular and adaptable interface for developing\nweb applications in Ruby.\n".freeze
  s.email = "leah@vuxu.org".freeze
  s.homepage = "https://github.com/rack/rack".freeze
  s.licenses = ["MIT".freeze]
  s.required_ruby_version = Gem::Requirement.new(">= 2.3.0".freeze)
  s.rubygems_version = "3.1.2".freeze
  s.summary = "a modular Ruby webserver interface".freeze
end
`
	return image(t, map[string][]byte{
		"usr/local/bundle/specifications/rack-2.2.3.gemspec": []byte(spec),
		"usr/local/bundle/gems/rack-2.2.3/lib/rack.rb":       []byte("module Rack\nend\n"),
	})
}

// DotNetImage is a published .NET app: app/App.deps.json as `dotnet publish` writes it,
// with Newtonsoft.Json 12.0.3 (CVE-2024-21907 HIGH, fixed in 13.0.1) at run time.
func DotNetImage(t testing.TB) v1.Image {
	deps := `{
  "runtimeTarget": {"name": ".NETCoreApp,Version=v8.0", "signature": ""},
  "compilationOptions": {},
  "targets": {
    ".NETCoreApp,Version=v8.0": {
      "App/1.0.0": {
        "dependencies": {"Newtonsoft.Json": "12.0.3"},
        "runtime": {"App.dll": {}}
      },
      "Newtonsoft.Json/12.0.3": {
        "runtime": {"lib/netstandard2.0/Newtonsoft.Json.dll": {"assemblyVersion": "12.0.0.0", "fileVersion": "12.0.3.23909"}}
      }
    }
  },
  "libraries": {
    "App/1.0.0": {"type": "project", "serviceable": false, "sha512": ""},
    "Newtonsoft.Json/12.0.3": {
      "type": "package",
      "serviceable": true,
      "sha512": "sha512-Bp3AelW4tTlVJRvZrDJ6SmPZxqa8PFEYYz3y7oQ8ThH9NyrL5mfxFkmbtDjYnOKRO0PLDHUQomgVQ8XkKVwQpQ==",
      "path": "newtonsoft.json/12.0.3",
      "hashPath": "newtonsoft.json.12.0.3.nupkg.sha512"
    }
  }
}`
	return image(t, map[string][]byte{
		"app/App.deps.json":       []byte(deps),
		"app/App.dll":             []byte("MZ app"),
		"app/Newtonsoft.Json.dll": []byte("MZ newtonsoft"),
	})
}

// RustImage holds usr/local/bin/app, a Rust binary built with `cargo auditable`: at run
// time smallvec 1.6.0 (CVE-2021-25900 CRITICAL, fixed in 1.6.1) and serde 1.0.130; cc
// 1.0.73 only at build time (not shipped, not reported).
func RustImage(t testing.TB) v1.Image {
	return image(t, map[string][]byte{"usr/local/bin/app": AuditableELF(t, []Crate{
		{Name: "app", Version: "0.1.0", Source: "local", Dependencies: []int{1, 2, 3}, Root: true},
		{Name: "smallvec", Version: "1.6.0", Source: "crates.io"},
		{Name: "serde", Version: "1.0.130", Source: "crates.io"},
		{Name: "cc", Version: "1.0.73", Source: "crates.io", Kind: "build"},
	})})
}

// UBIContentSetsImage is UBIImage with the content manifest Red Hat's build system
// writes (root/buildinfo/content_manifests/<nvr>.json) naming the repositories its
// packages came from; Trivy matches Red Hat advisories through them.
func UBIContentSetsImage(t testing.TB, contentSets ...string) v1.Image {
	t.Helper()
	manifest := `{"metadata": {"icm_version": 1, "icm_spec": "https://raw.githubusercontent.com/containerbuildsystem/atomic-reactor/master/atomic_reactor/schemas/content_manifest.json", "image_layer_index": 0}, "content_sets": ["` + strings.Join(contentSets, `", "`) + `"], "image_contents": []}`
	return ubiImage(t, map[string][]byte{"root/buildinfo/content_manifests/ubi9-container-9.2-755.json": []byte(manifest)})
}

// UBIBuildInfoImage is UBIImage with no content manifest but the Dockerfile Red Hat's
// builds leave in root/buildinfo/ (Dockerfile-<component>-<version>-<release>), as older
// images have: Trivy then finds the CPEs by the image's NVR and architecture labels
// (ubi9-container-9.2-755-x86_64, a 9.2 EUS build).
func UBIBuildInfoImage(t testing.TB) v1.Image {
	dockerfile := `FROM sha256:3c7bb8a8a4bcf8b8fd1a6c5e06f62e5c3b5cce0ee4f6d5a1c0e2c0f07f6bd1a0

LABEL maintainer="Red Hat, Inc."
LABEL com.redhat.component="ubi9-container" \
      name="ubi9" \
      version="9.2"
LABEL "release"="755" "architecture"="x86_64"
CMD ["/bin/bash"]
`
	return ubiImage(t, map[string][]byte{"root/buildinfo/Dockerfile-ubi9-container-9.2-755": []byte(dockerfile)})
}

func ubiImage(t testing.TB, extra map[string][]byte) v1.Image {
	t.Helper()
	rpmdb, err := os.ReadFile(filepath.Join(fixturesDir(), "..", "rpm", "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"etc/redhat-release":       []byte("Red Hat Enterprise Linux release 9.3 (Plow)\n"),
		"etc/os-release":           []byte("NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.3 (Plow)\"\nID=\"rhel\"\nVERSION_ID=\"9.3\"\nPLATFORM_ID=\"platform:el9\"\n"),
		"var/lib/rpm/rpmdb.sqlite": rpmdb,
		"usr/bin/bash":             []byte("\x7fELF bash"),
		"usr/bin/microdnf":         []byte("\x7fELF microdnf"),
	}
	for n, b := range extra {
		files[n] = b
	}
	return image(t, files)
}

// LayeredImage is a Debian 12 image changed by later layers, as `docker build` leaves
// one: layer 1 has libc6 2.36-9+deb12u1 and libssl3 3.0.11-1~deb12u2 in the dpkg status
// file (CVE-2023-4911, CVE-2024-6119); layer 2 installs lodash 4.17.20 with npm
// (CVE-2021-23337) and requests 2.28.0 with pip (CVE-2023-32681); layer 3 removes lodash
// (a whiteout of its directory), upgrades libssl3 to the fixed 3.0.14-1~deb12u2 (a new
// status file) and requests to 2.30.0, still vulnerable (a whiteout of the old
// dist-info, the new one beside it). Only libc6 and requests 2.30.0 remain vulnerable.
func LayeredImage(t testing.TB) v1.Image { return layeredImage(t, true) }

// LayeredImageBeforeUpgrade is LayeredImage without its third layer: every package at
// its old version, lodash still there. The control that the third layer is what
// changes the findings.
func LayeredImageBeforeUpgrade(t testing.TB) v1.Image { return layeredImage(t, false) }

func layeredImage(t testing.TB, upgraded bool) v1.Image {
	t.Helper()
	base := DebianImage(t, false)
	libc := dpkgEntry("libc6", "glibc", "2.36-9+deb12u1")
	layers := []v1.Layer{
		Layer(t, map[string][]byte{
			"app/node_modules/lodash/package.json":                                           []byte(`{"name":"lodash","version":"4.17.20","license":"MIT"}`),
			"usr/local/lib/python3.11/site-packages/requests-2.28.0.dist-info/METADATA":      []byte("Metadata-Version: 2.1\nName: requests\nVersion: 2.28.0\nLicense: Apache 2.0\n"),
			"usr/local/lib/python3.11/site-packages/requests-2.28.0.dist-info/top_level.txt": []byte("requests\n"),
		}),
	}
	if upgraded {
		layers = append(layers, Layer(t, map[string][]byte{
			"app/node_modules/.wh.lodash":                                               nil,
			"usr/local/lib/python3.11/site-packages/.wh.requests-2.28.0.dist-info":      nil,
			"usr/local/lib/python3.11/site-packages/requests-2.30.0.dist-info/METADATA": []byte("Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\nLicense: Apache 2.0\n"),
			"var/lib/dpkg/status": []byte(libc + "\n" + dpkgEntry("libssl3", "openssl", "3.0.14-1~deb12u2")),
		}))
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

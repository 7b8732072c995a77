package scanner_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// exportDir, when set, is where TestParity writes what bench/parity.sh checks against
// the trivy CLI: the test DB and Java DB as a Trivy cache (cache/db, cache/java-db), each family's image
// as a docker tarball (<family>.tar) and the gate's report (<family>.gate.json).
var exportDir = flag.String("export", "", "write the parity images, the gate's reports and the test DBs under this directory")

// family is an image family the gate must judge as `trivy image` does: the image and
// the (VulnerabilityID, PkgName, InstalledVersion) set the test DB's advisories give
// for the package versions the image holds.
type family struct {
	name string
	img  func(testing.TB) v1.Image
	want []string
}

func families() []family {
	return []family{
		{"alpine", func(t testing.TB) v1.Image { return scannertest.AlpineImage(t, true) }, []string{
			"CVE-2023-42363 busybox 1.36.1-r15",
			"CVE-2024-0727 libcrypto3 3.1.4-r2", "CVE-2024-0727 libssl3 3.1.4-r2",
			"CVE-2024-5535 libcrypto3 3.1.4-r2", "CVE-2024-5535 libssl3 3.1.4-r2",
			"CVE-2024-6119 libcrypto3 3.1.4-r2", "CVE-2024-6119 libssl3 3.1.4-r2",
		}},
		{"wolfi", scannertest.WolfiImage, []string{
			"CVE-2023-5363 libcrypto3 3.1.3-r0", "CVE-2023-5363 libssl3 3.1.3-r0",
		}},
		{"debian", func(t testing.TB) v1.Image { return scannertest.DebianImage(t, false) }, []string{
			"CVE-2023-4911 libc6 2.36-9+deb12u1", "CVE-2024-6119 libssl3 3.0.11-1~deb12u2",
		}},
		{"distroless", func(t testing.TB) v1.Image { return scannertest.DebianImage(t, true) }, []string{
			"CVE-2023-4911 libc6 2.36-9+deb12u1", "CVE-2024-6119 libssl3 3.0.11-1~deb12u2",
		}},
		// No content manifest: Trivy's default content sets for RHEL 9 (baseos, appstream).
		{"rpm", scannertest.UBIImage, []string{"CVE-2023-5678 openssl-libs 1:3.0.7-24.el9"}},
		// The same packages from the 9.2 EUS repositories: only the EUS advisory applies.
		{"rpm-content-sets", func(t testing.TB) v1.Image {
			return scannertest.UBIContentSetsImage(t, "rhel-9-for-x86_64-baseos-eus-rpms__9_DOT_2", "rhel-9-for-x86_64-appstream-eus-rpms__9_DOT_2")
		}, []string{"CVE-2022-3715 bash 5.1.8-6.el9_1"}},
		// The main stream named by a content manifest, with the __9 suffix Red Hat's
		// builds leave on content sets.
		{"rpm-content-sets-main", func(t testing.TB) v1.Image {
			return scannertest.UBIContentSetsImage(t, "rhel-9-for-x86_64-baseos-rpms__9", "rhel-9-for-x86_64-appstream-rpms__9")
		}, []string{"CVE-2023-5678 openssl-libs 1:3.0.7-24.el9"}},
		// No content manifest, but an NVR (root/buildinfo/Dockerfile-*) of a 9.2 EUS build.
		{"rpm-nvr", scannertest.UBIBuildInfoImage, []string{"CVE-2022-3715 bash 5.1.8-6.el9_1"}},
		{"npm-pip", scannertest.AppImage, []string{
			"CVE-2021-23337 lodash 4.17.20", "CVE-2023-32681 requests 2.28.0",
		}},
		{"go-binary", func(t testing.TB) v1.Image { return scannertest.GoToolchainBinaryImage(t, "go1.22.12") }, []string{
			"CVE-2021-38561 golang.org/x/text v0.3.6", "CVE-2022-32149 golang.org/x/text v0.3.6",
			"CVE-2025-22871 stdlib v1.22.12",
		}},
		{"rust-auditable", scannertest.RustImage, []string{"CVE-2021-25900 smallvec 1.6.0"}},
		{"gems", scannertest.GemImage, []string{"CVE-2022-30123 rack 2.2.3"}},
		{"dotnet", scannertest.DotNetImage, []string{"CVE-2024-21907 Newtonsoft.Json 12.0.3"}},
		// Identified by its pom.properties with the Java DB TestParity loads.
		{"jar", scannertest.JavaImage, []string{"CVE-2021-44228 org.apache.logging.log4j:log4j-core 2.14.1"}},
		{"embedded-sbom", scannertest.BitnamiImage, []string{"CVE-2024-31449 redis 7.2.4"}},
		{"layers-before-upgrade", scannertest.LayeredImageBeforeUpgrade, []string{
			"CVE-2021-23337 lodash 4.17.20", "CVE-2023-32681 requests 2.28.0",
			"CVE-2023-4911 libc6 2.36-9+deb12u1", "CVE-2024-6119 libssl3 3.0.11-1~deb12u2",
		}},
		{"layers-whiteouts-upgrades", scannertest.LayeredImage, []string{
			"CVE-2023-32681 requests 2.30.0", "CVE-2023-4911 libc6 2.36-9+deb12u1",
		}},
	}
}

// triples is a scan's (VulnerabilityID, PkgName, InstalledVersion) set, sorted.
func triples(res *scanner.Result) []string {
	var out []string
	for _, r := range res.Report.Results {
		for _, v := range r.Vulnerabilities {
			out = append(out, v.VulnerabilityID+" "+v.PkgName+" "+v.InstalledVersion)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestParity scans one image of each family the gate handles and checks the findings
// are exactly those the test DB's advisories give for the versions installed: nothing
// missed, nothing extra, no package at a version a later layer replaced.
// bench/parity.sh runs it with -export and checks the same images with `trivy image`.
func TestParity(t *testing.T) {
	cacheDir := t.TempDir() // laid out as the CLI's --cache-dir: db/, java-db/
	if *exportDir != "" {
		cacheDir = filepath.Join(*exportDir, "cache")
	}
	scannertest.BuildDB(t, filepath.Join(cacheDir, "db"), time.Now().UTC().Truncate(time.Second))
	scannertest.BuildJavaDB(t, cacheDir)
	db := scanner.NewDB()
	if _, err := db.Load(filepath.Join(cacheDir, "db"), "test"); err != nil {
		t.Fatal(err)
	}
	if err := db.LoadJava(cacheDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := scanner.New(filepath.Join(t.TempDir(), "cache"), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, f := range families() {
		t.Run(f.name, func(t *testing.T) {
			img := f.img(t)
			ref := "goldproxy.test/parity/" + f.name + ":1"
			res, err := s.Scan(context.Background(), img, ref)
			if err != nil {
				t.Fatal(err)
			}
			got := triples(res)
			want := slices.Sorted(slices.Values(f.want))
			if !slices.Equal(got, want) {
				t.Errorf("found:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			if *exportDir != "" {
				export(t, *exportDir, f.name, ref, img, res)
			}
		})
	}
}

func export(t *testing.T, dir, family, ref string, img v1.Image, res *scanner.Result) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(filepath.Join(dir, family+".tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	// The report as `trivy image --format json` writes one, so parity.sh reads both alike.
	b, err := json.Marshal(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, family+".gate.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRedHatContentSets pins how a Red Hat advisory reaches an image: through the CPEs of
// the repositories its content manifest names, else of its NVR, else of Trivy's RHEL 9
// defaults; an entry for another stream's CPE is not reported, whatever the package; an
// image from repositories the DB does not know gets no verdict.
func TestRedHatContentSets(t *testing.T) {
	s := newScanner(t)
	eus := []string{"rhel-9-for-x86_64-baseos-eus-rpms__9_DOT_2", "rhel-9-for-x86_64-appstream-eus-rpms__9_DOT_2"}
	for _, tc := range []struct {
		name string
		img  v1.Image
		want string // "ID pkg installed fixed status", or "error: <what the scan error says>"
	}{
		{"defaults: main stream, fixed", scannertest.UBIImage(t), "CVE-2023-5678 openssl-libs 1:3.0.7-24.el9 1:3.0.7-27.el9 fixed"},
		{"EUS content sets: unpatched there", scannertest.UBIContentSetsImage(t, eus...), "CVE-2022-3715 bash 5.1.8-6.el9_1  affected"},
		{"EUS by NVR", scannertest.UBIBuildInfoImage(t), "CVE-2022-3715 bash 5.1.8-6.el9_1  affected"},
		// Trivy cannot tell which advisories apply: the scan fails, as `trivy image` does
		// ("unable to find CPE indices"), rather than finding nothing.
		{"a content set the DB does not know: no verdict", scannertest.UBIContentSetsImage(t, "rhel-9-for-x86_64-sap-solutions-rpms"), "error: unable to find CPE indices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Scan(context.Background(), tc.img, "registry.access.redhat.com/ubi9/ubi:9")
			if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("scan error %v, want one saying %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range res.Report.Results {
				for _, v := range r.Vulnerabilities {
					got = append(got, strings.Join([]string{v.VulnerabilityID, v.PkgName, v.InstalledVersion, v.FixedVersion, v.Status.String()}, " "))
				}
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("found %q, want %q", got, tc.want)
			}
		})
	}
}

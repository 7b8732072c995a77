package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// findings reads the (VulnerabilityID, PkgName, InstalledVersion) triples of a Trivy
// JSON report.
func findings(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Results []struct {
			Vulnerabilities []struct{ VulnerabilityID, PkgName, InstalledVersion string }
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			out = append(out, v.VulnerabilityID+" "+v.PkgName+" "+v.InstalledVersion)
		}
	}
	sort.Strings(out)
	return out
}

// TestScanSBOMFindsWhatTheImageScanFinds scans images, writes their SBOMs with
// goldproxy's own --format cyclonedx and spdx, scans those with --sbom and compares the
// findings: the same, and not none. A baseline list takes the SBOM as sbom:PATH too.
func TestScanSBOMFindsWhatTheImageScanFinds(t *testing.T) {
	up := proxytest.NewUpstream(t)
	db := filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, db, time.Now())
	for _, tc := range []struct {
		name string
		img  v1.Image
	}{
		{"alpine", scannertest.AlpineImage(t, true)},
		{"debian", scannertest.DebianImage(t, false)},
		{"go binary", scannertest.GoBinaryImage(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := up.Host + "/myteam/" + strings.ReplaceAll(tc.name, " ", "") + ":v1"
			up.Push(t, strings.TrimPrefix(ref, up.Host+"/"), tc.img)
			imgOut := t.TempDir()
			if out, code := runCLI(t, "scan", "--image", ref, "--db-dir", db, "--output-dir", imgOut, "--format", "json,cyclonedx,spdx"); code > 1 {
				t.Fatalf("scan --image: exit %d\n%s", code, out)
			}
			want := findings(t, filepath.Join(imgOut, "report.json"))
			if len(want) == 0 {
				t.Fatal("the image scan found nothing: the comparison would prove nothing")
			}
			for _, sbom := range []string{"report.cdx.json", "report.spdx.json"} {
				sbomOut := t.TempDir()
				out, code := runCLI(t, "scan", "--sbom", filepath.Join(imgOut, sbom), "--db-dir", db, "--output-dir", sbomOut)
				if code > 1 {
					t.Fatalf("scan --sbom %s: exit %d\n%s", sbom, code, out)
				}
				if got := findings(t, filepath.Join(sbomOut, "report.json")); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("scan --sbom %s found\n%s\nthe image scan found\n%s", sbom, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if _, err := os.Stat(filepath.Join(sbomOut, "report.md")); err != nil {
					t.Fatalf("scan --sbom wrote no report.md: %v", err)
				}
			}
			list := write(t, imgOut, "sboms.txt", "# SBOMs in a baseline list\nsbom:report.cdx.json\n")
			blOut := t.TempDir()
			if out, code := runCLI(t, "baseline", "--images", list, "--db-dir", db, "--output-dir", blOut); code != 0 {
				t.Fatalf("baseline with sbom:PATH: exit %d\n%s", code, out)
			}
			md, _ := os.ReadFile(filepath.Join(blOut, "baseline.md"))
			if !strings.Contains(string(md), "| sbom:report.cdx.json | standard |") {
				t.Fatalf("baseline.md has no row for the SBOM:\n%s", md)
			}
		})
	}
}

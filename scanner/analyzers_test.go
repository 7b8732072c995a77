package scanner

import (
	"slices"
	"strings"
	"testing"

	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
)

// TestAnalyzerSelection pins the gate's analysis to what Trivy v0.74.0's CLI does for
// `trivy image --scanners vuln` (pkg/commands/artifact/run.go: ScanImage and
// disabledAnalyzers). A Trivy upgrade that changes an analyzer list, or adds an
// analyzer, fails here: compare run.go again and update disabledAnalyzers and this.
func TestAnalyzerSelection(t *testing.T) {
	cli := []string{
		// analyzer.TypeLockfiles (ScanImage)
		"bundler", "npm", "yarn", "pnpm", "bun", "pip", "pipenv", "poetry", "uv", "pylock", "gomod", "pom",
		"conan-lock", "gradle-lockfile", "sbt-lockfile", "cocoapods", "swift", "pubspec-lock", "mix-lock",
		"conda-environment", "composer",
		"apk-command", // !ScanRemovedPkgs
		"secret",      // no secret scanner
		// analyzer.TypeConfigFiles: no misconfig scanner
		"azure-arm", "cloudformation", "dockerfile", "helm", "kubernetes", "terraform", "terraformplan-json",
		"terraformplan-snapshot", "yaml", "json", "ansible",
		"license-file",       // no license scanner
		"history-dockerfile", // no image config misconfig scanner
		"executable",         // Rekor is no SBOM source
		"rpm-archive",        // TRIVY_EXPERIMENTAL_RPM_ARCHIVE unset
	}
	str := func(ts []analyzer.Type) []string {
		out := make([]string, len(ts))
		for i, a := range ts {
			out[i] = string(a)
		}
		return out
	}
	if got := str(disabledAnalyzers(true)); !slices.Equal(got, cli) {
		t.Fatalf("with a Java DB the gate disables\n%q\nthe CLI disables\n%q", got, cli)
	}
	if got := str(disabledAnalyzers(false)); !slices.Equal(got, append(slices.Clone(cli), "jar")) {
		t.Fatalf("without a Java DB the gate disables %q, want the CLI's and jar", got)
	}
	if slices.Contains(str(disabledAnalyzers(true)), string(analyzer.TypeSBOM)) {
		t.Fatal("the SBOM analyzer is disabled: `trivy image` reads SBOM files in images")
	}

	// What is left on, registered as the gate's binary links them (all of Trivy's
	// analyzers, through scan/local): this changes when Trivy adds an analyzer.
	o := artifactOption(true)
	g, err := analyzer.NewAnalyzerGroup(analyzer.AnalyzerOptions{DisabledAnalyzers: o.DisabledAnalyzers})
	if err != nil {
		t.Fatal(err)
	}
	cg, err := analyzer.NewConfigAnalyzerGroup(analyzer.ConfigAnalyzerOptions{DisabledAnalyzers: o.DisabledAnalyzers})
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	v, cv := g.AnalyzerVersions(), cg.AnalyzerVersions()
	for _, m := range []map[string]int{v.Analyzers, v.PostAnalyzers} {
		for a := range m {
			on = append(on, a)
		}
	}
	for _, m := range []map[string]int{cv.Analyzers, cv.PostAnalyzers} {
		for a := range m {
			on = append(on, "config:"+a)
		}
	}
	slices.Sort(on)
	want := "alma,alpine,amazon,apk,apk-repo,bottlerocket-inventory,cargo,centos,composer-vendor,conda-pkg,config:image-config-secret,debian,dotnet-core,dpkg,dpkg-license,fedora,gemspec,gobinary,jar,julia,node-pkg,nuget,oracle,os-release,packages-props,python-egg,python-pkg,rapidfort-curated,redhat,redhat-content-manifest,redhat-dockerfile,rocky,rpm,rpmqa,rustbinary,sbom,ubuntu,ubuntu-esm"
	if got := strings.Join(on, ","); got != want {
		t.Fatalf("enabled analyzers\n%s\nwant\n%s", got, want)
	}

	// Handlers: the CLI disables none at the default detection priority; the gate
	// also disables the unpackaged (Rekor) handler, which has nothing to do without
	// the executable analyzer. The system file filter stays on, as in the CLI.
	if got := o.DisabledHandlers; !slices.Equal(got, []ftypes.HandlerType{ftypes.UnpackagedPostHandler}) {
		t.Fatalf("disabled handlers %v", got)
	}
}

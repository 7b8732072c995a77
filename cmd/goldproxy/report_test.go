package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// sarifSchema is where .ci/setup puts the SARIF 2.1.0 JSON schema.
const sarifSchema = "/usr/local/share/goldproxy/sarif-schema-2.1.0.json"

// validateSARIF validates a SARIF log against the SARIF 2.1.0 JSON schema.
func validateSARIF(t *testing.T, b []byte) {
	t.Helper()
	if _, err := os.Stat(sarifSchema); err != nil {
		if os.Getenv("GOLDPROXY_E2E") == "1" {
			t.Fatalf("GOLDPROXY_E2E=1 but %s is missing (.ci/setup installs it)", sarifSchema)
		}
		t.Logf("SARIF schema not installed (%s): schema validation skipped", sarifSchema)
		return
	}
	if err := sarifErr(b); err != nil {
		t.Fatalf("SARIF does not validate against the SARIF 2.1.0 schema: %v", err)
	}
	// The validation itself must be able to fail.
	if sarifErr([]byte(`{"version":"9.9","runs":[{"tool":{}}]}`)) == nil {
		t.Fatal("the SARIF schema accepted an invalid log")
	}
}

func sarifErr(b []byte) error {
	schema, err := jsonschema.NewCompiler().Compile(sarifSchema)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return schema.Validate(doc)
}

// checkSARIF validates against the schema and checks the parts GitHub code scanning
// reads: version, schema, a run with the tool driver and its rules, results that name a
// known rule.
func checkSARIF(t *testing.T, b []byte, cve string) {
	t.Helper()
	validateSARIF(t, b)
	var s struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID  string `json:"ruleId"`
				Level   string `json:"level"`
				Message struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []any `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("SARIF is not JSON: %v", err)
	}
	if s.Version != "2.1.0" || !strings.Contains(s.Schema, "sarif") || len(s.Runs) != 1 || s.Runs[0].Tool.Driver.Name == "" {
		t.Fatalf("SARIF envelope: %+v", s)
	}
	rules := map[string]bool{}
	for _, r := range s.Runs[0].Tool.Driver.Rules {
		rules[r.ID] = true
	}
	found := false
	for _, r := range s.Runs[0].Results {
		if !rules[r.RuleID] || r.Message.Text == "" || len(r.Locations) == 0 {
			t.Fatalf("SARIF result %+v does not name a rule of the run or lacks message/locations", r)
		}
		found = found || strings.Contains(r.RuleID, cve)
	}
	if !found {
		t.Fatalf("SARIF has no result for %s", cve)
	}
}

func checkCycloneDX(t *testing.T, b []byte, component string) {
	t.Helper()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("CycloneDX does not decode: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.Components == nil {
		t.Fatalf("BOM %+v", bom)
	}
	var names []string
	var walk func([]cdx.Component)
	walk = func(cs []cdx.Component) {
		for _, c := range cs {
			names = append(names, c.Name)
			if c.Components != nil {
				walk(*c.Components)
			}
		}
	}
	walk(*bom.Components)
	if !strings.Contains(strings.Join(names, ","), component) {
		t.Fatalf("BOM components %v lack %s", names, component)
	}
}

func TestReportFormatsFromTheAPI(t *testing.T) {
	up := proxytest.NewUpstream(t)
	d := up.Push(t, "team/alpine:vuln", scannertest.AlpineImage(t, true))
	cfg := proxytest.Config(t, up)
	cfg.DB.Dir = filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, cfg.DB.Dir, time.Now())
	g := startGated(t, cfg, up, true)
	g.get(t, "/v2/"+up.Name+"/team/alpine/manifests/vuln")
	base := "/api/v1/images/" + d.String() + "/report"
	for _, tc := range []struct {
		format, ctype string
		check         func([]byte)
	}{
		{"", "application/json", func(b []byte) {
			if !bytes.Contains(b, []byte(`"SchemaVersion": 2`)) && !bytes.Contains(b, []byte(`"SchemaVersion":2`)) {
				t.Fatalf("json report: %.200s", b)
			}
		}},
		{"sarif", "application/sarif+json", func(b []byte) { checkSARIF(t, b, "CVE-2024-5535") }},
		{"cyclonedx", "application/vnd.cyclonedx+json", func(b []byte) { checkCycloneDX(t, b, "libcrypto3") }},
		{"md", "text/markdown; charset=utf-8", func(b []byte) {
			for _, want := range []string{"# " + up.Name + "/team/alpine", "**DENIED**", "| CRITICAL | [CVE-2024-5535]"} {
				if !bytes.Contains(b, []byte(want)) {
					t.Fatalf("markdown lacks %q:\n%s", want, b)
				}
			}
		}},
	} {
		t.Run("format="+tc.format, func(t *testing.T) {
			resp, body := g.get(t, base+"?format="+tc.format)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ctype {
				t.Fatalf("%d %q: %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			tc.check([]byte(body))
		})
	}
	if resp, _ := g.get(t, base+"?format=pdf"); resp.StatusCode != 400 {
		t.Fatalf("unknown format: %d", resp.StatusCode)
	}
}

func TestScanFormats(t *testing.T) {
	dbDir := t.TempDir()
	scannertest.BuildDB(t, dbDir, time.Now())
	cfg, _ := config.Default()
	cfg.DataDir, cfg.DB.Dir = t.TempDir(), dbDir
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	ref, _ := name.ParseReference("example.com/team/alpine:1")
	if err := tarball.WriteToFile(tarPath, ref, scannertest.AlpineImage(t, true)); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var stdout strings.Builder
	if err := cli.RunScan(context.Background(), &stdout, cfg, cli.ScanOptions{Input: tarPath, OutDir: out, Formats: []string{"json", "md", "sarif", "cyclonedx"}}); err != nil && !strings.Contains(err.Error(), "denied") {
		t.Fatal(err)
	}
	for _, f := range []string{"report.json", "report.md", "report.sarif", "report.cdx.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	sarif, _ := os.ReadFile(filepath.Join(out, "report.sarif"))
	checkSARIF(t, sarif, "CVE-2024-6119")
	bom, _ := os.ReadFile(filepath.Join(out, "report.cdx.json"))
	checkCycloneDX(t, bom, "busybox")
	if err := cli.RunScan(context.Background(), &stdout, cfg, cli.ScanOptions{Input: tarPath, OutDir: out, Formats: []string{"pdf"}}); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}

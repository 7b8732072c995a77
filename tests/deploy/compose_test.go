package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/goldproxy/goldproxy/proxy/config"
)

// composeSchema is the compose-spec JSON schema, as github.com/compose-spec/compose-go/v2 (v2.16.2)
// ships it (schema/compose-spec.json); .ci/setup copies it here from the Go module proxy.
const composeSchema = "/usr/local/share/goldproxy/compose-spec.json"

var composeDir = filepath.Join(root, "deploy", "compose")

func composeErr(t *testing.T, doc []byte) error {
	t.Helper()
	f, err := os.Open(composeSchema)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose-spec.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("compose-spec.json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		return err
	}
	// YAML to the JSON data model the schema speaks (numbers as json.Number).
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return schema.Validate(inst)
}

// TestComposeFile validates deploy/compose/compose.yaml against the compose-spec schema
// (and shows the validation can fail), checks that every file it mounts exists, that
// goldproxy accepts the config it mounts, and that Prometheus scrapes goldproxy's metrics
// listener with the shipped alert rules (promtool check config).
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
			User    string   `yaml:"user"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"goldproxy", "prometheus", "grafana"} {
		if _, ok := c.Services[svc]; !ok {
			t.Fatalf("compose.yaml has no %s service", svc)
		}
	}
	if c.Services["goldproxy"].User != "65532:65532" {
		t.Errorf("goldproxy runs as %q", c.Services["goldproxy"].User)
	}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(composeDir, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	// The config goldproxy gets: paths as mounted in the container.
	cfgText, err := os.ReadFile(filepath.Join(composeDir, "goldproxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc", "goldproxy"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol, _ := os.ReadFile(filepath.Join(root, "configs", "policy.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "etc", "goldproxy", "policy.yaml"), pol, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(bytes.ReplaceAll(cfgText, []byte(" /etc/goldproxy/"), []byte(" "+dir+"/etc/goldproxy/")), dir)
	if err != nil {
		t.Fatalf("goldproxy rejects deploy/compose/goldproxy.yaml: %v", err)
	}
	if cfg.Metrics.Listen != ":9102" {
		t.Errorf("metrics.listen %q: prometheus scrapes goldproxy:9102", cfg.Metrics.Listen)
	}

	t.Run("compose-spec", func(t *testing.T) {
		requireFile(t, composeSchema)
		if err := composeErr(t, b); err != nil {
			t.Fatalf("compose.yaml does not validate against the compose-spec schema: %v", err)
		}
		bad := bytes.Replace(b, []byte("    read_only: true\n"), []byte("    read_only: true\n    restart_policy: sometimes\n"), 1)
		if err := composeErr(t, bad); err == nil {
			t.Fatal("the compose-spec schema accepted an unknown service key")
		}
	})
	t.Run("promtool", func(t *testing.T) {
		promtool := requireTool(t, "promtool")
		dir := t.TempDir()
		for dst, src := range map[string]string{
			"prometheus.yml":       filepath.Join(composeDir, "prometheus", "prometheus.yml"),
			"goldproxy-alerts.yml": filepath.Join(root, "deploy", "prometheus", "goldproxy-alerts.yml"),
		} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out := run(t, nil, promtool, "check", "config", filepath.Join(dir, "prometheus.yml"))
		if !bytes.Contains(out, []byte("SUCCESS: 1 rule files found")) {
			t.Fatalf("promtool did not load the alert rules:\n%s", out)
		}
		prom, _ := os.ReadFile(filepath.Join(composeDir, "prometheus", "prometheus.yml"))
		if !bytes.Contains(prom, []byte(`"goldproxy:9102"`)) {
			t.Error("prometheus does not scrape goldproxy:9102")
		}
	})
}

// TestGrafanaProvisioning checks that the dashboard provider points where compose
// mounts the shipped dashboard, and that the data source is the compose Prometheus.
func TestGrafanaProvisioning(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(composeDir, "grafana", "provisioning", "dashboards", "goldproxy.yaml"))
	var p struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil || len(p.Providers) != 1 {
		t.Fatalf("dashboard provider: %v %+v", err, p)
	}
	compose, _ := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if !bytes.Contains(compose, []byte("../grafana/goldproxy-dashboard.json:"+p.Providers[0].Options.Path+"/goldproxy-dashboard.json")) {
		t.Errorf("compose does not mount the dashboard into %s", p.Providers[0].Options.Path)
	}
	ds, _ := os.ReadFile(filepath.Join(composeDir, "grafana", "provisioning", "datasources", "prometheus.yaml"))
	if !bytes.Contains(ds, []byte("url: http://prometheus:9090")) || !bytes.Contains(ds, []byte("type: prometheus")) {
		t.Errorf("data source: %s", ds)
	}
}

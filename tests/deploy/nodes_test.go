package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var nodesDir = filepath.Join(root, "deploy", "nodes")

// TestNodeConfigsFailClosed reads each runtime's node configuration and checks that
// goldproxy is the only source: no upstream endpoint to fall back to, every other
// registry blocked or sent to goldproxy too.
func TestNodeConfigsFailClosed(t *testing.T) {
	const gp = "goldproxy.internal:5000"
	t.Run("containerd", func(t *testing.T) {
		sh := requireTool(t, "sh")
		dir := t.TempDir()
		cmd := exec.Command(sh, filepath.Join(nodesDir, "containerd", "install.sh"), "docker.io", "cgr.dev", "gcr.io")
		cmd.Env = append(os.Environ(), "GOLDPROXY=https://"+gp, "CERTS_D="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		for _, host := range []string{"docker.io", "cgr.dev", "gcr.io", "_default"} {
			b, err := os.ReadFile(filepath.Join(dir, host, "hosts.toml"))
			if err != nil {
				t.Fatal(err)
			}
			servers := regexp.MustCompile(`(?m)^\s*server\s*=\s*"([^"]*)"`).FindAllStringSubmatch(string(b), -1)
			hosts := regexp.MustCompile(`(?m)^\s*\[host\."([^"]*)"\]`).FindAllStringSubmatch(string(b), -1)
			if len(servers) != 1 || servers[0][1] != "https://"+gp || len(hosts) != 1 || hosts[0][1] != "https://"+gp {
				t.Errorf("%s/hosts.toml: server %v, hosts %v: goldproxy must be the only endpoint\n%s", host, servers, hosts, b)
			}
		}
	})
	t.Run("crio-podman", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(nodesDir, "crio", "registries.conf"))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Contains(s, "[[registry.mirror]]") {
			t.Error("a mirror falls back to its registry's location")
		}
		for _, m := range regexp.MustCompile(`(?m)^location\s*=\s*"([^"]*)"`).FindAllStringSubmatch(s, -1) {
			if !strings.HasPrefix(m[1], gp) {
				t.Errorf("location %q is not goldproxy", m[1])
			}
		}
		// Every registry policy.json accepts goes only to goldproxy; the rest are rejected.
		pj, err := os.ReadFile(filepath.Join(nodesDir, "crio", "policy.json"))
		if err != nil {
			t.Fatal(err)
		}
		var pol struct {
			Default    []struct{ Type string }                       `json:"default"`
			Transports map[string]map[string][]struct{ Type string } `json:"transports"`
		}
		if err := json.Unmarshal(pj, &pol); err != nil {
			t.Fatal(err)
		}
		if len(pol.Default) != 1 || pol.Default[0].Type != "reject" {
			t.Errorf("policy.json default %v, want reject", pol.Default)
		}
		for reg := range pol.Transports["docker"] {
			m := regexp.MustCompile(`(?m)^prefix = "` + regexp.QuoteMeta(reg) + `"\nlocation = "([^"]*)"`).FindStringSubmatch(s)
			if m == nil || m[1] != gp+"/"+reg {
				t.Errorf("policy.json accepts %s, which registries.conf does not send to goldproxy (%v)", reg, m)
			}
		}
	})
	t.Run("k3s-rke2", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(nodesDir, "k3s", "registries.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Mirrors map[string]struct{ Endpoint []string } `yaml:"mirrors"`
		}
		if err := yaml.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Mirrors["*"]; !ok {
			t.Error(`no "*" mirror: unlisted registries would be pulled directly`)
		}
		for reg, m := range r.Mirrors {
			if len(m.Endpoint) != 1 || m.Endpoint[0] != "https://"+gp {
				t.Errorf("mirror %s: endpoints %v, want only goldproxy", reg, m.Endpoint)
			}
		}
	})
	t.Run("kind", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(nodesDir, "kind", "kind-config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `config_path = "/etc/containerd/certs.d"`) || !strings.Contains(string(b), "install.sh") {
			t.Errorf("kind config does not use the containerd hosts.toml files:\n%s", b)
		}
	})
}

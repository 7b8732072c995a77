package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/config"
)

// kubeVersion is the Kubernetes version the chart is rendered for and whose schemas
// deploy/helm/schemas holds.
const kubeVersion = "1.27.0"

var (
	chart      = filepath.Join(root, "deploy", "helm", "goldproxy")
	schemaLoc  = filepath.Join(root, "deploy", "helm", "schemas") + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
	valueFiles = map[string][]string{"default": nil, "ha": {"-f", filepath.Join(chart, "values-ha.yaml")}}
)

func render(t *testing.T, helm string, values []string) []byte {
	t.Helper()
	return run(t, nil, helm, append([]string{"template", "goldproxy", chart, "--namespace", "registry", "--kube-version", kubeVersion}, values...)...)
}

func kubeconform(t *testing.T, bin string, manifests []byte) ([]byte, error) {
	return runErr(manifests, bin, "-strict", "-summary", "-schema-location", schemaLoc, "-")
}

// TestHelmChart lints the chart and checks what it renders with kubeconform -strict
// against the checked-in Kubernetes 1.27 and Prometheus Operator schemas, for the
// default values and the HA values; then reads the rendered objects for what the chart
// promises: the config and policy goldproxy itself accepts, probes, the hardened
// securityContext, egress only to the upstreams' ports.
func TestHelmChart(t *testing.T) {
	helm := requireTool(t, "helm")
	kc := requireTool(t, "kubeconform")
	for name, values := range valueFiles {
		t.Run(name, func(t *testing.T) {
			out := run(t, nil, helm, append([]string{"lint", "--strict", chart, "--kube-version", kubeVersion}, values...)...)
			if !bytes.Contains(out, []byte("0 chart(s) failed")) {
				t.Fatalf("helm lint:\n%s", out)
			}
			manifests := render(t, helm, values)
			res, err := kubeconform(t, kc, manifests)
			if err != nil || !bytes.Contains(res, []byte("Invalid: 0, Errors: 0, Skipped: 0")) {
				t.Fatalf("kubeconform: %v\n%s", err, res)
			}
			t.Logf("kubeconform: %s", bytes.TrimSpace(res))
			objs := map[string]map[string]any{}
			for _, d := range docs(t, manifests) {
				objs[d["kind"].(string)] = d
			}
			kinds := keys(objs)
			want := []string{"ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget", "Service", "ServiceAccount"}
			if name == "ha" {
				// The replicas share S3 and PostgreSQL, not a volume.
				want = slices.DeleteFunc(want, func(k string) bool { return k == "PersistentVolumeClaim" })
				want = append(want, "PrometheusRule", "ServiceMonitor")
				sort.Strings(want)
			}
			if !slices.Equal(kinds, want) {
				t.Fatalf("kinds %v, want %v", kinds, want)
			}
			checkConfig(t, objs["ConfigMap"], name)
			checkDeployment(t, objs["Deployment"], name)
			checkNetworkPolicy(t, objs["NetworkPolicy"], name)
			if name == "ha" {
				rules := fmt.Sprint(dig(objs["PrometheusRule"], "spec", "groups"))
				for _, alert := range []string{"GoldproxyScanFailures", "GoldproxyNoVulnerabilityDB", "GoldproxyVulnerabilityDBStale"} {
					if !strings.Contains(rules, alert) {
						t.Errorf("PrometheusRule lacks %s", alert)
					}
				}
				if dig(objs["PodDisruptionBudget"], "spec", "minAvailable") != 2 {
					t.Errorf("HA PDB: %v", dig(objs["PodDisruptionBudget"], "spec"))
				}
			}
		})
	}
	// The schemas are strict: an unknown field and a wrong type are errors.
	bad := bytes.Replace(render(t, helm, nil), []byte("automountServiceAccountToken: false\n      securityContext:"), []byte("automountServiceAccountToken: false\n      bogusField: 1\n      securityContext:"), 1)
	if out, err := kubeconform(t, kc, bad); err == nil || !bytes.Contains(out, []byte("bogusField")) {
		t.Fatalf("kubeconform accepted an unknown field: %v\n%s", err, out)
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkConfig parses the ConfigMap's goldproxy.yaml and policy.yaml as goldproxy does.
func checkConfig(t *testing.T, cm map[string]any, name string) {
	t.Helper()
	cfgText, _ := dig(cm, "data", "goldproxy.yaml").(string)
	pol, _ := dig(cm, "data", "policy.yaml").(string)
	// The files the pod mounts, under a temp root: the ConfigMap's policy, and Secrets
	// with contents of the right shape.
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		"etc/goldproxy/policy.yaml":             pol,
		"run/secrets/htpasswd/htpasswd":         "alice:" + string(hash) + "\n",
		"run/secrets/token-key/token-key":       strings.Repeat("k", 40),
		"run/secrets/upstreams/dockerhub/token": "dckr_pat_test",
		"run/secrets/tls/tls.crt":               "certificate",
		"run/secrets/tls/tls.key":               "key",
		"run/secrets/storage/s3/access-key":     "AKIATEST",
		"run/secrets/storage/s3/secret-key":     "secret",
		"run/secrets/storage/postgres/dsn":      "postgres://goldproxy@pg:5432/goldproxy",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	local := strings.NewReplacer(" /etc/goldproxy/", " "+dir+"/etc/goldproxy/", " /run/secrets/", " "+dir+"/run/secrets/").Replace(cfgText)
	cfg, err := config.Parse([]byte(local), dir)
	if err != nil {
		t.Fatalf("goldproxy rejects the chart's config: %v\n%s", err, cfgText)
	}
	if cfg.DataDir != "/data" || cfg.Policy != dir+"/etc/goldproxy/policy.yaml" || cfg.Listen != ":5000" {
		t.Errorf("config: data_dir %q policy %q listen %q", cfg.DataDir, cfg.Policy, cfg.Listen)
	}
	if name == "ha" && (cfg.Storage.Driver != "s3" || cfg.Storage.Metadata.Driver != "postgres" || cfg.Auth.TokenKeyFile == "") {
		t.Errorf("HA config: blobs on %q, metadata on %q, token key file %q; want s3, postgres and a shared key",
			cfg.Storage.Driver, cfg.Storage.Metadata.Driver, cfg.Auth.TokenKeyFile)
	}
	set, err := policy.Parse([]byte(pol))
	if err != nil {
		t.Fatalf("goldproxy rejects the chart's policy: %v", err)
	}
	if p, _ := set.Choose("cgr.dev/chainguard/static"); p == nil || p.Name != "hardened" {
		t.Errorf("the chart's policy does not judge cgr.dev/chainguard by hardened: %+v", p)
	}
}

func checkDeployment(t *testing.T, d map[string]any, name string) {
	t.Helper()
	c := dig(d, "spec", "template", "spec", "containers", 0)
	for path, want := range map[string]any{
		"livenessProbe.httpGet.path":               "/healthz",
		"readinessProbe.httpGet.path":              "/readyz",
		"securityContext.runAsNonRoot":             true,
		"securityContext.readOnlyRootFilesystem":   true,
		"securityContext.allowPrivilegeEscalation": false,
		"securityContext.capabilities.drop":        []any{"ALL"},
		"securityContext.seccompProfile.type":      "RuntimeDefault",
	} {
		var p []any
		for _, s := range strings.Split(path, ".") {
			p = append(p, s)
		}
		if got := dig(c, p...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s container %s = %v, want %v", name, path, got, want)
		}
	}
	ps := dig(d, "spec", "template", "spec", "securityContext")
	if dig(ps, "runAsUser") != 65532 || dig(ps, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("pod securityContext: %v", ps)
	}
	vols := fmt.Sprint(dig(d, "spec", "template", "spec", "volumes"))
	if name != "ha" && !strings.Contains(vols, "persistentVolumeClaim") {
		t.Errorf("no PVC for the data dir: %s", vols)
	}
	if name == "ha" {
		if strings.Contains(vols, "persistentVolumeClaim") || dig(d, "spec", "strategy", "type") == "Recreate" {
			t.Errorf("HA: the replicas share a volume or are recreated one at a time: %s %v", vols, dig(d, "spec", "strategy"))
		}
		for _, s := range []string{"goldproxy-htpasswd", "goldproxy-dockerhub", "goldproxy-token-key", "goldproxy-s3", "goldproxy-postgres"} {
			if !strings.Contains(vols, s) {
				t.Errorf("HA: Secret %s is not mounted: %s", s, vols)
			}
		}
	}
}

func checkNetworkPolicy(t *testing.T, np map[string]any, name string) {
	t.Helper()
	egress, _ := dig(np, "spec", "egress").([]any)
	var ports []string
	for _, rule := range egress {
		for _, p := range dig(rule, "ports").([]any) {
			ports = append(ports, fmt.Sprint(dig(p, "port"), "/", dig(p, "protocol")))
		}
	}
	want := []string{"53/UDP", "53/TCP", "443/TCP"}
	if name == "ha" {
		want = append(want, "8443/TCP", "5432/TCP") // harbor.internal:8443, PostgreSQL
	}
	if !slices.Equal(ports, want) {
		t.Errorf("egress ports %v, want %v (DNS and the upstreams' ports only)", ports, want)
	}
}

// TestChartFilesMatchShipped keeps the chart's copies (a chart cannot read files
// outside its directory) equal to the shipped policy and alert rules.
func TestChartFilesMatchShipped(t *testing.T) {
	for copyPath, shipped := range map[string]string{
		filepath.Join(chart, "files", "policy.yaml"):          filepath.Join(root, "configs", "policy.yaml"),
		filepath.Join(chart, "files", "goldproxy-alerts.yml"): filepath.Join(root, "deploy", "prometheus", "goldproxy-alerts.yml"),
	} {
		a, err := os.ReadFile(copyPath)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(shipped)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: cp %[2]s %[1]s", copyPath, shipped)
		}
	}
}

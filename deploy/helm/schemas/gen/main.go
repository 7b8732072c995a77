// Command gen writes the Kubernetes JSON schemas kubeconform checks the Helm chart
// against (deploy/helm/schemas), so that no test downloads them: kubeconform's
// "standalone-strict" form (every $ref inlined, additionalProperties false on every
// object with fixed properties), for only the kinds the chart renders.
//
// The inputs come from Go modules in goldproxy's go.sum, served by the module proxy:
//   - Kubernetes v1.27.0's OpenAPI v2 spec, which k8s.io/kube-openapi vendors as
//     pkg/schemaconv/testdata/swagger.json;
//   - the ServiceMonitor and PrometheusRule CRDs of the Prometheus Operator
//     (github.com/prometheus-operator/prometheus-operator, example/prometheus-operator-crd).
//
// Regenerate with:
//
//	go mod download k8s.io/kube-openapi github.com/prometheus-operator/prometheus-operator@v0.85.0
//	GOEXPERIMENT=jsonv2 go run ./deploy/helm/schemas/gen \
//	  -swagger $(go env GOMODCACHE)/k8s.io/kube-openapi@<version>/pkg/schemaconv/testdata/swagger.json \
//	  -crds $(go env GOMODCACHE)/github.com/prometheus-operator/prometheus-operator@v0.85.0/example/prometheus-operator-crd \
//	  -out deploy/helm/schemas
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// kinds are the definitions the chart renders, by the kubeconform file name they get
// ({{ .ResourceKind }}{{ .KindSuffix }}.json).
var kinds = map[string]string{
	"configmap-v1":                  "io.k8s.api.core.v1.ConfigMap",
	"service-v1":                    "io.k8s.api.core.v1.Service",
	"serviceaccount-v1":             "io.k8s.api.core.v1.ServiceAccount",
	"persistentvolumeclaim-v1":      "io.k8s.api.core.v1.PersistentVolumeClaim",
	"deployment-apps-v1":            "io.k8s.api.apps.v1.Deployment",
	"networkpolicy-networking-v1":   "io.k8s.api.networking.v1.NetworkPolicy",
	"poddisruptionbudget-policy-v1": "io.k8s.api.policy.v1.PodDisruptionBudget",
}

// crds are the Prometheus Operator CRDs, by file name.
var crds = map[string]string{
	"servicemonitor-monitoring-v1": "monitoring.coreos.com_servicemonitors.yaml",
	"prometheusrule-monitoring-v1": "monitoring.coreos.com_prometheusrules.yaml",
}

func main() {
	swagger := flag.String("swagger", "", "Kubernetes OpenAPI v2 spec (swagger.json)")
	crdDir := flag.String("crds", "", "directory with the Prometheus Operator CRD YAML files")
	out := flag.String("out", "deploy/helm/schemas", "output directory")
	flag.Parse()
	b, err := os.ReadFile(*swagger)
	if err != nil {
		log.Fatal(err)
	}
	var spec struct {
		Definitions map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		log.Fatal(err)
	}
	for file, def := range kinds {
		d, ok := spec.Definitions[def]
		if !ok {
			log.Printf("skipping %s: %s not in %s", file, def, *swagger)
			continue
		}
		write(*out, file, strict(inline(d, spec.Definitions, 0)))
	}
	for file, name := range crds {
		b, err := os.ReadFile(filepath.Join(*crdDir, name))
		if err != nil {
			log.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Versions []struct {
					Name   string `yaml:"name"`
					Schema struct {
						OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
					} `yaml:"schema"`
				} `yaml:"versions"`
			} `yaml:"spec"`
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			log.Fatal(err)
		}
		for _, v := range crd.Spec.Versions {
			if strings.HasSuffix(file, "-"+v.Name) {
				write(*out, file, strict(v.Schema.OpenAPIV3Schema))
			}
		}
	}
}

func write(dir, file string, schema any) {
	b, err := json.Marshal(schema)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file+".json"), append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println(file)
}

// special are the definitions whose OpenAPI form is looser than what they accept.
var special = map[string]any{
	"io.k8s.apimachinery.pkg.util.intstr.IntOrString": map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}},
	"io.k8s.apimachinery.pkg.api.resource.Quantity":   map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}},
}

// inline replaces every {"$ref": "#/definitions/X"} with X's schema.
func inline(v any, defs map[string]any, depth int) any {
	if depth > 60 {
		return map[string]any{} // recursive types (JSONSchemaProps) stop here
	}
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			if s, ok := special[name]; ok {
				return s
			}
			return inline(defs[name], defs, depth+1)
		}
		out := map[string]any{}
		for k, e := range x {
			if k == "format" && e == "int-or-string" {
				continue
			}
			out[k] = inline(e, defs, depth)
		}
		if x["format"] == "int-or-string" {
			return special["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = inline(e, defs, depth)
		}
		return out
	}
	return v
}

// strict sets additionalProperties false on every object schema with fixed properties
// that does not already say otherwise, as kubeconform's -strict schemas do.
func strict(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = strict(e)
		}
		_, props := x["properties"]
		_, addl := x["additionalProperties"]
		_, preserve := x["x-kubernetes-preserve-unknown-fields"]
		if props && !addl && !preserve {
			x["additionalProperties"] = false
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = strict(e)
		}
	}
	return v
}

package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// root is the repository root, from this package's directory.
var root = filepath.Join("..", "..")

// requireTool finds a command, skipping when absent unless GOLDPROXY_E2E=1 (CI).
func requireTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if os.Getenv("GOLDPROXY_E2E") == "1" {
		t.Fatalf("GOLDPROXY_E2E=1 but %s is not installed (.ci/setup installs it)", tool)
	}
	t.Skipf("needs %s; set GOLDPROXY_E2E=1 to require it", tool)
	return ""
}

// requireFile is requireTool for a file .ci/setup provides.
func requireFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("GOLDPROXY_E2E") == "1" {
		t.Fatalf("GOLDPROXY_E2E=1 but %s is missing (.ci/setup installs it)", path)
	}
	t.Skipf("needs %s (.ci/setup); set GOLDPROXY_E2E=1 to require it", path)
}

// run runs a command and returns its combined output, failing the test on an error.
func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := runErr(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

func runErr(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// docs splits a multi-document YAML stream into maps.
func docs(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if m != nil {
			out = append(out, m)
		}
	}
}

// dig walks maps and lists: dig(m, "spec", "template", 0, "name").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

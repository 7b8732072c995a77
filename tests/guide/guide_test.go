package guide

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// built holds the goldproxy, scanner and baseline binaries, built once for all tests
// (each links Trivy: minutes on a small machine).
var built struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaries builds ./cmd/goldproxy, ./cmd/scanner and ./cmd/baseline as the guide does
// (go build) and returns the directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "goldproxy-guide-")
		if built.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", built.dir+string(os.PathSeparator), "./cmd/goldproxy", "./cmd/scanner", "./cmd/baseline")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

// workdir is a directory to run a command in as a developer would: the vulnerability DB
// is where the proxy leaves it (./data/trivy-db, the embedded config's data_dir), HOME
// is private and DOCKER_CONFIG empty unless the test sets one.
func workdir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "data", "trivy-db")
	scannertest.BuildDB(t, filepath.Join(root, "test"), time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	if err := os.WriteFile(filepath.Join(root, "current"), []byte("test -\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs a built binary in dir with only PATH, HOME, DOCKER_CONFIG and env set and
// returns its combined output and exit status.
func run(t *testing.T, dir string, env []string, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), bin), args...)
	cmd.Dir = dir
	tmp := t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DOCKER_CONFIG=" + t.TempDir(), "TMPDIR=" + tmp}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	// The binaries leave no temporary directories behind (Trivy makes one per process).
	if left, _ := filepath.Glob(filepath.Join(tmp, "trivy-*")); len(left) > 0 {
		t.Errorf("%s left %v behind", bin, left)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("%s: %v", bin, err)
	return "", -1
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBaselineFromEnvOnly runs `go run ./cmd/baseline` as the guide does — the three
// BASELINE_* variables and nothing else — and `goldproxy baseline` the same way: the
// comparisons are byte for byte the same.
func TestBaselineFromEnvOnly(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "library/debian:12", scannertest.DebianImage(t, false))
	up.Push(t, "library/alpine:3.19", scannertest.AlpineImage(t, true))
	up.Push(t, "distroless/base-debian12:nonroot", scannertest.DebianImage(t, true))
	up.Push(t, "chainguard/static:latest", scannertest.AlpineImage(t, false))
	lists := t.TempDir()
	standard := writeFile(t, filepath.Join(lists, "images-standard.txt"), up.Host+"/library/debian:12\n"+up.Host+"/library/alpine:3.19\n")
	hardened := writeFile(t, filepath.Join(lists, "images-hardened-myteam.txt"), "# team list\n"+up.Host+"/distroless/base-debian12:nonroot\n"+up.Host+"/chainguard/static:latest\n"+up.Host+"/chainguard/python:latest  # cut by the limit\n")
	env := []string{"BASELINE_IMAGES=" + standard, "BASELINE_IMAGES_HARDENED=" + hardened, "BASELINE_HARDENED_LIMIT=2"}

	results := map[string]map[string][]byte{}
	for _, c := range []struct {
		name string
		bin  string
		args []string
	}{{"cmd/baseline", "baseline", nil}, {"goldproxy baseline", "goldproxy", []string{"baseline"}}} {
		dir := workdir(t)
		out, code := run(t, dir, env, c.bin, c.args...)
		if code != 0 || !strings.Contains(out, "baseline: 4 images (0 failed) → baseline") {
			t.Fatalf("%s: exit %d\n%s", c.name, code, out)
		}
		results[c.name] = map[string][]byte{}
		for _, f := range []string{"baseline.json", "baseline.md", "baseline.html"} {
			b, err := os.ReadFile(filepath.Join(dir, "baseline", f))
			if err != nil {
				t.Fatalf("%s wrote no %s: %v", c.name, f, err)
			}
			results[c.name][f] = b
		}
	}
	for f, want := range results["goldproxy baseline"] {
		if got := results["cmd/baseline"][f]; !bytes.Equal(got, want) {
			t.Errorf("%s of cmd/baseline differs from goldproxy baseline's:\n%s\n---\n%s", f, got, want)
		}
	}
	md := string(results["cmd/baseline"]["baseline.md"])
	for _, want := range []string{"/library/alpine:3.19 | standard | alpine |", "/distroless/base-debian12:nonroot | hardened | distroless |", "/chainguard/static:latest | hardened | chainguard |"} {
		if !strings.Contains(md, want) {
			t.Errorf("baseline.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "chainguard/python") {
		t.Errorf("BASELINE_HARDENED_LIMIT=2 did not cut the third hardened image:\n%s", md)
	}
}

// TestScannerBinary runs `go build ./cmd/scanner` and the guide's
// `scanner scan --image REF --output-dir ./reports`, with a public and a private
// (docker login) registry.
func TestScannerBinary(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "myteam/api:v1", scannertest.DebianImage(t, false))
	private := proxytest.NewUpstream(t)
	private.Push(t, "myteam/api:v1", scannertest.AlpineImage(t, false))
	private.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == "ci" && p == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="harbor"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		return true
	})
	loggedIn := t.TempDir()
	writeFile(t, filepath.Join(loggedIn, "config.json"), `{"auths":{"`+private.Host+`":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))+`"}}}`)

	for _, tc := range []struct {
		name     string
		ref      string
		env      []string
		code     int
		wantOut  string
		wantJSON string // in report.json; "" when no report is expected
	}{
		{"public registry, vulnerable image", up.Host + "/myteam/api:v1", nil, 1, "HIGH: 2 (2 fixable)", `"VulnerabilityID": "CVE-`},
		{"private registry with docker login", private.Host + "/myteam/api:v1", []string{"DOCKER_CONFIG=" + loggedIn}, 0, "ALLOWED", `"ArtifactName": "` + private.Host},
		{"private registry without credentials", private.Host + "/myteam/api:v1", nil, 2, "UNAUTHORIZED", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workdir(t)
			out, code := run(t, dir, tc.env, "scanner", "scan", "--image", tc.ref, "--output-dir", "./reports")
			if code != tc.code || !strings.Contains(out, tc.wantOut) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.wantOut, out)
			}
			if tc.wantJSON == "" {
				return
			}
			js, err := os.ReadFile(filepath.Join(dir, "reports", "report.json"))
			if err != nil || !strings.Contains(string(js), tc.wantJSON) {
				t.Fatalf("report.json (%v) lacks %q", err, tc.wantJSON)
			}
			if md, err := os.ReadFile(filepath.Join(dir, "reports", "report.md")); err != nil || !strings.Contains(string(md), "myteam/api") {
				t.Fatalf("report.md: %v\n%s", err, md)
			}
		})
	}
}

package deploy

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// requireRootTools is requireTool for several tools plus root (containerd runs as root).
func requireRootTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		requireTool(t, tool)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("GOLDPROXY_E2E") == "1" {
			t.Fatal("GOLDPROXY_E2E=1 but not running as root (containerd needs it)")
		}
		t.Skip("needs root for containerd; set GOLDPROXY_E2E=1 to require it")
	}
}

// ctrd is a containerd daemon with its root, state and socket in a temp dir.
type ctrd struct{ sock string }

func startContainerd(t *testing.T) *ctrd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &ctrd{sock: filepath.Join(dir, "c.sock")}
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "containerd", "--config", filepath.Join(dir, "config.toml"))
	logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait(); logf.Close() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := c.ctr("version")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not start: %v\n%s\n%s", err, out, log)
		}
	}
}

func (c *ctrd) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.sock, "--namespace", "goldproxy-nodes"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestContainerdNodeFailsClosed installs deploy/nodes/containerd's hosts.toml files with
// install.sh and pulls with a real containerd: through goldproxy (with ?ns= naming the
// upstream); then, goldproxy stopped while the upstream is up, a pull of another image
// fails instead of going to the upstream. An upstream with no directory of its own goes
// to goldproxy through _default.
func TestContainerdNodeFailsClosed(t *testing.T) {
	requireRootTools(t, "containerd", "ctr", "sh")
	up := proxytest.NewUpstream(t)
	other := proxytest.NewUpstream(t)
	for _, tag := range []string{"1", "2"} {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		up.Push(t, "team/app:"+tag, img)
		other.Push(t, "team/app:"+tag, img)
	}
	p := proxytest.Start(t, proxytest.Config(t, up, other))
	certs := t.TempDir()
	install := exec.Command("sh", filepath.Join(nodesDir, "containerd", "install.sh"), up.Host)
	install.Env = append(os.Environ(), "GOLDPROXY=http://"+p.Host, "CERTS_D="+certs)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	c := startContainerd(t)
	pull := func(ref string) (string, error) {
		return c.ctr("images", "pull", "--hosts-dir", certs, "--plain-http", "--snapshotter", "native", ref)
	}
	if out, err := pull(up.Host + "/team/app:1"); err != nil {
		t.Fatalf("pull through goldproxy: %v\n%s", err, out)
	}
	if reqs := p.Requests("/v2/team/app/manifests/1?ns=" + url.QueryEscape(up.Host)); len(reqs) == 0 {
		t.Fatalf("containerd did not ask goldproxy with ns=%s: %v", up.Host, p.Requests("/v2/"))
	}
	// _default: a registry with no directory goes to goldproxy too.
	if out, err := pull(other.Host + "/team/app:1"); err != nil {
		t.Fatalf("pull of %s through _default: %v\n%s", other.Host, err, out)
	}
	if reqs := p.Requests("ns=" + url.QueryEscape(other.Host)); len(reqs) == 0 {
		t.Fatal("the _default hosts.toml did not send the pull to goldproxy")
	}
	// goldproxy down, upstreams up: nothing to fall back to.
	p.Close()
	up.ResetCounts()
	other.ResetCounts()
	for _, ref := range []string{up.Host + "/team/app:2", other.Host + "/team/app:2"} {
		if out, err := pull(ref); err == nil {
			t.Fatalf("pull of %s with goldproxy down succeeded (not fail closed):\n%s", ref, out)
		}
	}
	if n := up.Total() + other.Total(); n != 0 {
		t.Fatalf("containerd went to the upstreams directly (%d requests)", n)
	}
	// The check can fail: the fallback shape (the upstream as server, as mirror guides
	// write it) pulls straight from the upstream while goldproxy is down.
	open := t.TempDir()
	if err := os.MkdirAll(filepath.Join(open, up.Host), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", up.Host, p.Host)
	if err := os.WriteFile(filepath.Join(open, up.Host, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.ctr("images", "pull", "--hosts-dir", open, "--plain-http", "--snapshotter", "native", up.Host+"/team/app:2"); err != nil || up.Total() == 0 {
		t.Fatalf("a fallback hosts.toml did not go around goldproxy (%d upstream requests): %v\n%s", up.Total(), err, out)
	}
}

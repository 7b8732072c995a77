package deploy

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

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
	c := proxytest.StartContainerd(t)
	pull := func(ref string) (string, error) {
		return c.Ctr("images", "pull", "--hosts-dir", certs, "--plain-http", "--snapshotter", "native", ref)
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
	if out, err := c.Ctr("images", "pull", "--hosts-dir", open, "--plain-http", "--snapshotter", "native", up.Host+"/team/app:2"); err != nil || up.Total() == 0 {
		t.Fatalf("a fallback hosts.toml did not go around goldproxy (%d upstream requests): %v\n%s", up.Total(), err, out)
	}
}

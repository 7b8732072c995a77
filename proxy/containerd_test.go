package proxy_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// requireE2E skips a test that needs a system tool unless GOLDPROXY_E2E=1 (set by CI),
// in which case a missing tool is a failure, not a skip.
func requireE2E(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("GOLDPROXY_E2E") == "1" {
		t.Fatalf("GOLDPROXY_E2E=1 but this machine lacks %v (.ci/run installs them)", missing)
	}
	t.Skipf("needs %v; set GOLDPROXY_E2E=1 to require it", missing)
}

// hostsDir writes a containerd hosts.toml that sends pulls of upstreamHost to mirror.
func hostsDir(t *testing.T, upstreamHost, mirror string) string {
	return hostsDirServer(t, upstreamHost, mirror, upstreamHost)
}

// hostsDirServer is hostsDir with the fallback server containerd tries when the mirror
// fails (a closed port makes mirror failures visible).
func hostsDirServer(t *testing.T, upstreamHost, mirror, server string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, upstreamHost), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server, mirror)
	if err := os.WriteFile(filepath.Join(dir, upstreamHost, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestContainerdPullsThroughMirror(t *testing.T) {
	requireE2E(t, "containerd", "ctr")
	up := proxytest.NewUpstream(t)
	img := randomImage(t, 2)
	dgst := up.Push(t, "test/app:1", img)
	p := proxytest.Start(t, proxytest.Config(t, up))
	c := proxytest.StartContainerd(t)

	out, err := c.Ctr("images", "pull", "--hosts-dir", hostsDir(t, up.Host, p.Host), "--plain-http",
		"--snapshotter", "native", up.Host+"/test/app:1")
	if err != nil {
		t.Fatalf("ctr pull: %v\n%s", err, out)
	}
	ns := "ns=" + url.QueryEscape(up.Host)
	if reqs := p.Requests("GET /v2/test/app/manifests/"); len(reqs) == 0 || !strings.Contains(reqs[0], ns) {
		t.Fatalf("containerd did not pull the manifest through the mirror with %s: %v", ns, reqs)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		ld, _ := l.Digest()
		if reqs := p.Requests("GET /v2/test/app/blobs/" + ld.String()); len(reqs) != 1 {
			t.Errorf("layer %s: proxy requests %v", ld, reqs)
		}
	}
	if _, ok := p.Store.HasManifest(up.Name+"/test/app", digest.Digest(dgst.String())); !ok {
		t.Error("manifest not in the proxy's store")
	}
	list, _ := c.Ctr("images", "ls", "-q")
	if !strings.Contains(list, up.Host+"/test/app:1") {
		t.Fatalf("image not in containerd: %s", list)
	}
}

func TestContainerdPullsWithLogin(t *testing.T) {
	requireE2E(t, "containerd", "ctr")
	up, p := authSetup(t, nil)
	c := proxytest.StartContainerd(t)
	// No fallback: what containerd gets, it gets through the proxy.
	hosts := hostsDirServer(t, up.Host, p.Host, "127.0.0.1:1")
	ref := up.Host + "/team/app:1"
	if out, err := c.Ctr("images", "pull", "--hosts-dir", hosts, "--plain-http", "--snapshotter", "native", ref); err == nil {
		t.Fatalf("pull without credentials succeeded:\n%s", out)
	}
	out, err := c.Ctr("images", "pull", "--hosts-dir", hosts, "--plain-http", "--snapshotter", "native", "--user", "bob:bob-pw", ref)
	if err != nil {
		t.Fatalf("ctr pull --user: %v\n%s", err, out)
	}
	if len(p.Requests("GET /token")) == 0 {
		t.Fatal("containerd did not use the token flow")
	}
	// bob may not pull other/*: DENIED even though the image is on the allowlist.
	if out, err := c.Ctr("images", "pull", "--hosts-dir", hosts, "--plain-http", "--snapshotter", "native", "--user", "bob:bob-pw", up.Host+"/other/app:1"); err == nil {
		t.Fatalf("bob pulled outside his scopes:\n%s", out)
	}
}

func TestSkopeoCopiesWithCredentials(t *testing.T) {
	requireE2E(t, "skopeo")
	up, p := authSetup(t, nil)
	dest := t.TempDir()
	run := func(creds string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args := []string{"copy", "--src-tls-verify=false", "docker://" + p.Host + "/" + up.Name + "/team/app:1", "oci:" + filepath.Join(dest, "app") + ":1"}
		if creds != "" {
			args = append([]string{"copy", "--src-creds", creds}, args[1:]...)
		}
		out, err := exec.CommandContext(ctx, "skopeo", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("alice:wrong"); err == nil {
		t.Fatalf("skopeo with a wrong password succeeded:\n%s", out)
	}
	if out, err := run("alice:alice-pw"); err != nil {
		t.Fatalf("skopeo copy --src-creds: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dest, "app", "index.json")); err != nil {
		t.Fatalf("no OCI layout written: %v", err)
	}
}

// containerd resolves with HEAD, whose answer has no body: the reason of a denial
// reaches `ctr images pull` through the status line.
func TestContainerdShowsWhyItWasDenied(t *testing.T) {
	requireE2E(t, "containerd", "ctr")
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	img := vulnImage(t, sc)
	up.Push(t, "test/vuln:1", img)
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()))
	c := proxytest.StartContainerd(t)
	// The configs goldproxy node-config writes fail closed: server and [host] are both
	// goldproxy. (With the real registry as server, containerd would fetch the denied
	// image from it after goldproxy's 403 — the upstream here is reachable, as the real
	// one would be.)
	out, err := c.Ctr("images", "pull", "--hosts-dir", nodeHostsDir(t, p), "--plain-http",
		"--snapshotter", "native", up.Host+"/test/vuln:1")
	if err == nil {
		t.Fatalf("a denied image was pulled:\n%s", out)
	}
	if list, _ := c.Ctr("images", "ls", "-q"); strings.Contains(list, "test/vuln") {
		t.Fatalf("the denied image is in containerd: %s", list)
	}
	t.Logf("ctr:\n%s", out)
	for _, want := range []string{"403", "CVE-2023-5363", "libcrypto3", "/ui/images/"} {
		if !strings.Contains(out, want) {
			t.Errorf("ctr's output lacks %q:\n%s", want, out)
		}
	}
}

// kubelet pulls through CRI, which also resolves with HEAD: `crictl pull` shows the reason.
func TestCRIPullShowsWhyItWasDenied(t *testing.T) {
	requireE2E(t, "containerd", "crictl")
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	up.Push(t, "test/vuln:1", vulnImage(t, sc))
	up.Push(t, "test/ok:1", randomImage(t, 1))
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()))
	c := proxytest.StartContainerdCRI(t, nodeHostsDir(t, p))
	crictl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "crictl", append([]string{"--runtime-endpoint", "unix://" + c.Sock, "--image-endpoint", "unix://" + c.Sock, "--timeout", "60s"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := crictl("pull", up.Host+"/test/ok:1"); err != nil {
		t.Fatalf("crictl pull of an allowed image: %v\n%s", err, out)
	}
	out, err := crictl("pull", up.Host+"/test/vuln:1")
	if err == nil {
		t.Fatalf("crictl pulled a denied image:\n%s", out)
	}
	t.Logf("crictl:\n%s", out)
	for _, want := range []string{"403", "CVE-2023-5363", "libcrypto3"} {
		if !strings.Contains(out, want) {
			t.Errorf("crictl's output lacks %q:\n%s", want, out)
		}
	}
}

// nodeHostsDir writes the containerd hosts.toml files `goldproxy node-config` makes for
// p's config and returns their certs.d directory.
func nodeHostsDir(t *testing.T, p *proxytest.Proxy) string {
	t.Helper()
	files, err := p.Config.NodeFiles(p.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, body := range files {
		full := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "containerd", "certs.d")
}

// podman with the registries.conf node-config writes refuses a denied image, and says
// why, while the registry it would otherwise fall back to is reachable.
func TestPodmanFailsClosed(t *testing.T) {
	requireE2E(t, "podman")
	up := proxytest.NewUpstream(t)
	sc := &fakeScanner{}
	up.Push(t, "test/vuln:1", vulnImage(t, sc))
	up.Push(t, "test/ok:1", randomImage(t, 1))
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithScanner(sc, policy.DefaultSet()))
	conf := filepath.Join(filepath.Dir(nodeHostsDir(t, p)), "..", "containers", "registries.conf")
	dir := t.TempDir()
	podman := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "podman", append([]string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}, args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_REGISTRIES_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := podman("pull", up.Host+"/test/ok:1"); err != nil {
		t.Fatalf("podman pull of an allowed image: %v\n%s", err, out)
	}
	out, err := podman("pull", up.Host+"/test/vuln:1")
	if err == nil {
		t.Fatalf("podman pulled a denied image:\n%s", out)
	}
	t.Logf("podman:\n%s", out)
	if !strings.Contains(out, "CVE-2023-5363") {
		t.Errorf("podman's output lacks the CVE:\n%s", out)
	}
	if list, _ := podman("images", "--format", "{{.Repository}}"); strings.Contains(list, "test/vuln") {
		t.Fatalf("the denied image is in podman's store: %s", list)
	}
}

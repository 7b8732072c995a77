package proxytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Containerd is a containerd daemon with its root, state and socket in a temp dir,
// stopped when the test ends.
type Containerd struct {
	// Sock is its gRPC socket (also CRI's, when the CRI plugin is on).
	Sock string
	ns   string
}

// StartContainerd starts containerd without its CRI plugin; StartContainerdCRI with it.
func StartContainerd(t testing.TB) *Containerd { return startContainerd(t, "") }

// StartContainerdCRI starts containerd with its CRI plugin (what kubelet and crictl talk
// to), resolving registries through the hosts.toml files under hostsDir.
func StartContainerdCRI(t testing.TB, hostsDir string) *Containerd {
	return startContainerd(t, fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, hostsDir))
}

func startContainerd(t testing.TB, cri string) *Containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &Containerd{Sock: filepath.Join(dir, "c.sock"), ns: "goldproxy-test"}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if cri != "" {
		disabled = ""
	}
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\n%s\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n%s",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.Sock, c.Sock+".ttrpc", cri)
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
		out, err := c.Ctr("version")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not start: %v\n%s\n%s", err, out, log)
		}
	}
}

// Ctr runs ctr against the daemon, in the test namespace.
func (c *Containerd) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Sock, "--namespace", c.ns}, args...)...).CombinedOutput()
	return string(out), err
}

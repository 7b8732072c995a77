package guide

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
	"github.com/goldproxy/goldproxy/storage/s3test"
)

// TestSIGKILLReplicaMidScan runs two replicas of the real binary on one S3 server and
// PostgreSQL database, kills replica A with SIGKILL while it holds the claim on a new
// image's scan (its ingest is in progress), and checks that the image's next pull on
// replica B completes the scan: the vulnerable image is denied naming its CVE, the clean
// one served. A restarted A then serves both verdicts from the shared store.
func TestSIGKILLReplicaMidScan(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(binaries(t), "goldproxy")
	srv, pg := s3test.Start(t), pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/vuln:1", scannertest.AlpineImage(t, true))
	up.Push(t, "team/clean:1", scannertest.AlpineImage(t, false))
	// Blobs arrive slowly: A is still ingesting, under its claim, when it is killed.
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			time.Sleep(time.Second)
		}
		return false
	})

	dir := t.TempDir()
	dbDir := filepath.Join(dir, "db")
	scannertest.BuildDB(t, dbDir, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	secret := func(name, v string) string { return writeFile(t, filepath.Join(dir, name), v) }
	ak, sk, pgDSN := secret("s3-access", srv.AccessKey), secret("s3-secret", srv.SecretKey), secret("pg-dsn", dsn)
	bucket := srv.NewBucket(t)
	type replica struct {
		base string
		cfg  string
		cmd  *exec.Cmd
		out  *syncBuffer
	}
	newReplica := func(name string) *replica {
		port := freePort(t)
		cfg := writeFile(t, filepath.Join(dir, name+".yaml"), fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
db: {dir: %s}
log: {format: json, level: info}
scan: {lease: 1s}
storage:
  driver: s3
  s3: {bucket: %s, endpoint: %s, force_path_style: true, access_key_file: %s, secret_key_file: %s}
  metadata:
    driver: postgres
    postgres: {dsn_file: %s}
upstreams:
  - name: %q
    url: %s
allow:
  repositories: ["**"]
`, port, filepath.Join(dir, name), dbDir, bucket, srv.Endpoint, ak, sk, pgDSN, up.Name, up.URL))
		return &replica{base: fmt.Sprintf("http://127.0.0.1:%d", port), cfg: cfg}
	}
	client := &http.Client{Timeout: 60 * time.Second}
	start := func(r *replica) {
		r.cmd = exec.Command(bin, "serve", "--config", r.cfg)
		r.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + t.TempDir()}
		r.out = &syncBuffer{}
		r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if resp, err := client.Get(r.base + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			if time.Now().After(deadline) {
				r.cmd.Process.Kill()
				r.cmd.Wait()
				t.Fatalf("replica did not become ready:\n%s", r.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop := func(r *replica) {
		if r.cmd != nil && r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			_ = r.cmd.Wait()
		}
	}
	pull := func(r *replica, repo string) (int, string) {
		resp, err := client.Get(r.base + "/v2/" + up.Name + "/" + repo + "/manifests/1")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	a, b := newReplica("a"), newReplica("b")
	start(a)
	defer stop(a)
	start(b)
	defer stop(b)

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	claims := func() int {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM claims WHERE expires > now()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, repo := range []string{"team/vuln", "team/clean"} {
		go pull(a, repo) // fails: A dies under it
	}
	deadline := time.Now().Add(30 * time.Second)
	for claims() < 2 || up.Total() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("replica A never claimed both scans:\n%s", a.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	if code, body := pull(b, "team/vuln"); code != http.StatusForbidden || !strings.Contains(body, "DENIED") || !strings.Contains(body, "CVE-") {
		t.Fatalf("vulnerable image on B after A was killed mid-scan: %d %s\n%s", code, body, b.out.String())
	}
	if code, body := pull(b, "team/clean"); code != http.StatusOK {
		t.Fatalf("clean image on B after A was killed mid-scan: %d %s\n%s", code, body, b.out.String())
	}
	if n := claims(); n != 0 {
		t.Errorf("%d live claims after B finished the scans", n)
	}
	// A restarted finds both verdicts in the shared store.
	start(a)
	if code, body := pull(a, "team/vuln"); code != http.StatusForbidden || !strings.Contains(body, "CVE-") {
		t.Fatalf("vulnerable image on the restarted A: %d %s", code, body)
	}
	if code, _ := pull(a, "team/clean"); code != http.StatusOK {
		t.Fatalf("clean image on the restarted A: %d", code)
	}
}

package guide

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// crashRounds is how many times the crash test kills the proxy mid-pull; a kill that
// comes after the round's pulls ended does not count, and the test gives up after
// twice as many rounds.
const crashRounds = 20

// TestSIGKILLDuringIngestAndScan runs the real binary, kills it with SIGKILL at random
// points of cold ingests and scans, restarts it on the same data directory each time,
// and checks: it starts (bbolt opens), every stored blob matches its digest, the
// vulnerable image is never served, and in the end both images have their verdicts.
func TestSIGKILLDuringIngestAndScan(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the binary 20 times")
	}
	bin := filepath.Join(binaries(t), "goldproxy")
	up := proxytest.NewUpstream(t)
	// Layers big enough, and delivered slowly enough, that kills land in the ingest as
	// well as in the scan.
	extra := func(img v1.Image) v1.Image {
		l, err := random.Layer(3<<20, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		out, err := mutate.AppendLayers(img, l)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// Each round pulls images never seen: every kill lands in a cold ingest or scan.
	push := func(round int) {
		up.Push(t, fmt.Sprintf("team/vuln:%d", round), extra(scannertest.AlpineImage(t, true)))
		up.Push(t, fmt.Sprintf("team/clean:%d", round), extra(scannertest.AlpineImage(t, false)))
	}
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			time.Sleep(time.Duration(300+randN(t, 700)) * time.Millisecond)
		}
		return false
	})

	dir := t.TempDir()
	dbDir := filepath.Join(dir, "db")
	scannertest.BuildDB(t, dbDir, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	data := filepath.Join(dir, "data")
	port := freePort(t)
	cfg := writeFile(t, filepath.Join(dir, "goldproxy.yaml"), fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
db: {dir: %s}
log: {format: json, level: info}
upstreams:
  - name: %q
    url: %s
allow:
  repositories: ["**"]
`, port, data, dbDir, up.Name, up.URL))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	vulnURL := func(round int) string { return fmt.Sprintf("%s/v2/%s/team/vuln/manifests/%d", base, up.Name, round) }
	cleanURL := func(round int) string { return fmt.Sprintf("%s/v2/%s/team/clean/manifests/%d", base, up.Name, round) }
	client := &http.Client{Timeout: 20 * time.Second}

	start := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(bin, "serve", "--config", cfg)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + t.TempDir()}
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := client.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cmd, out
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("goldproxy did not become ready on %s:\n%s", data, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var served sync.Map // URL → status codes seen
	pull := func(url string) int {
		resp, err := client.Get(url)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		v, _ := served.LoadOrStore(url, &statuses{})
		v.(*statuses).add(resp.StatusCode)
		return resp.StatusCode
	}

	killedMidPull, rounds := 0, 0
	for ; killedMidPull < crashRounds && rounds < 2*crashRounds; rounds++ {
		round := rounds
		push(round)
		cmd, out := start()
		checkBlobs(t, data, round)
		var wg sync.WaitGroup
		for _, u := range []string{vulnURL(round), cleanURL(round)} {
			wg.Add(1)
			go func() { defer wg.Done(); pull(u) }()
		}
		pulled := make(chan struct{})
		go func() { wg.Wait(); close(pulled) }()
		select {
		case <-time.After(time.Duration(50+randN(t, 1200)) * time.Millisecond):
			killedMidPull++
		case <-pulled:
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		wg.Wait()
		for r := range round + 1 {
			if v, ok := served.Load(vulnURL(r)); ok && v.(*statuses).has(http.StatusOK) {
				t.Fatalf("round %d: the vulnerable image of round %d was served:\n%s", round, r, out.String())
			}
		}
	}
	t.Logf("%d rounds; %d killed while a pull was in progress", rounds, killedMidPull)
	if killedMidPull < crashRounds {
		t.Fatalf("only %d of %d kills landed during a pull: the test exercised too little", killedMidPull, rounds)
	}
	push(rounds) // one round more, never pulled before the last start

	// The last start: everything recovers and ends with its verdict.
	cmd, out := start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	checkBlobs(t, data, rounds)
	deadline := time.Now().Add(3 * time.Minute)
	for round := range rounds + 1 {
		for {
			v, c := pull(vulnURL(round)), pull(cleanURL(round))
			if v == http.StatusForbidden && c == http.StatusOK {
				break
			}
			if v == http.StatusOK {
				t.Fatalf("the vulnerable image of round %d was served after the crashes:\n%s", round, out.String())
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the crashes, round %d: vulnerable %d, clean %d (want 403, 200):\n%s", round, v, c, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	resp, err := client.Get(vulnURL(0))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "CVE-") || !strings.Contains(string(b), "DENIED") {
		t.Fatalf("the vulnerable image's denial names no CVE: %s", b)
	}
	checkBlobs(t, data, rounds+1)
}

// syncBuffer is a process's output, read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type statuses struct {
	mu sync.Mutex
	s  []int
}

func (s *statuses) add(c int) { s.mu.Lock(); s.s = append(s.s, c); s.mu.Unlock() }
func (s *statuses) has(c int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.s {
		if x == c {
			return true
		}
	}
	return false
}

// checkBlobs hashes every blob in the store's filesystem layout: each must match the
// digest it is stored under (distribution's layout: blobs/sha256/xx/<hex>/data).
func checkBlobs(t *testing.T, data string, round int) {
	t.Helper()
	root := filepath.Join(data, "registry", "docker", "registry", "v2", "blobs", "sha256")
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == root {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || d.Name() != "data" {
			return nil
		}
		want := filepath.Base(filepath.Dir(p))
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, bufio.NewReader(f)); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("round %d: blob stored as %s hashes to %s", round, want, got)
		}
		n++
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("round %d: %v", round, err)
	}
}

func randN(t *testing.T, n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return v.Int64()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

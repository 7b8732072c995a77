// Package s3test starts a throwaway S3 server for tests: versitygw (installed by
// .ci/setup from the Go module proxy) with its POSIX backend on a temporary directory
// and a free loopback port, stopped when the test ends. Tests get a fresh bucket each
// from NewBucket.
//
// It never talks to a server it did not start: a test that cannot find versitygw is
// skipped, or fails when CI=true.
package s3test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"
)

// Server is a running versitygw started by Start.
type Server struct {
	// Endpoint is the server's URL (http://127.0.0.1:port).
	Endpoint string
	// AccessKey and SecretKey are the root account's.
	AccessKey, SecretKey string
	// Root is the POSIX directory behind the server: bucket b's objects are under Root/b.
	Root string
	n    atomic.Int64
}

// Region is the region the server answers for.
const Region = "us-east-1"

// Start starts versitygw for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		msg := "versitygw not found (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
		if os.Getenv("CI") == "true" {
			t.Fatalf("s3test: %s: .ci/setup installs it", msg)
		}
		t.Skipf("s3test: %s", msg)
	}
	dir := t.TempDir()
	root, meta := filepath.Join(dir, "root"), filepath.Join(dir, "meta")
	for _, d := range []string{root, meta} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{AccessKey: "goldproxy-test", SecretKey: randomHex(t), Root: root}
	var cmd *exec.Cmd
	var out strings.Builder
	// A free port can be taken before versitygw binds it: try a few.
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		s.Endpoint = "http://" + addr
		out.Reset()
		// Metadata in a sidecar directory, not extended attributes: works on any filesystem.
		cmd = exec.Command(bin, "--port", addr, "--quiet", "posix", "--sidecar", meta, root)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKey, "ROOT_SECRET_ACCESS_KEY="+s.SecretKey)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("s3test: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if waitUp(addr, exited) {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(os.Interrupt)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
			return s
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == 2 {
			t.Fatalf("s3test: versitygw did not come up on %s:\n%s", addr, out.String())
		}
	}
}

// waitUp waits until addr answers HTTP, or the process exits, for at most 30 seconds.
func waitUp(addr string, exited <-chan struct{}) bool {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := c.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Client is an S3 client for the server, as the root account.
func (s *Server) Client(t testing.TB) *s3.S3 {
	t.Helper()
	sess, err := session.NewSession(aws.NewConfig().
		WithEndpoint(s.Endpoint).WithRegion(Region).WithS3ForcePathStyle(true).
		WithCredentials(credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, "")))
	if err != nil {
		t.Fatal(err)
	}
	return s3.New(sess)
}

// NewBucket creates an empty bucket and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test-%d", s.n.Add(1))
	if _, err := s.Client(t).CreateBucket(&s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
	return name
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

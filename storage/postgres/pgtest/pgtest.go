// Package pgtest starts a throwaway PostgreSQL server for tests: Debian's initdb and
// pg_ctl (postgresql package) on a temporary directory and a free loopback port, as an
// unprivileged user when the tests run as root, stopped and removed when the test ends.
// Tests get a fresh database each from NewDatabase.
//
// It never connects to a server it did not start, and never leaves one running: a test
// that cannot find the binaries is skipped, or fails when CI=true (CI installs them).
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL started by Start.
type Server struct {
	// Dir holds the cluster and its log; it is removed when the test ends.
	Dir  string
	base string // DSN of the postgres database, as the superuser
	n    atomic.Int64
}

// DSN is the connection string of the server's postgres database.
func (s *Server) DSN() string { return s.base }

// Start starts a PostgreSQL server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %v (.ci/setup installs postgresql)", err)
		}
		t.Skipf("pgtest: %v (apt-get install postgresql)", err)
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cred, err := unprivileged(dir)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + dir, "LC_ALL=C", "TZ=UTC"}
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	// The default collation is ICU's en-US, as on most real servers, not C: a query that
	// forgets the schema's byte-order collation sorts differently and the suite sees it.
	initdb := []string{"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"}
	if err := run("initdb", append(initdb, "--locale-provider=icu", "--icu-locale=en-US")...); err != nil {
		_ = os.RemoveAll(data)
		if err := run("initdb", initdb...); err != nil { // a server built without ICU
			t.Fatalf("pgtest: %v", err)
		}
	}
	logFile := filepath.Join(dir, "postgres.log")
	var port int
	// A free port can be taken by someone else before postgres binds it: try a few.
	for attempt := 0; ; attempt++ {
		port, err = freePort()
		if err != nil {
			t.Fatal(err)
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
		err = run("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", logFile, "-o", opts)
		if err == nil {
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("pgtest: %v\n%s", err, log)
		}
	}
	t.Cleanup(func() {
		if err := run("pg_ctl", "stop", "-w", "-D", data, "-m", "immediate"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Server{Dir: dir, base: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
}

// NewDatabase creates an empty database on the server and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("test_%d", s.n.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return strings.Replace(s.base, "/postgres?", "/"+name+"?", 1)
}

// binDir finds the directory of initdb and pg_ctl: the newest
// /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if ok(filepath.Join(d, "initdb")) && ok(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil && ok(filepath.Join(filepath.Dir(p), "pg_ctl")) {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func ok(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&0o111 != 0
}

// unprivileged returns the credentials postgres runs with (nobody) when we are root,
// which postgres refuses to run as, and gives dir to that user.
func unprivileged(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root and no user nobody to run postgres as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

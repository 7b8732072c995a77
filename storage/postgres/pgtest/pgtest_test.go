package pgtest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
)

// TestServerLifecycle: the server runs as an unprivileged user when the tests run as
// root, each NewDatabase is empty and separate, and when the test ends the server is
// stopped and its directory removed.
func TestServerLifecycle(t *testing.T) {
	var srv *pgtest.Server
	t.Run("running", func(t *testing.T) {
		srv = pgtest.Start(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, srv.DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var pid int
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Uid:") && os.Geteuid() == 0 && strings.Fields(line)[1] == "0" {
				t.Fatalf("postgres runs as root: %s", line)
			}
		}
		a, b := srv.NewDatabase(t), srv.NewDatabase(t)
		if a == b {
			t.Fatalf("the same database twice: %s", a)
		}
		ca, err := pgx.Connect(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		defer ca.Close(ctx)
		if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
			t.Fatal(err)
		}
		cb, err := pgx.Connect(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		defer cb.Close(ctx)
		var found bool
		if err := cb.QueryRow(ctx, `SELECT to_regclass('only_in_a') IS NOT NULL`).Scan(&found); err != nil || found {
			t.Fatalf("databases are not separate: %v %v", found, err)
		}
	})
	if srv == nil {
		t.Skip("no server started")
	}
	if _, err := os.Stat(srv.Dir); !os.IsNotExist(err) {
		t.Fatalf("the server's directory survived the test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, srv.DSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("the server still answers after the test")
	}
}

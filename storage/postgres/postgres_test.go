package postgres_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
	"github.com/goldproxy/goldproxy/storage/storagetest"
)

func TestPostgresConformance(t *testing.T) {
	srv := pgtest.Start(t)
	storagetest.Conformance(t, func(t *testing.T) storage.Metadata {
		m, err := postgres.Open(context.Background(), srv.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	})
}

func TestMigrationsTwoReplicasAtOnce(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	const n = 4
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(ctx, dsn) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	var rows, version int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != len(files) || version != len(files) {
		t.Fatalf("schema_migrations: %d rows, version %d; want each of %d migrations applied once", rows, version, len(files))
	}
	if v, err := stores[0].SchemaVersion(ctx); err != nil || v != len(files) {
		t.Fatalf("SchemaVersion: %d %v", v, err)
	}
	// What one replica writes, another reads.
	if err := stores[0].PutRobot(storage.Robot{Name: "ci", Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	if r, err := stores[1].Robot("ci"); err != nil || r.Hash != "h" {
		t.Fatalf("robot on the other replica: %+v %v", r, err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	m, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"schemaVersion":2}`)
	rec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(raw)}}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := m.PutTaggedManifest("r.test/a", "1", at, rec, raw); err != nil {
		t.Fatal(err)
	}
	if err := m.PutVerdict(rec.Digest, []byte(`{"state":"scanned"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if err := m.PutBaseline(at.Add(time.Duration(i)*time.Minute), []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	m, err = postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if tr, err := m.Tag("r.test/a", "1"); err != nil || tr.Digest != rec.Digest || !tr.FetchedAt.Equal(at) {
		t.Fatalf("tag after reopen: %+v %v", tr, err)
	}
	if b, err := m.Verdict(rec.Digest); err != nil || string(b) != `{"state":"scanned"}` {
		t.Fatalf("facts after reopen: %s %v", b, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM baselines`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("%d baselines kept, want the newest 10 (%v)", n, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	m, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')`); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(ctx, dsn)
	if err == nil || !strings.Contains(err.Error(), "version 99, newer than this goldproxy") {
		t.Fatalf("a database migrated by a newer goldproxy: %v", err)
	}
}

func TestWritable(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	readOnly := func(dsn string) {
		t.Helper()
		name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
		if _, err := conn.Exec(ctx, `ALTER DATABASE `+name+` SET default_transaction_read_only = on`); err != nil {
			t.Fatal(err)
		}
	}
	dsn := srv.NewDatabase(t)
	m, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Writable(); err != nil {
		t.Fatalf("a fresh database: %v", err)
	}
	m.Close()
	// A migrated database that turned read-only opens (nothing to migrate), reads, and
	// says it is not writable.
	readOnly(dsn)
	m, err = postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open an up-to-date read-only database: %v", err)
	}
	defer m.Close()
	if err := m.Writable(); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Writable on a read-only database: %v", err)
	}
	if _, err := m.Tags("r.test/app"); err != nil {
		t.Fatalf("reads on a read-only database: %v", err)
	}
	if err := m.Link("r.test/app", digest.FromString("x")); err == nil {
		t.Fatal("a write to a read-only database succeeded")
	}
	// One that still needs its schema cannot be opened.
	fresh := srv.NewDatabase(t)
	readOnly(fresh)
	if m, err := postgres.Open(ctx, fresh); err == nil {
		m.Close()
		t.Fatal("opened a read-only database without a schema")
	} else if !strings.Contains(err.Error(), "migration") && !strings.Contains(err.Error(), "schema_migrations") {
		t.Fatalf("error does not say what failed: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := postgres.Open(ctx, "postgres://u:secretpw@127.0.0.1:notaport/db"); err == nil || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("a DSN that does not parse: %v (want an error without the password)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	_, err = postgres.Open(ctx, fmt.Sprintf("postgres://u:secretpw@127.0.0.1:%d/db?connect_timeout=2", port))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("connect to 127.0.0.1:%d", port)) || strings.Contains(err.Error(), "secretpw") {
		t.Fatalf("no server: %v (want where it tried, without the password)", err)
	}
}

// TestVerdictsPaged: more facts records than one page, each listed once in digest order.
func TestVerdictsPaged(t *testing.T) {
	srv := pgtest.Start(t)
	m, err := postgres.Open(context.Background(), srv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 1100
	var want []digest.Digest
	for i := range n {
		d := digest.FromString(fmt.Sprint("paged ", i))
		want = append(want, d)
		if err := m.PutVerdict(d, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	var got []digest.Digest
	if err := m.Verdicts(func(d digest.Digest, b []byte) error {
		if string(b) != string(d) {
			t.Errorf("%s: %q", d, b)
		}
		got = append(got, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%d verdicts listed, want %d in digest order", len(got), n)
	}
}

// TestNoDeadlocks: writers that touch the same rows in different orders (manifests that
// share layers listed in another order, pull and judgement batches of the same images
// from two replicas) all succeed: rows are written in key order.
func TestNoDeadlocks(t *testing.T) {
	srv := pgtest.Start(t)
	m, err := postgres.Open(context.Background(), srv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var refs []digest.Digest
	for i := range 20 {
		refs = append(refs, digest.FromString(fmt.Sprint("layer ", i)))
	}
	keys := map[string]time.Time{}
	recs := map[string][]byte{}
	for _, r := range refs {
		keys[storage.PullKey("r.test/app", r)] = time.Now()
		recs[storage.PullKey("r.test/app", r)] = []byte(`{}`)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for round := range 10 {
				rs := slices.Clone(refs)
				if w%2 == 1 {
					slices.Reverse(rs)
				}
				raw := []byte(fmt.Sprintf(`{"schemaVersion":2,"w":%d,"r":%d}`, w, round))
				rec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(raw)}}
				if err := m.PutManifest("r.test/app", rec, raw, rs...); err != nil {
					errs <- err
					return
				}
				if err := m.MarkPulled(keys); err != nil {
					errs <- err
					return
				}
				if err := m.PutJudgements(recs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

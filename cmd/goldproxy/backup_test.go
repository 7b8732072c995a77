package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
)

// buckets lists a bbolt file's buckets and their key counts.
func buckets(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]int{}
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			out[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	return out
}

// TestBackup takes the metadata DB of a store that holds a pulled image: online through
// the handler a running proxy serves (GET /api/v1/admin/backup, cli.WriteBackup inside
// one read transaction while the store stays open), and offline from the data dir, which
// must refuse while a goldproxy holds it. Both backups open with the same buckets and keys.
func TestBackup(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "team/alpine:fixed", scannertest.AlpineImage(t, false))
	cfg := proxytest.Config(t, up)
	p := proxytest.Start(t, cfg)
	if err := proxytest.PullAll(p.Host, up.Name+"/team/alpine:fixed"); err != nil {
		t.Fatal(err)
	}
	// The proxy side: what proxy/admin serves at cli.BackupPath.
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != cli.BackupPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		db, err := p.Store.DB()
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := cli.WriteBackup(w, db); err != nil {
			t.Error(err)
		}
	}))
	defer admin.Close()
	online := filepath.Join(t.TempDir(), "online.db")
	if out, code := runCLI(t, "backup", "--proxy", admin.URL, "--output", online); code != 0 || !strings.Contains(out, "wrote "+online) {
		t.Fatalf("backup --proxy: %d %s", code, out)
	}
	// Offline while the proxy holds meta.db: refused, with the way out.
	_, err := cli.BackupFile(filepath.Join(cfg.DataDir, cli.MetaDB), filepath.Join(t.TempDir(), "x.db"))
	if err == nil || !strings.Contains(err.Error(), "--proxy") {
		t.Fatalf("offline backup of a held DB: %v", err)
	}
	p.Close()
	offline := filepath.Join(t.TempDir(), "offline.db")
	if _, err := cli.BackupFile(filepath.Join(cfg.DataDir, cli.MetaDB), offline); err != nil {
		t.Fatal(err)
	}
	// The offline copy is taken later (the proxy flushes pull times when it closes): it
	// has every bucket and at least as many keys.
	a, b := buckets(t, online), buckets(t, offline)
	total := 0
	for name, n := range a {
		total += n
		if _, ok := b[name]; !ok || b[name] < n {
			t.Errorf("bucket %s: %d keys online, %d offline", name, n, b[name])
		}
	}
	if len(a) != len(b) || total == 0 {
		t.Fatalf("buckets online %v, offline %v", a, b)
	}
	// A restored data dir opens as a store.
	restored := t.TempDir()
	if _, err := cli.BackupFile(online, filepath.Join(restored, cli.MetaDB)); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(context.Background(), restored)
	if err != nil {
		t.Fatalf("restored meta.db: %v", err)
	}
	s.Close()
}

// TestBackupOnPostgres: with the metadata in PostgreSQL there is no meta.db to copy; the
// command and the endpoint say to use pg_dump.
func TestBackupOnPostgres(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "goldproxy.yaml")
	yaml := "data_dir: " + filepath.Join(dir, "data") + "\nupstreams:\n  - name: r.test\n    url: http://127.0.0.1:1\n" +
		"storage:\n  metadata:\n    driver: postgres\n    postgres:\n      dsn_env: TEST_PG_DSN\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runCLI(t, "backup", "--config", conf, "--output", filepath.Join(dir, "x.db")); code != 2 || !strings.Contains(out, "pg_dump") {
		t.Fatalf("backup --config on PostgreSQL: %d %s", code, out)
	}
	pg := pgtest.Start(t)
	m, err := postgres.Open(context.Background(), pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := storage.New(context.Background(), storage.WithFilesystem(filepath.Join(dir, "blobs")), storage.WithMetadata(m))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var buf strings.Builder
	if _, err := backupOf(s)(&buf); err == nil || !strings.Contains(err.Error(), "pg_dump") || buf.Len() != 0 {
		t.Fatalf("backup endpoint on PostgreSQL: %v (%d bytes)", err, buf.Len())
	}
}

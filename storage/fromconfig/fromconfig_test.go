package fromconfig_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/fromconfig"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
	"github.com/goldproxy/goldproxy/storage/s3test"
)

const upstreams = "upstreams:\n  - name: r.test\n    url: http://127.0.0.1:1\n"

func parse(t *testing.T, dir, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("data_dir: "+filepath.Join(dir, "data")+"\n"+upstreams+yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func roundTrip(t *testing.T, s *storage.Store) digest.Digest {
	t.Helper()
	ctx := context.Background()
	b := []byte("layer through the config")
	d := digest.FromBytes(b)
	w, err := s.CreateBlob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, d, int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if err := s.Link("r.test/app", d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDefaultIsFilesystemAndBolt(t *testing.T) {
	dir := t.TempDir()
	s, err := fromconfig.Open(context.Background(), parse(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := roundTrip(t, s)
	if _, err := s.DB(); err != nil {
		t.Fatalf("bolt metadata: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", fromconfig.MetaDB)); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "data", "registry", "docker", "registry", "v2", "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
	if _, err := os.Stat(blob); err != nil {
		t.Fatalf("blob not under data_dir/registry: %v", err)
	}
}

func TestS3AndPostgres(t *testing.T) {
	srv := s3test.Start(t)
	pg := pgtest.Start(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	// The secret key by file (relative to the config's directory), the rest by env.
	if err := os.WriteFile(filepath.Join(dir, "s3-secret"), []byte(srv.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_S3_ACCESS", srv.AccessKey)
	t.Setenv("TEST_PG_DSN", pg.NewDatabase(t))
	yaml := `storage:
  driver: s3
  s3:
    bucket: ` + bucket + `
    endpoint: ` + srv.Endpoint + `
    root_directory: /mirror
    force_path_style: true
    access_key_env: TEST_S3_ACCESS
    secret_key_file: s3-secret
  metadata:
    driver: postgres
    postgres:
      dsn_env: TEST_PG_DSN
`
	cfg := parse(t, dir, yaml)
	ctx := context.Background()
	s, err := fromconfig.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := roundTrip(t, s)
	if _, err := s.DB(); err == nil {
		t.Fatal("DB() on PostgreSQL metadata")
	}
	s.Close()
	// A second replica on the same config sees the blob and its link.
	s2, err := fromconfig.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, err := s2.ReadBlob(ctx, d); err != nil || !bytes.Equal(got, []byte("layer through the config")) {
		t.Fatalf("blob on the second replica: %q %v", got, err)
	}
	if !s2.Linked("r.test/app", d) {
		t.Fatal("link on the second replica")
	}
	if _, err := os.Stat(filepath.Join(srv.Root, bucket, "mirror")); err != nil {
		t.Fatalf("nothing under the root directory in the bucket: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", fromconfig.MetaDB)); !os.IsNotExist(err) {
		t.Fatalf("a bbolt file was made beside PostgreSQL: %v", err)
	}
}

func TestSecretErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"access key env unset", "storage:\n  driver: s3\n  s3:\n    bucket: b\n    region: us-east-1\n    access_key_env: TEST_UNSET_ACCESS\n    secret_key_env: TEST_UNSET_SECRET\n", "storage.s3.access_key"},
		{"secret key file missing", "storage:\n  driver: s3\n  s3:\n    bucket: b\n    region: us-east-1\n    access_key_env: HOME\n    secret_key_file: nope\n", "storage.s3.secret_key"},
		{"dsn env unset", "storage:\n  metadata:\n    driver: postgres\n    postgres:\n      dsn_env: TEST_UNSET_DSN\n", "storage.metadata.postgres.dsn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := fromconfig.Open(context.Background(), parse(t, dir, tc.yaml))
			if err == nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

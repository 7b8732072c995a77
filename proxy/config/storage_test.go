package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/config"
)

const upstream = "upstreams:\n  - name: r.test\n    url: http://127.0.0.1:1\n"

func TestStorageConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(upstream), "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.Driver != "filesystem" || cfg.Storage.Metadata.Driver != "bolt" {
		t.Fatalf("defaults: %q %q", cfg.Storage.Driver, cfg.Storage.Metadata.Driver)
	}
	cfg, err = config.Parse([]byte(upstream+`storage:
  driver: s3
  s3:
    bucket: mirror
    endpoint: http://127.0.0.1:7070
    root_directory: /goldproxy
    force_path_style: true
    access_key_env: S3_ACCESS_KEY
    secret_key_file: /run/secrets/s3
  metadata:
    driver: postgres
    postgres:
      dsn_file: /run/secrets/pg
`), "")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Storage
	if s.S3.Bucket != "mirror" || s.S3.Endpoint != "http://127.0.0.1:7070" || s.S3.RootDirectory != "/goldproxy" || !s.S3.ForcePathStyle ||
		s.S3.AccessKeyEnv != "S3_ACCESS_KEY" || s.S3.SecretKeyFile != "/run/secrets/s3" || s.Metadata.Postgres.DSNFile != "/run/secrets/pg" {
		t.Fatalf("storage: %+v", s)
	}
	// On AWS: a region, and keys from the default chain (no keys given).
	if _, err := config.Parse([]byte(upstream+"storage:\n  driver: s3\n  s3:\n    bucket: mirror\n    region: eu-west-1\n"), ""); err != nil {
		t.Fatal(err)
	}
}

func TestStorageConfigErrorsNameTheKey(t *testing.T) {
	s3 := func(body string) string { return upstream + "storage:\n  driver: s3\n  s3:\n" + body }
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown driver", upstream + "storage:\n  driver: gcs\n", "storage.driver"},
		{"no bucket", s3("    region: us-east-1\n"), "storage.s3.bucket: required"},
		{"bucket with a path", s3("    bucket: a/b\n    region: us-east-1\n"), "storage.s3.bucket"},
		{"no region on AWS", s3("    bucket: b\n"), "storage.s3.region"},
		{"endpoint not a URL", s3("    bucket: b\n    endpoint: minio:9000\n"), "storage.s3.endpoint"},
		{"endpoint with a path", s3("    bucket: b\n    endpoint: http://minio:9000/bucket\n"), "storage.s3.endpoint"},
		{"access key twice", s3("    bucket: b\n    region: r\n    access_key_env: A\n    access_key_file: /a\n    secret_key_env: S\n"), "access_key_env or access_key_file"},
		{"secret key twice", s3("    bucket: b\n    region: r\n    access_key_env: A\n    secret_key_env: S\n    secret_key_file: /s\n"), "secret_key_env or secret_key_file"},
		{"access key alone", s3("    bucket: b\n    region: r\n    access_key_env: A\n"), "or neither"},
		{"inline access key", s3("    bucket: b\n    region: r\n    access_key: AKIA\n"), "secrets are never inline: use access_key_env or access_key_file"},
		{"inline secret key", s3("    bucket: b\n    region: r\n    secret_key: shh\n"), "secrets are never inline: use secret_key_env or secret_key_file"},
		{"s3 without driver s3", upstream + "storage:\n  s3:\n    bucket: b\n", "storage.s3: set, but storage.driver is \"filesystem\""},
		{"unknown s3 key", s3("    bucket: b\n    region: r\n    bukket: c\n"), `unknown key "bukket"`},
		{"unknown metadata driver", upstream + "storage:\n  metadata:\n    driver: sqlite\n", "storage.metadata.driver"},
		{"postgres without dsn", upstream + "storage:\n  metadata:\n    driver: postgres\n", "storage.metadata.postgres: set dsn_env or dsn_file"},
		{"dsn twice", upstream + "storage:\n  metadata:\n    driver: postgres\n    postgres:\n      dsn_env: D\n      dsn_file: /d\n", "not both"},
		{"inline dsn", upstream + "storage:\n  metadata:\n    driver: postgres\n    postgres:\n      dsn: postgres://u:pw@db/x\n", "secrets are never inline: use dsn_env or dsn_file"},
		{"postgres with bolt", upstream + "storage:\n  metadata:\n    postgres:\n      dsn_env: D\n", "storage.metadata.postgres: set, but storage.metadata.driver is \"bolt\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(tc.yaml, "pw@") && strings.Contains(err.Error(), "pw@") {
				t.Fatalf("the error repeats the inline secret: %v", err)
			}
		})
	}
}

// TestReadmeStorageExample: the README's S3 + PostgreSQL example is a valid config.
func TestReadmeStorageExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "### Storage:")
	if !ok {
		t.Fatal("README has no storage section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the storage section has no yaml example")
	}
	cfg, err := config.Parse([]byte(upstream+example), "")
	if err != nil {
		t.Fatalf("README example: %v\n%s", err, example)
	}
	if cfg.Storage.Driver != "s3" || cfg.Storage.Metadata.Driver != "postgres" {
		t.Fatalf("README example: %+v", cfg.Storage)
	}
}

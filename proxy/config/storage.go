package config

import (
	"fmt"
	"net/url"
	"strings"
)

// StorageConfig says where content and metadata are kept: by default blobs in files under
// <data_dir>/registry and metadata in <data_dir>/meta.db (bbolt); for replicas, blobs in
// S3 and metadata in PostgreSQL.
type StorageConfig struct {
	// Driver keeps blobs: filesystem (default) or s3.
	Driver   string         `yaml:"driver"`
	S3       S3Config       `yaml:"s3"`
	Metadata MetadataConfig `yaml:"metadata"`
	GC       GCConfig       `yaml:"gc"`
}

// S3Config is an S3 bucket (AWS, or an S3-compatible server at Endpoint). Keys come by
// environment variable or file; without them the AWS default chain is used (IAM role).
type S3Config struct {
	Bucket string `yaml:"bucket"`
	// Region is required on AWS; with an endpoint it may be left out.
	Region string `yaml:"region"`
	// Endpoint is an S3-compatible server's URL, e.g. https://minio.internal:9000.
	Endpoint string `yaml:"endpoint"`
	// RootDirectory is the key prefix goldproxy keeps everything under.
	RootDirectory string `yaml:"root_directory"`
	// ForcePathStyle addresses the bucket in the path, not the host name (most
	// S3-compatible servers want it).
	ForcePathStyle bool   `yaml:"force_path_style"`
	AccessKeyEnv   string `yaml:"access_key_env"`
	AccessKeyFile  string `yaml:"access_key_file"`
	SecretKeyEnv   string `yaml:"secret_key_env"`
	SecretKeyFile  string `yaml:"secret_key_file"`
}

// MetadataConfig selects where manifests, tags, verdicts, robots… are kept.
type MetadataConfig struct {
	// Driver is bolt (default: <data_dir>/meta.db, one process) or postgres (shared by
	// replicas).
	Driver   string         `yaml:"driver"`
	Postgres PostgresConfig `yaml:"postgres"`
}

// PostgresConfig holds the connection string by reference: it usually carries a
// password. Example: postgres://goldproxy:PASSWORD@db.internal:5432/goldproxy?sslmode=verify-full
type PostgresConfig struct {
	DSNEnv  string `yaml:"dsn_env"`
	DSNFile string `yaml:"dsn_file"`
}

func (s *StorageConfig) validate() error {
	switch s.Driver {
	case "filesystem":
		if s.S3 != (S3Config{}) {
			return fmt.Errorf("config: storage.s3: set, but storage.driver is %q (set driver: s3)", s.Driver)
		}
	case "s3":
		if err := s.S3.validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("config: storage.driver: %q is not supported (filesystem or s3)", s.Driver)
	}
	switch s.Metadata.Driver {
	case "bolt":
		if s.Metadata.Postgres != (PostgresConfig{}) {
			return fmt.Errorf("config: storage.metadata.postgres: set, but storage.metadata.driver is %q (set driver: postgres)", s.Metadata.Driver)
		}
	case "postgres":
		p := s.Metadata.Postgres
		if p.DSNEnv == "" && p.DSNFile == "" {
			return fmt.Errorf("config: storage.metadata.postgres: set dsn_env or dsn_file")
		}
		if p.DSNEnv != "" && p.DSNFile != "" {
			return fmt.Errorf("config: storage.metadata.postgres: set dsn_env or dsn_file, not both")
		}
	default:
		return fmt.Errorf("config: storage.metadata.driver: %q is not supported (bolt or postgres)", s.Metadata.Driver)
	}
	return nil
}

func (c S3Config) validate() error {
	if c.Bucket == "" {
		return fmt.Errorf("config: storage.s3.bucket: required with storage.driver: s3")
	}
	if strings.ContainsAny(c.Bucket, "/ ") {
		return fmt.Errorf("config: storage.s3.bucket: %q is a bucket name, without slashes (use root_directory for a prefix)", c.Bucket)
	}
	if c.Endpoint == "" && c.Region == "" {
		return fmt.Errorf("config: storage.s3.region: required on AWS (without storage.s3.endpoint)")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("config: storage.s3.endpoint: %q is not an http(s)://host[:port] URL", c.Endpoint)
		}
	}
	if c.AccessKeyEnv != "" && c.AccessKeyFile != "" {
		return fmt.Errorf("config: storage.s3: set access_key_env or access_key_file, not both")
	}
	if c.SecretKeyEnv != "" && c.SecretKeyFile != "" {
		return fmt.Errorf("config: storage.s3: set secret_key_env or secret_key_file, not both")
	}
	if (c.AccessKeyEnv != "" || c.AccessKeyFile != "") != (c.SecretKeyEnv != "" || c.SecretKeyFile != "") {
		return fmt.Errorf("config: storage.s3: set an access key and a secret key, or neither (the AWS default chain)")
	}
	return nil
}

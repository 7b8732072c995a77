// Package fromconfig opens the store a goldproxy configuration describes: blobs on the
// filesystem under data_dir or in S3, metadata in bbolt under data_dir or in PostgreSQL,
// with the credentials read from the environment or files the config names.
//
// It is the one place that turns storage configuration into storage options; it never
// logs or returns a secret it read.
package fromconfig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/postgres"
)

// MetaDB is the bbolt metadata file under data_dir.
const MetaDB = "meta.db"

// Open opens the store cfg describes.
func Open(ctx context.Context, cfg *config.Config) (*storage.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	st := cfg.Storage
	var blobs storage.Option
	switch st.Driver {
	case "s3":
		c := st.S3
		ak, err := secret(cfg, c.AccessKeyEnv, c.AccessKeyFile)
		if err != nil {
			return nil, fmt.Errorf("storage.s3.access_key: %w", err)
		}
		sk, err := secret(cfg, c.SecretKeyEnv, c.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("storage.s3.secret_key: %w", err)
		}
		blobs = storage.WithS3(storage.S3{Bucket: c.Bucket, Region: c.Region, Endpoint: c.Endpoint, RootDirectory: c.RootDirectory,
			ForcePathStyle: c.ForcePathStyle, AccessKey: ak, SecretKey: sk})
	case "filesystem":
		blobs = storage.WithFilesystem(filepath.Join(cfg.DataDir, "registry"))
	default:
		return nil, fmt.Errorf("storage.driver: %q is not supported", st.Driver)
	}
	var meta storage.Option
	switch st.Metadata.Driver {
	case "postgres":
		p := st.Metadata.Postgres
		dsn, err := secret(cfg, p.DSNEnv, p.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("storage.metadata.postgres.dsn: %w", err)
		}
		if dsn == "" {
			return nil, fmt.Errorf("storage.metadata.postgres.dsn: empty")
		}
		m, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		meta = storage.WithMetadata(m)
	case "bolt":
		meta = storage.WithBolt(filepath.Join(cfg.DataDir, MetaDB))
	default:
		return nil, fmt.Errorf("storage.metadata.driver: %q is not supported", st.Metadata.Driver)
	}
	return storage.New(ctx, blobs, meta)
}

func secret(cfg *config.Config, env, file string) (string, error) {
	if file != "" {
		file = cfg.Resolve(file)
	}
	return config.Secret(env, file)
}

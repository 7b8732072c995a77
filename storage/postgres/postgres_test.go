package postgres_test

import (
	"context"
	"testing"

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

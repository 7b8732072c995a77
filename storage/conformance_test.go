package storage_test

import (
	"context"
	"testing"

	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/storagetest"
)

func TestBboltConformance(t *testing.T) {
	storagetest.Conformance(t, func(t *testing.T) storage.Metadata {
		s, err := storage.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

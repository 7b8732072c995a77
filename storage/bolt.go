package storage

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltMeta is Metadata in an embedded bbolt database: one writer, readers never blocked.
type boltMeta struct {
	db *bolt.DB
}

var _ Metadata = (*boltMeta)(nil)

func openBolt(path string) (*boltMeta, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("storage: open metadata: %w", err)
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, err
	}
	if err := backfillOwners(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &boltMeta{db: db}, nil
}

// Close closes the database.
func (s *boltMeta) Close() error { return s.db.Close() }

// Writable checks that the database accepts writes.
func (s *boltMeta) Writable() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte("health"))
		return err
	})
}

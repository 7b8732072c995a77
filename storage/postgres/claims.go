package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"
)

// newOwner names this Store among the replicas holding claims: the host and a random
// part, new at every Open, so a restarted replica never renews its dead self's claims.
func newOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s", host, rand.Text()[:12])
}

// Claim takes key for ttl if no replica holds it (or its holder let it expire): true when
// this Store holds it now. Expiry is the database's clock, not the replicas'.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO claims (key, owner, expires) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
		ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires = excluded.expires WHERE claims.expires < now()`,
		key, s.owner, ttl.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("postgres: claim: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Renew extends this Store's claim on key by ttl from now; false when it no longer holds
// it (it expired and another replica took it).
func (s *Store) Renew(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE claims SET expires = now() + $3 * interval '1 millisecond' WHERE key = $1 AND owner = $2`,
		key, s.owner, ttl.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("postgres: renew claim: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Release gives up this Store's claim on key (another replica's is left alone).
func (s *Store) Release(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM claims WHERE key = $1 AND owner = $2`, key, s.owner); err != nil {
		return fmt.Errorf("postgres: release claim: %w", err)
	}
	return nil
}

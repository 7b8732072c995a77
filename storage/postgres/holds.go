package postgres

import (
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// PublishHolds replaces holder's set with ds until until, in one statement, and removes
// the sets of holders that expired storage.HoldsKept before until.
func (s *Store) PublishHolds(holder string, ds []digest.Digest, until time.Time) error {
	if err := storage.CheckHolds(holder, ds); err != nil {
		return err
	}
	texts := make([]string, 0, len(ds))
	for _, d := range ds {
		texts = append(texts, d.String())
	}
	slices.Sort(texts)
	texts = slices.Compact(texts)
	return s.exec(`WITH gone AS (DELETE FROM holds WHERE holder <> $1 AND until < $4)
		INSERT INTO holds (holder, until, digests) VALUES ($1, $2, $3)
		ON CONFLICT (holder) DO UPDATE SET until = excluded.until, digests = excluded.digests`,
		holder, until, texts, until.Add(-storage.HoldsKept))
}

// Holds are the sets of every holder not expired at now.
func (s *Store) Holds(now time.Time) (map[string]storage.HoldSet, error) {
	ctx, cancel := opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT holder, until, digests FROM holds WHERE until > $1`, now)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out := map[string]storage.HoldSet{}
	var holder string
	var until time.Time
	var ds []string
	_, err = pgx.ForEachRow(rows, []any{&holder, &until, &ds}, func() error {
		set := storage.HoldSet{Until: until.UTC()}
		for _, d := range ds {
			set.Digests = append(set.Digests, digest.Digest(d))
		}
		out[holder] = set
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

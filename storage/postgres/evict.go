package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// DeleteManifest forgets a repository's manifest: its record, owner entries, link,
// judgement, last pull, the tags of that repository pointing at it and its referrer
// entry. The bytes, facts and report go too when no repository holds the digest any more
// (orphaned).
func (s *Store) DeleteManifest(repo string, dgst digest.Digest) (orphaned bool, err error) {
	d := dgst.String()
	err = s.inTx(func(ctx context.Context, tx pgx.Tx) error {
		// The content row's lock serializes deletes (and puts) of one digest: two replicas
		// deleting it from two repositories cannot both see the other still holding it.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM manifest_content WHERE digest = $1 FOR UPDATE`, d); err != nil {
			return err
		}
		var b []byte
		var rec storage.ManifestRecord
		err := tx.QueryRow(ctx, `SELECT record FROM manifests WHERE repo = $1 AND digest = $2`, repo, d).Scan(&b)
		if err == nil {
			_ = json.Unmarshal(b, &rec)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		for _, q := range []string{
			`DELETE FROM blob_owners WHERE repo = $1 AND manifest = $2`,
			`DELETE FROM manifests WHERE repo = $1 AND digest = $2`,
			`DELETE FROM links WHERE repo = $1 AND digest = $2`,
			`DELETE FROM judgements WHERE repo = $1 AND digest = $2`,
			`DELETE FROM last_pulled WHERE repo = $1 AND digest = $2`,
			`DELETE FROM tags WHERE repo = $1 AND digest = $2`,
		} {
			if _, err := tx.Exec(ctx, q, repo, d); err != nil {
				return err
			}
		}
		if rec.Subject != "" {
			if _, err := tx.Exec(ctx, `DELETE FROM referrers WHERE repo = $1 AND subject = $2 AND referrer = $3`, repo, rec.Subject.String(), d); err != nil {
				return err
			}
		}
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM manifests WHERE digest = $1)`, d).Scan(&held); err != nil {
			return err
		}
		if held {
			return nil
		}
		orphaned = true
		for _, q := range []string{
			`DELETE FROM manifest_content WHERE digest = $1`,
			`DELETE FROM verdicts WHERE digest = $1`,
			`DELETE FROM reports WHERE digest = $1`,
		} {
			if _, err := tx.Exec(ctx, q, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return orphaned, nil
}

// Images lists every stored manifest with its use times, by repository and digest.
func (s *Store) Images() ([]storage.Image, error) {
	ctx, cancel := opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT m.repo, m.digest, m.record, c.raw, p.at FROM manifests m
		LEFT JOIN manifest_content c ON c.digest = m.digest
		LEFT JOIN last_pulled p ON p.repo = m.repo AND p.digest = m.digest
		ORDER BY m.repo, m.digest`)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Image, error) {
		var img storage.Image
		var rec storage.ManifestRecord
		var b []byte
		var at *time.Time
		if err := r.Scan(&img.Repository, &img.Digest, &b, &img.Raw, &at); err != nil {
			return img, err
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return img, err
		}
		img.StoredAt = rec.StoredAt
		if at != nil {
			img.LastPulled = at.UTC()
		}
		return img, nil
	})
	if err != nil || len(out) == 0 {
		return nil, listErr(err)
	}
	return out, nil
}

// MarkPulled records pulls (storage.PullKey → time), in one statement for many.
func (s *Store) MarkPulled(pulls map[string]time.Time) error {
	if len(pulls) == 0 {
		return nil
	}
	var repos, digests []string
	var ats []time.Time
	for _, k := range sortedKeys(pulls) {
		repo, d, err := storage.SplitPullKey(k)
		if err != nil {
			return err
		}
		repos, digests, ats = append(repos, repo), append(digests, d.String()), append(ats, pulls[k])
	}
	return s.exec(`INSERT INTO last_pulled (repo, digest, at) SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
		ON CONFLICT (repo, digest) DO UPDATE SET at = excluded.at`, repos, digests, ats)
}

// sortedKeys are a batch's keys in order: batches of two replicas that share rows lock
// them in the same order (no deadlock).
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

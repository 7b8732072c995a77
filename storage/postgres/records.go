package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// page is how many records one query of an iteration reads: fn runs between queries,
// with no connection held.
const page = 500

// PutVerdict stores the scan facts of a manifest digest.
func (s *Store) PutVerdict(dgst digest.Digest, rec []byte) error {
	return s.exec(`INSERT INTO verdicts (digest, record) VALUES ($1, $2) ON CONFLICT (digest) DO UPDATE SET record = excluded.record`,
		dgst.String(), nonNil(rec))
}

// PutVerdictAndReport stores scan facts and their report in one transaction.
func (s *Store) PutVerdictAndReport(dgst digest.Digest, rec, report []byte) error {
	return s.inTx(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO reports (digest, report) VALUES ($1, $2) ON CONFLICT (digest) DO UPDATE SET report = excluded.report`,
			dgst.String(), nonNil(report)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO verdicts (digest, record) VALUES ($1, $2) ON CONFLICT (digest) DO UPDATE SET record = excluded.record`,
			dgst.String(), nonNil(rec))
		return err
	})
}

// Verdict returns the scan facts of a manifest digest, or storage.ErrNotFound.
func (s *Store) Verdict(dgst digest.Digest) ([]byte, error) {
	return s.bytea(`SELECT record FROM verdicts WHERE digest = $1`, dgst.String())
}

// Report returns the scan report of a manifest digest, or storage.ErrNotFound.
func (s *Store) Report(dgst digest.Digest) ([]byte, error) {
	return s.bytea(`SELECT report FROM reports WHERE digest = $1`, dgst.String())
}

// Verdicts calls fn for every stored scan facts record, in digest order, a page at a
// time; an error from fn ends the walk and is returned.
func (s *Store) Verdicts(fn func(dgst digest.Digest, rec []byte) error) error {
	after := ""
	for {
		type row struct {
			d   string
			rec []byte
		}
		ctx, cancel := opCtx()
		rows, err := s.pool.Query(ctx, `SELECT digest, record FROM verdicts WHERE digest > $1 ORDER BY digest LIMIT $2`, after, page)
		var got []row
		if err == nil {
			got, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var x row
				return x, r.Scan(&x.d, &x.rec)
			})
		}
		cancel()
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		for _, x := range got {
			if err := fn(digest.Digest(x.d), x.rec); err != nil {
				return err
			}
		}
		if len(got) < page {
			return nil
		}
		after = got[len(got)-1].d
	}
}

// PutJudgement stores the judgement of a manifest digest under a repository.
func (s *Store) PutJudgement(repo string, dgst digest.Digest, rec []byte) error {
	return s.exec(`INSERT INTO judgements (repo, digest, record) VALUES ($1, $2, $3) ON CONFLICT (repo, digest) DO UPDATE SET record = excluded.record`,
		repo, dgst.String(), nonNil(rec))
}

// PutJudgements stores many judgements (storage.PullKey → record) in one statement; a
// key that is not a PullKey fails them all.
func (s *Store) PutJudgements(recs map[string][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	var repos, digests []string
	var bs [][]byte
	for _, k := range sortedKeys(recs) {
		repo, d, err := storage.SplitPullKey(k)
		if err != nil {
			return err
		}
		repos, digests, bs = append(repos, repo), append(digests, d.String()), append(bs, nonNil(recs[k]))
	}
	return s.exec(`INSERT INTO judgements (repo, digest, record) SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])
		ON CONFLICT (repo, digest) DO UPDATE SET record = excluded.record`, repos, digests, bs)
}

// Judgement returns the judgement of a digest under a repository, or storage.ErrNotFound.
func (s *Store) Judgement(repo string, dgst digest.Digest) ([]byte, error) {
	return s.bytea(`SELECT record FROM judgements WHERE repo = $1 AND digest = $2`, repo, dgst.String())
}

// Judgements calls fn for every stored judgement, in (repository, digest) order, a page
// at a time; an error from fn ends the walk and is returned.
func (s *Store) Judgements(fn func(repo string, dgst digest.Digest, rec []byte) error) error {
	afterRepo, afterDigest := "", ""
	for {
		type row struct {
			repo, d string
			rec     []byte
		}
		ctx, cancel := opCtx()
		rows, err := s.pool.Query(ctx, `SELECT repo, digest, record FROM judgements WHERE (repo, digest) > ($1, $2)
			ORDER BY repo, digest LIMIT $3`, afterRepo, afterDigest, page)
		var got []row
		if err == nil {
			got, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var x row
				return x, r.Scan(&x.repo, &x.d, &x.rec)
			})
		}
		cancel()
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		for _, x := range got {
			if err := fn(x.repo, digest.Digest(x.d), x.rec); err != nil {
				return err
			}
		}
		if len(got) < page {
			return nil
		}
		afterRepo, afterDigest = got[len(got)-1].repo, got[len(got)-1].d
	}
}

// PutRobot creates or replaces a robot.
func (s *Store) PutRobot(r storage.Robot) error {
	if r.Name == "" {
		return fmt.Errorf("postgres: a robot needs a name")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.exec(`INSERT INTO robots (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = excluded.record`, r.Name, b)
}

// AddRobot creates a robot whose name is not taken, or returns storage.ErrExists.
func (s *Store) AddRobot(r storage.Robot) error {
	if r.Name == "" {
		return fmt.Errorf("postgres: a robot needs a name")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := opCtx()
	defer cancel()
	tag, err := s.pool.Exec(ctx, `INSERT INTO robots (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, r.Name, b)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("robot %q: %w", r.Name, storage.ErrExists)
	}
	return nil
}

// Robot returns a robot by name, or storage.ErrNotFound.
func (s *Store) Robot(name string) (storage.Robot, error) {
	var r storage.Robot
	b, err := s.bytea(`SELECT record FROM robots WHERE name = $1`, name)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// Robots lists the robots, by name.
func (s *Store) Robots() ([]storage.Robot, error) {
	ctx, cancel := opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT record FROM robots ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Robot, error) {
		var b []byte
		var r storage.Robot
		if err := row.Scan(&b); err != nil {
			return r, err
		}
		return r, json.Unmarshal(b, &r)
	})
	if err != nil || len(out) == 0 {
		return nil, listErr(err)
	}
	return out, nil
}

// DeleteRobot revokes a robot; storage.ErrNotFound when there is none of that name.
func (s *Store) DeleteRobot(name string) error {
	ctx, cancel := opCtx()
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM robots WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// keptBaselines is how many baseline comparisons are kept, the newest.
const keptBaselines = 10

// PutBaseline keeps a baseline comparison; only the newest ten are kept.
func (s *Store) PutBaseline(at time.Time, b []byte) error {
	return s.inTx(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO baselines (at, body) VALUES ($1, $2) ON CONFLICT (at) DO UPDATE SET body = excluded.body`, at, nonNil(b)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM baselines WHERE at NOT IN (SELECT at FROM baselines ORDER BY at DESC LIMIT $1)`, keptBaselines)
		return err
	})
}

// LatestBaseline returns the newest baseline comparison and when it was stored.
func (s *Store) LatestBaseline() (time.Time, []byte, error) {
	ctx, cancel := opCtx()
	defer cancel()
	var at time.Time
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT at, body FROM baselines ORDER BY at DESC LIMIT 1`).Scan(&at, &b)
	return at.UTC(), b, notFound(err)
}

// bytea queries one bytea column; storage.ErrNotFound for no row.
func (s *Store) bytea(sql string, args ...any) ([]byte, error) {
	ctx, cancel := opCtx()
	defer cancel()
	var b []byte
	err := s.pool.QueryRow(ctx, sql, args...).Scan(&b)
	if err != nil {
		return nil, notFound(err)
	}
	return nonNil(b), nil
}

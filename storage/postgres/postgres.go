// Package postgres keeps goldproxy's metadata (storage.Metadata) in PostgreSQL, so that
// several goldproxy replicas share manifests, tags, links, referrers, scan facts,
// judgements, reports, robots, last pulls, baselines and what each replica holds in use
// (for garbage collection on the leader). The schema is versioned: the embedded
// migrations are applied at Open, in one transaction, under an advisory lock so replicas
// starting together do not race.
//
// It holds no state of its own beyond the connection pool: everything it answers comes
// from the database. It never interprets the gate's records and never stores a
// manifest whose bytes do not match its digest.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldproxy/goldproxy/storage"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock key migrations hold ("goldprox").
const migrationLock int64 = 0x676f6c6470726f78

// opTimeout bounds one metadata operation: storage.Metadata carries no context.
const opTimeout = 30 * time.Second

// Store is storage.Metadata on PostgreSQL.
type Store struct {
	pool  *pgxpool.Pool
	owner string // who this Store is in claims
}

var _ storage.Metadata = (*Store)(nil)

// Open connects to the database at dsn and brings its schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, owner: newOwner()}, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Writable checks that the database accepts writes: not a standby, not read-only.
func (s *Store) Writable() error {
	ctx, cancel := opCtx()
	defer cancel()
	var ro bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'`).Scan(&ro); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if ro {
		return errors.New("postgres: the database is read-only (a standby?)")
	}
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded NNNN_name.sql files, by version.
func migrations() ([]migration, error) {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("postgres: migration %s is not named NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := range out {
		if out[i].version != i+1 {
			return nil, fmt.Errorf("postgres: migration %s: versions must run 1, 2, 3… without gaps", out[i].name)
		}
	}
	return out, nil
}

// migrate applies the migrations the database has not seen, in one transaction. The
// advisory lock makes a second replica wait for the first and then find nothing to do.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	migs, err := migrations()
	if err != nil {
		return err
	}
	// Up to date: nothing to lock or write (a replica can open a read-only database and
	// report it not writable, rather than fail to start).
	var newest int
	var exists bool
	err = pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists)
	if err == nil && exists {
		err = pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest)
	}
	if err != nil {
		return fmt.Errorf("postgres: schema_migrations: %w", err)
	}
	if newest > len(migs) {
		return newerSchema(newest, len(migs))
	}
	if newest == len(migs) {
		return nil
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("postgres: migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("postgres: schema_migrations: %w", err)
		}
		var newest int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
			return fmt.Errorf("postgres: schema_migrations: %w", err)
		}
		if newest > len(migs) {
			return newerSchema(newest, len(migs))
		}
		for _, m := range migs[newest:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("postgres: migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("postgres: migration %s: %w", m.name, err)
			}
		}
		return nil
	})
}

func newerSchema(have, know int) error {
	return fmt.Errorf("postgres: the database's schema is version %d, newer than this goldproxy knows (%d): upgrade goldproxy", have, know)
}

// SchemaVersion is the newest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// notFound maps "no rows" to storage.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// exec runs one statement.
func (s *Store) exec(sql string, args ...any) error {
	ctx, cancel := opCtx()
	defer cancel()
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// inTx runs fn in one transaction.
func (s *Store) inTx(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := opCtx()
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("postgres: %w", err)
	}
	return err
}

// texts queries one text column.
func (s *Store) texts(sql string, args ...any) ([]string, error) {
	ctx, cancel := opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// bytes are never NULL in the schema: a nil record is stored as an empty one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

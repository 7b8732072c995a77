package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// Tag returns the last known resolution of repo:tag, or storage.ErrNotFound.
func (s *Store) Tag(repo, tag string) (storage.TagRecord, error) {
	ctx, cancel := opCtx()
	defer cancel()
	var t storage.TagRecord
	err := s.pool.QueryRow(ctx, `SELECT digest, fetched_at FROM tags WHERE repo = $1 AND tag = $2`, repo, tag).Scan(&t.Digest, &t.FetchedAt)
	t.FetchedAt = t.FetchedAt.UTC()
	return t, notFound(err)
}

const upsertTag = `INSERT INTO tags (repo, tag, digest, fetched_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, fetched_at = excluded.fetched_at`

// SetTag records that repo:tag resolved to dgst at fetchedAt.
func (s *Store) SetTag(repo, tag string, dgst digest.Digest, fetchedAt time.Time) error {
	return s.exec(upsertTag, repo, tag, dgst.String(), fetchedAt)
}

// Tags lists the tags of repo, sorted.
func (s *Store) Tags(repo string) ([]string, error) {
	return s.texts(`SELECT tag FROM tags WHERE repo = $1 ORDER BY tag`, repo)
}

// TagsOf lists repo's tags that point at dgst, sorted.
func (s *Store) TagsOf(repo string, dgst digest.Digest) ([]string, error) {
	return s.texts(`SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag`, repo, dgst.String())
}

// Link records that dgst is content of repo.
func (s *Store) Link(repo string, dgst digest.Digest) error {
	return s.exec(`INSERT INTO links (repo, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING`, repo, dgst.String())
}

// Linked reports whether dgst was seen as content of repo; false when the database
// cannot be asked (fail closed).
func (s *Store) Linked(repo string, dgst digest.Digest) bool {
	ctx, cancel := opCtx()
	defer cancel()
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM links WHERE repo = $1 AND digest = $2)`, repo, dgst.String()).Scan(&ok)
	return err == nil && ok
}

// Unlink forgets every repository's link to dgst.
func (s *Store) Unlink(dgst digest.Digest) error {
	return s.exec(`DELETE FROM links WHERE digest = $1`, dgst.String())
}

// PutManifest is PutTaggedManifest without a tag.
func (s *Store) PutManifest(repo string, rec storage.ManifestRecord, raw []byte, refs ...digest.Digest) error {
	return s.PutTaggedManifest(repo, "", time.Time{}, rec, raw, refs...)
}

// PutTaggedManifest verifies raw against rec.Digest, then stores the bytes, the record,
// its blobs' owner entries, links (refs and the manifest), the tag (when not empty) and
// the referrer entry (when it has a subject) in one transaction.
func (s *Store) PutTaggedManifest(repo, tag string, fetchedAt time.Time, rec storage.ManifestRecord, raw []byte, refs ...digest.Digest) error {
	if err := rec.Digest.Validate(); err != nil {
		return err
	}
	if rec.Digest.Algorithm().FromBytes(raw) != rec.Digest {
		return fmt.Errorf("%w: manifest %s", storage.ErrDigestMismatch, rec.Digest)
	}
	if rec.StoredAt.IsZero() {
		rec.StoredAt = time.Now().UTC()
	}
	rec.Size = int64(len(raw))
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	desc, err := json.Marshal(rec.Descriptor)
	if err != nil {
		return err
	}
	d := rec.Digest.String()
	links := []string{d}
	for _, r := range refs {
		links = append(links, r.String())
	}
	var blobs []string
	for _, bl := range storage.ManifestBlobs(raw) {
		blobs = append(blobs, bl.String())
	}
	// Rows in key order: two writers sharing rows lock them in the same order, and
	// neither waits on the other in a cycle (deadlock).
	slices.Sort(links)
	links = slices.Compact(links)
	slices.Sort(blobs)
	blobs = slices.Compact(blobs)
	return s.inTx(func(ctx context.Context, tx pgx.Tx) error {
		// DO UPDATE, not DO NOTHING: it takes the row lock DeleteManifest takes, so a put
		// and a delete of one digest are serialized.
		if _, err := tx.Exec(ctx, `INSERT INTO manifest_content (digest, raw) VALUES ($1, $2)
			ON CONFLICT (digest) DO UPDATE SET raw = excluded.raw`, d, raw); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO manifests (repo, digest, record) VALUES ($1, $2, $3)
			ON CONFLICT (repo, digest) DO UPDATE SET record = excluded.record`, repo, d, b); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO blob_owners (repo, blob, manifest)
			SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING`, repo, blobs, d); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO links (repo, digest) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, repo, links); err != nil {
			return err
		}
		if tag != "" {
			if _, err := tx.Exec(ctx, upsertTag, repo, tag, d, fetchedAt); err != nil {
				return err
			}
		}
		if rec.Subject != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO referrers (repo, subject, referrer, descriptor) VALUES ($1, $2, $3, $4)
				ON CONFLICT (repo, subject, referrer) DO UPDATE SET descriptor = excluded.descriptor`, repo, rec.Subject.String(), d, desc); err != nil {
				return err
			}
		}
		return nil
	})
}

// Manifest returns the record and exact bytes of a manifest stored under repo.
func (s *Store) Manifest(repo string, dgst digest.Digest) (storage.ManifestRecord, []byte, error) {
	ctx, cancel := opCtx()
	defer cancel()
	var rec storage.ManifestRecord
	var b, raw []byte
	err := s.pool.QueryRow(ctx, `SELECT m.record, c.raw FROM manifests m JOIN manifest_content c ON c.digest = m.digest
		WHERE m.repo = $1 AND m.digest = $2`, repo, dgst.String()).Scan(&b, &raw)
	if err != nil {
		return rec, nil, notFound(err)
	}
	return rec, raw, json.Unmarshal(b, &rec)
}

// HasManifest reports whether repo has the manifest dgst without reading its bytes.
func (s *Store) HasManifest(repo string, dgst digest.Digest) (storage.ManifestRecord, bool) {
	ctx, cancel := opCtx()
	defer cancel()
	var rec storage.ManifestRecord
	var b []byte
	if err := s.pool.QueryRow(ctx, `SELECT record FROM manifests WHERE repo = $1 AND digest = $2`, repo, dgst.String()).Scan(&b); err != nil {
		return rec, false
	}
	return rec, json.Unmarshal(b, &rec) == nil
}

// Referrers lists the stored manifests of repo whose subject is subject, by digest.
func (s *Store) Referrers(repo string, subject digest.Digest) ([]storage.Descriptor, error) {
	ctx, cancel := opCtx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT descriptor FROM referrers WHERE repo = $1 AND subject = $2 ORDER BY referrer`, repo, subject.String())
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.Descriptor, error) {
		var b []byte
		var d storage.Descriptor
		if err := r.Scan(&b); err != nil {
			return d, err
		}
		return d, json.Unmarshal(b, &d)
	})
	if err != nil || len(out) == 0 {
		return nil, listErr(err)
	}
	return out, nil
}

// Owners lists the manifests of repo that reference blob, by digest.
func (s *Store) Owners(repo string, blob digest.Digest) ([]digest.Digest, error) {
	ds, err := s.texts(`SELECT manifest FROM blob_owners WHERE repo = $1 AND blob = $2 ORDER BY manifest`, repo, blob.String())
	var out []digest.Digest
	for _, d := range ds {
		out = append(out, digest.Digest(d))
	}
	return out, err
}

// listErr wraps the error of a listing, where finding nothing is no error.
func listErr(err error) error {
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

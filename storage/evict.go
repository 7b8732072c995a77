package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var bucketPulled = []byte("last-pulled") // repo\x00digest → unix nanoseconds of the last pull

// Image is one manifest of one repository, as eviction sees it.
type Image struct {
	Repository string
	Digest     digest.Digest
	StoredAt   time.Time
	LastPulled time.Time // zero: never pulled since it was stored
	// Raw is the manifest, to find what it references.
	Raw []byte
}

// Used is when the image was last wanted: pulled, else stored.
func (i Image) Used() time.Time {
	if i.LastPulled.After(i.StoredAt) {
		return i.LastPulled
	}
	return i.StoredAt
}

// MarkPulled records pulls (repo\x00digest → time), in one transaction for many.
func (s *boltMeta) MarkPulled(pulls map[string]time.Time) error {
	if len(pulls) == 0 {
		return nil
	}
	for k := range pulls {
		if _, _, err := SplitPullKey(k); err != nil {
			return err
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPulled)
		if err != nil {
			return err
		}
		for k, t := range pulls {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(t.UnixNano()))
			if err := b.Put([]byte(k), v[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// PullKey is the MarkPulled key of a repository's manifest.
func PullKey(repo string, dgst digest.Digest) string { return string(key(repo, dgst.String())) }

// SplitPullKey is the repository and digest of a PullKey; an error for anything else.
func SplitPullKey(k string) (repo string, dgst digest.Digest, err error) {
	repo, d, ok := strings.Cut(k, "\x00")
	if !ok || repo == "" || digest.Digest(d).Validate() != nil {
		return "", "", fmt.Errorf("storage: %q is not a PullKey(repository, digest)", k)
	}
	return repo, digest.Digest(d), nil
}

// Images lists every stored manifest with its use times.
func (s *boltMeta) Images() ([]Image, error) {
	var out []Image
	err := s.db.View(func(tx *bolt.Tx) error {
		pulled := tx.Bucket(bucketPulled)
		content := tx.Bucket(bucketManifestContent)
		return tx.Bucket(bucketManifests).ForEach(func(k, v []byte) error {
			repo, dg, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return nil
			}
			var rec ManifestRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			img := Image{Repository: string(repo), Digest: digest.Digest(dg), StoredAt: rec.StoredAt, Raw: bytes.Clone(content.Get(dg))}
			if pulled != nil {
				if p := pulled.Get(k); len(p) == 8 {
					img.LastPulled = time.Unix(0, int64(binary.BigEndian.Uint64(p)))
				}
			}
			out = append(out, img)
			return nil
		})
	})
	return out, err
}

// DeleteManifest forgets a repository's manifest: its record, link, last pull, the tags
// of that repository pointing at it and its referrer entry. The bytes, verdict and
// report stay while another repository still holds the digest.
func (s *boltMeta) DeleteManifest(repo string, dgst digest.Digest) (orphaned bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		k := key(repo, dgst.String())
		var rec ManifestRecord
		if v := tx.Bucket(bucketManifests).Get(k); v != nil {
			_ = json.Unmarshal(v, &rec)
		}
		if err := deleteOwners(tx, repo, dgst, tx.Bucket(bucketManifestContent).Get([]byte(dgst.String()))); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketManifests, bucketLinks, bucketJudgements} {
			if err := tx.Bucket(b).Delete(k); err != nil {
				return err
			}
		}
		if p := tx.Bucket(bucketPulled); p != nil {
			if err := p.Delete(k); err != nil {
				return err
			}
		}
		if rec.Subject != "" {
			if err := tx.Bucket(bucketReferrers).Delete(key(repo, rec.Subject.String(), dgst.String())); err != nil {
				return err
			}
		}
		tags := tx.Bucket(bucketTags).Cursor()
		prefix := key(repo, "")
		for tk, tv := tags.Seek(prefix); tk != nil && bytes.HasPrefix(tk, prefix); tk, tv = tags.Next() {
			var t TagRecord
			if json.Unmarshal(tv, &t) == nil && t.Digest == dgst {
				if err := tags.Delete(); err != nil {
					return err
				}
			}
		}
		// Does any repository still hold this digest?
		suffix := []byte("\x00" + dgst.String())
		held := false
		_ = tx.Bucket(bucketManifests).ForEach(func(mk, _ []byte) error {
			if bytes.HasSuffix(mk, suffix) {
				held = true
			}
			return nil
		})
		if !held {
			orphaned = true
			for _, b := range [][]byte{bucketManifestContent, bucketVerdicts, bucketReports} {
				if err := tx.Bucket(b).Delete([]byte(dgst.String())); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return orphaned, err
}

// Unlink forgets every repository's link to dgst (its content is gone).
func (s *boltMeta) Unlink(dgst digest.Digest) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLinks).Cursor()
		suffix := []byte("\x00" + dgst.String())
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.HasSuffix(k, suffix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Buckets of the metadata database. Keys are "<repository>\x00<rest>": repository names
// cannot contain NUL, so a prefix scan over one repository is exact.
var (
	bucketManifests = []byte("manifests") // repo\x00digest → ManifestRecord
	bucketTags      = []byte("tags")      // repo\x00tag → TagRecord
	bucketLinks     = []byte("links")     // repo\x00digest → "" (blob seen in repo)
	bucketReferrers = []byte("referrers") // repo\x00subject\x00referrer → Descriptor
	// Manifest bytes are small and read on every pull: they live here, by digest, rather
	// than in the blob store, whose reader is built for layers.
	bucketManifestContent = []byte("manifest-content") // digest → exact bytes
)

func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketManifests, bucketTags, bucketLinks, bucketReferrers, bucketManifestContent, bucketVerdicts, bucketReports, bucketJudgements, bucketOwners, bucketPulled, bucketRobots, bucketBaselines, bucketHolds} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("storage: create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}

func key(parts ...string) []byte {
	return []byte(joinNUL(parts))
}

func joinNUL(parts []string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(p)
	}
	return b.String()
}

// Descriptor describes a manifest as the referrers API lists it.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// ManifestRecord is what the store knows about a manifest in one repository.
type ManifestRecord struct {
	Descriptor
	Subject  digest.Digest `json:"subject,omitempty"`
	StoredAt time.Time     `json:"storedAt"`
}

// TagRecord is a tag's last known digest and when it was resolved upstream.
type TagRecord struct {
	Digest    digest.Digest `json:"digest"`
	FetchedAt time.Time     `json:"fetchedAt"`
}

func (s *boltMeta) put(bucket, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, b) })
}

func (s *boltMeta) get(bucket, k []byte, v any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get(k)
		if b == nil {
			return ErrNotFound
		}
		return json.Unmarshal(b, v)
	})
}

// Tag returns the last known resolution of repo:tag, or ErrNotFound.
func (s *boltMeta) Tag(repo, tag string) (TagRecord, error) {
	var t TagRecord
	err := s.get(bucketTags, key(repo, tag), &t)
	return t, err
}

// SetTag records that repo:tag resolved to dgst at fetchedAt.
func (s *boltMeta) SetTag(repo, tag string, dgst digest.Digest, fetchedAt time.Time) error {
	return s.put(bucketTags, key(repo, tag), TagRecord{Digest: dgst, FetchedAt: fetchedAt})
}

// Tags lists the tags of repo that the store has seen, sorted.
func (s *boltMeta) Tags(repo string) ([]string, error) {
	var tags []string
	prefix := key(repo, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTags).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			tags = append(tags, string(k[len(prefix):]))
		}
		return nil
	})
	sort.Strings(tags)
	return tags, err
}

// Link records that dgst is content of repo, so it may be served under that name.
func (s *boltMeta) Link(repo string, dgst digest.Digest) error {
	if s.Linked(repo, dgst) {
		return nil // a read, not a write transaction and its fsync
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLinks).Put(key(repo, dgst.String()), nil) })
}

// Linked reports whether dgst was seen as content of repo.
func (s *boltMeta) Linked(repo string, dgst digest.Digest) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketLinks).Get(key(repo, dgst.String())) != nil
		return nil
	})
	return found
}

// PutManifest stores a manifest's exact bytes (after verifying them against rec.Digest)
// and records it, its link and, when it has a subject, its referrer entry under repo, in
// one transaction. refs are the blobs the manifest references: content a verified
// manifest of repo names is repo's, so they are linked to repo too.
func (s *boltMeta) PutManifest(repo string, rec ManifestRecord, raw []byte, refs ...digest.Digest) error {
	return s.PutTaggedManifest(repo, "", time.Time{}, rec, raw, refs...)
}

// PutTaggedManifest is PutManifest that also records repo:tag → the manifest, resolved
// at fetchedAt, in the same transaction. An empty tag records no tag.
func (s *boltMeta) PutTaggedManifest(repo, tag string, fetchedAt time.Time, rec ManifestRecord, raw []byte, refs ...digest.Digest) error {
	if err := rec.Digest.Validate(); err != nil {
		return err
	}
	if rec.Digest.Algorithm().FromBytes(raw) != rec.Digest {
		return fmt.Errorf("%w: manifest %s", ErrDigestMismatch, rec.Digest)
	}
	if rec.StoredAt.IsZero() {
		rec.StoredAt = time.Now().UTC()
	}
	rec.Size = int64(len(raw))
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	d, err := json.Marshal(rec.Descriptor)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketManifestContent).Put([]byte(rec.Digest.String()), raw); err != nil {
			return err
		}
		if err := tx.Bucket(bucketManifests).Put(key(repo, rec.Digest.String()), b); err != nil {
			return err
		}
		if err := putOwners(tx, repo, rec.Digest, raw); err != nil {
			return err
		}
		links := tx.Bucket(bucketLinks)
		for _, d := range append(refs, rec.Digest) {
			if err := links.Put(key(repo, d.String()), nil); err != nil {
				return err
			}
		}
		if tag != "" {
			t, err := json.Marshal(TagRecord{Digest: rec.Digest, FetchedAt: fetchedAt})
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketTags).Put(key(repo, tag), t); err != nil {
				return err
			}
		}
		if rec.Subject != "" {
			return tx.Bucket(bucketReferrers).Put(key(repo, rec.Subject.String(), rec.Digest.String()), d)
		}
		return nil
	})
}

// Manifest returns the record and exact bytes of a manifest stored under repo.
func (s *boltMeta) Manifest(repo string, dgst digest.Digest) (ManifestRecord, []byte, error) {
	var rec ManifestRecord
	var raw []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketManifests).Get(key(repo, dgst.String()))
		c := tx.Bucket(bucketManifestContent).Get([]byte(dgst.String()))
		if b == nil || c == nil {
			return ErrNotFound
		}
		raw = append([]byte(nil), c...) // bbolt memory is valid only inside the transaction
		return json.Unmarshal(b, &rec)
	})
	return rec, raw, err
}

// HasManifest reports whether repo has the manifest dgst without reading its bytes.
func (s *boltMeta) HasManifest(repo string, dgst digest.Digest) (ManifestRecord, bool) {
	var rec ManifestRecord
	err := s.get(bucketManifests, key(repo, dgst.String()), &rec)
	return rec, err == nil
}

// Referrers lists the stored manifests of repo whose subject is subject.
func (s *boltMeta) Referrers(repo string, subject digest.Digest) ([]Descriptor, error) {
	var out []Descriptor
	prefix := key(repo, subject.String(), "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReferrers).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var d Descriptor
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// TagsOf lists repo's tags that point at dgst.
func (s *boltMeta) TagsOf(repo string, dgst digest.Digest) ([]string, error) {
	var tags []string
	prefix := key(repo, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTags).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var t TagRecord
			if json.Unmarshal(v, &t) == nil && t.Digest == dgst {
				tags = append(tags, string(k[len(prefix):]))
			}
		}
		return nil
	})
	return tags, err
}

package storage

import (
	"bytes"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Scan facts and reports are kept by manifest digest alone: they describe content,
// whoever asked for it. Judgements are kept per repository and digest: the policy that
// applies, and so the verdict, depends on the repository. The store does not interpret
// any of them: their shape belongs to the gate that writes them.
var (
	bucketVerdicts   = []byte("verdicts")   // manifest digest → scan facts (JSON)
	bucketReports    = []byte("reports")    // manifest digest → scan report (JSON)
	bucketJudgements = []byte("judgements") // repo\x00digest → judgement (JSON)
)

// PutJudgement stores the judgement of a manifest digest under a repository.
func (s *boltMeta) PutJudgement(repo string, dgst digest.Digest, rec []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJudgements).Put(key(repo, dgst.String()), rec) })
}

// PutJudgements stores many judgements (PullKey(repo, digest) → record) in one
// transaction; a key that is not a PullKey fails them all.
func (s *boltMeta) PutJudgements(recs map[string][]byte) error {
	if len(recs) == 0 {
		return nil
	}
	for k := range recs {
		if _, _, err := SplitPullKey(k); err != nil {
			return err
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJudgements)
		for k, v := range recs {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Judgement returns the judgement of a digest under a repository, or ErrNotFound.
func (s *boltMeta) Judgement(repo string, dgst digest.Digest) ([]byte, error) {
	return s.getRaw(bucketJudgements, key(repo, dgst.String()))
}

// Judgements calls fn for every stored judgement, in (repository, digest) order.
func (s *boltMeta) Judgements(fn func(repo string, dgst digest.Digest, rec []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJudgements).ForEach(func(k, v []byte) error {
			repo, d, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return nil
			}
			return fn(string(repo), digest.Digest(d), bytes.Clone(v))
		})
	})
}

// PutVerdict stores the verdict record of a manifest digest.
func (s *boltMeta) PutVerdict(dgst digest.Digest, rec []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketVerdicts).Put([]byte(dgst), rec) })
}

// PutVerdictAndReport stores a verdict record and its scan report in one transaction.
func (s *boltMeta) PutVerdictAndReport(dgst digest.Digest, rec, report []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketReports).Put([]byte(dgst), report); err != nil {
			return err
		}
		return tx.Bucket(bucketVerdicts).Put([]byte(dgst), rec)
	})
}

// Verdict returns the verdict record of a manifest digest, or ErrNotFound.
func (s *boltMeta) Verdict(dgst digest.Digest) ([]byte, error) {
	return s.getRaw(bucketVerdicts, []byte(dgst))
}

// Report returns the scan report of a manifest digest, or ErrNotFound.
func (s *boltMeta) Report(dgst digest.Digest) ([]byte, error) {
	return s.getRaw(bucketReports, []byte(dgst))
}

// Verdicts calls fn for every stored verdict record, in digest order.
func (s *boltMeta) Verdicts(fn func(dgst digest.Digest, rec []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVerdicts).ForEach(func(k, v []byte) error {
			return fn(digest.Digest(k), bytes.Clone(v))
		})
	})
}

func (s *boltMeta) getRaw(bucket, k []byte) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(k)
		if v == nil {
			return ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

var bucketBaselines = []byte("baselines") // baselineKey time → baseline comparison (JSON)

// baselineKey is RFC 3339 with all nine fraction digits: keys sort as their times do
// (RFC3339Nano drops trailing zeros, and "05Z" sorts after "05.5Z"). Older keys in
// RFC3339Nano still parse.
const baselineKey = "2006-01-02T15:04:05.000000000Z07:00"

// PutBaseline keeps a baseline comparison; only the newest ten are kept.
func (s *boltMeta) PutBaseline(at time.Time, b []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketBaselines)
		if err := bk.Put([]byte(at.UTC().Format(baselineKey)), b); err != nil {
			return err
		}
		// Count with a cursor: Stats does not see deletes of the same transaction.
		n := 0
		c := bk.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		var drop [][]byte
		for k, _ := c.First(); k != nil && n-len(drop) > 10; k, _ = c.Next() {
			drop = append(drop, bytes.Clone(k))
		}
		for _, k := range drop {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// LatestBaseline returns the newest baseline comparison and when it was stored.
func (s *boltMeta) LatestBaseline() (time.Time, []byte, error) {
	var at time.Time
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketBaselines).Cursor().Last()
		if k == nil {
			return ErrNotFound
		}
		at, _ = time.Parse(time.RFC3339Nano, string(k))
		out = bytes.Clone(v)
		return nil
	})
	return at, out, err
}

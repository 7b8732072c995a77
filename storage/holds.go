package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var bucketHolds = []byte("holds") // holder → unix nanoseconds of Until, then digests, one a line

// HoldsKept is how long after it expired a holder's set is kept (for nothing: it holds
// nothing then) before another holder's publish removes it: a replica that died leaves
// one small record behind for that long.
const HoldsKept = time.Hour

// HoldSet is what one holder (a replica) published: the digests it is using, until when.
// Past Until the set holds nothing: a replica that stops publishing lets go by itself.
type HoldSet struct {
	Until   time.Time
	Digests []digest.Digest // sorted
}

// CheckHolds refuses a publish the store could not give back as it was.
func CheckHolds(holder string, ds []digest.Digest) error {
	if holder == "" {
		return fmt.Errorf("storage: holds: empty holder")
	}
	for _, d := range ds {
		if d.Validate() != nil {
			return fmt.Errorf("storage: holds: %q is not a digest", d)
		}
	}
	return nil
}

// sortedDigests is ds sorted, without duplicates.
func sortedDigests(ds []digest.Digest) []digest.Digest {
	out := slices.Clone(ds)
	slices.Sort(out)
	return slices.Compact(out)
}

// PublishHolds replaces holder's set with ds until until (an empty ds holds nothing but
// says the holder is alive), and removes the sets of holders that expired HoldsKept
// before until.
func (s *boltMeta) PublishHolds(holder string, ds []digest.Digest, until time.Time) error {
	if err := CheckHolds(holder, ds); err != nil {
		return err
	}
	var v bytes.Buffer
	var at [8]byte
	binary.BigEndian.PutUint64(at[:], uint64(until.UnixNano()))
	v.Write(at[:])
	for i, d := range sortedDigests(ds) {
		if i > 0 {
			v.WriteByte('\n')
		}
		v.WriteString(d.String())
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketHolds)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, old := c.First(); k != nil; k, old = c.Next() {
			if len(old) >= 8 && string(k) != holder && holdUntil(old).Before(until.Add(-HoldsKept)) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return b.Put([]byte(holder), v.Bytes())
	})
}

func holdUntil(v []byte) time.Time { return time.Unix(0, int64(binary.BigEndian.Uint64(v[:8]))) }

// Holds are the sets of every holder that has not expired at now (Until after now).
func (s *boltMeta) Holds(now time.Time) (map[string]HoldSet, error) {
	out := map[string]HoldSet{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHolds)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(v) < 8 {
				return nil
			}
			set := HoldSet{Until: holdUntil(v)}
			if !set.Until.After(now) {
				return nil
			}
			if rest := string(v[8:]); rest != "" {
				for _, d := range strings.Split(rest, "\n") {
					set.Digests = append(set.Digests, digest.Digest(d))
				}
			}
			out[string(k)] = set
			return nil
		})
	})
	return out, err
}

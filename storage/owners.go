package storage

import (
	"bytes"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// bucketOwners says which manifests of a repository reference a blob (config or layer):
// a blob is served under a repository only for a manifest there that the gate allows.
var bucketOwners = []byte("blob-owners") // repo\x00blob\x00manifest → ""

// Owners lists the manifests of repo that reference blob.
func (s *boltMeta) Owners(repo string, blob digest.Digest) ([]digest.Digest, error) {
	var out []digest.Digest
	prefix := key(repo, blob.String(), "")
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOwners).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, digest.Digest(k[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// ManifestBlobs are the blobs a manifest's bytes reference: its config and layers (an
// index references none). Every Metadata records the manifest as their owner.
func ManifestBlobs(raw []byte) []digest.Digest {
	var m struct {
		Config *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	var out []digest.Digest
	if m.Config != nil && m.Config.Digest.Validate() == nil {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		if l.Digest.Validate() == nil {
			out = append(out, l.Digest)
		}
	}
	return out
}

// putOwners records manifest as an owner of the blobs its bytes reference, in tx.
func putOwners(tx *bolt.Tx, repo string, manifest digest.Digest, raw []byte) error {
	b := tx.Bucket(bucketOwners)
	for _, blob := range ManifestBlobs(raw) {
		if err := b.Put(key(repo, blob.String(), manifest.String()), nil); err != nil {
			return err
		}
	}
	return nil
}

// deleteOwners forgets manifest as an owner, in tx.
func deleteOwners(tx *bolt.Tx, repo string, manifest digest.Digest, raw []byte) error {
	b := tx.Bucket(bucketOwners)
	for _, blob := range ManifestBlobs(raw) {
		if err := b.Delete(key(repo, blob.String(), manifest.String())); err != nil {
			return err
		}
	}
	return nil
}

// backfillOwners records the owners of manifests stored before owners were kept.
func backfillOwners(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketOwners).Cursor().First(); k != nil {
			return nil
		}
		content := tx.Bucket(bucketManifestContent)
		return tx.Bucket(bucketManifests).ForEach(func(k, _ []byte) error {
			repo, d, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return nil
			}
			return putOwners(tx, string(repo), digest.Digest(d), content.Get(d))
		})
	})
}

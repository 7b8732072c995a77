package storage

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketRobots = []byte("robots") // name → Robot

// Robot is a pull-only account for machines. Only a hash of its token is kept.
type Robot struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"` // hex sha256 of the token
	Scopes  []string  `json:"scopes,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

// PutRobot creates or replaces a robot.
func (s *boltMeta) PutRobot(r Robot) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRobots).Put([]byte(r.Name), b) })
}

// AddRobot creates a robot whose name is not taken, or returns ErrExists.
func (s *boltMeta) AddRobot(r Robot) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketRobots)
		if bk.Get([]byte(r.Name)) != nil {
			return fmt.Errorf("robot %q: %w", r.Name, ErrExists)
		}
		return bk.Put([]byte(r.Name), b)
	})
}

// Robot returns a robot by name, or ErrNotFound.
func (s *boltMeta) Robot(name string) (Robot, error) {
	var r Robot
	err := s.get(bucketRobots, []byte(name), &r)
	return r, err
}

// Robots lists the robots, by name.
func (s *boltMeta) Robots() ([]Robot, error) {
	var out []Robot
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRobots).ForEach(func(_, v []byte) error {
			var r Robot
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DeleteRobot revokes a robot; ErrNotFound when there is none of that name.
func (s *boltMeta) DeleteRobot(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRobots)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
}

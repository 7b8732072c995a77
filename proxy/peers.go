package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/storage"
)

// peers carries what one replica changes to the others sharing its store, within
// seconds: storage/postgres implements it with LISTEN/NOTIFY and a table of shared
// values. A store only one process opens (bbolt) has none: there is no one to tell.
type peers interface {
	Notify(ctx context.Context, topic, payload string) error
	// Listen calls fn with the other replicas' changes until ctx ends; topic "" says
	// it (re)connected and changes may have been missed.
	Listen(ctx context.Context, fn func(topic, payload string)) error
	PutValue(ctx context.Context, namespace, key string, value []byte) error
	Value(ctx context.Context, namespace, key string) ([]byte, error)
}

// What replicas tell each other.
const (
	topicFacts  = "facts"  // payload: a digest whose scan facts were written
	topicRobots = "robots" // a robot was added or revoked
	topicPolicy = "policy" // payload: the hash of the policy applied, stored as sharedPolicy
)

// The policy last applied on any replica is kept in the shared store, not only
// announced: a replica told "re-read your file" would read a ConfigMap the kubelet has
// not updated yet (it syncs each pod on its own schedule, up to a minute apart), and a
// policy set without a file (the API, tests) has nothing to re-read. The file stays the
// source: a replica starts with its own, and a reload anywhere is then in force
// everywhere.
const sharedPolicy = "current"

// peerTimeout bounds one notification or shared read.
const peerTimeout = 5 * time.Second

// startPeers listens for the other replicas' changes, if the store is shared, and
// returns once listening (or after peerTimeout: changes are then picked up when it
// connects).
func (s *Server) startPeers() {
	p := s.peers
	if p == nil {
		return
	}
	s.auth.OnRobotsChange(func() { s.tell(topicRobots, "") })
	listening := make(chan struct{})
	var once bool
	s.goBackground(func(ctx context.Context) {
		_ = p.Listen(ctx, func(topic, payload string) {
			if topic == "" && !once {
				once = true
				close(listening)
				return // nothing to catch up on at start
			}
			s.fromPeers(ctx, topic, payload)
		})
	})
	select {
	case <-listening:
	case <-time.After(peerTimeout):
		s.log.Warn("not yet listening for the other replicas' changes; they reach this one once it is")
	}
}

// tell notifies the other replicas; a failure is logged (their memory catches up on
// their next reconnection or restart; what they serve is read from the store).
func (s *Server) tell(topic, payload string) {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	if err := s.peers.Notify(ctx, topic, payload); err != nil {
		s.log.Warn("could not tell the other replicas of a change", "topic", topic, "err", err)
	}
}

// fromPeers applies another replica's change to what this one keeps in memory.
func (s *Server) fromPeers(ctx context.Context, topic, payload string) {
	switch topic {
	case topicFacts:
		if s.gate != nil {
			s.gate.FactsChanged(digest.Digest(payload))
		}
	case topicRobots:
		s.robotsFromPeers()
	case topicPolicy:
		s.policyFromPeers(ctx)
	case "": // reconnected: anything may have changed meanwhile
		if s.gate != nil {
			s.gate.PeersChanged()
		}
		s.robotsFromPeers()
		s.policyFromPeers(ctx)
	}
}

func (s *Server) robotsFromPeers() {
	if err := s.auth.RobotsChanged(); err != nil {
		s.log.Warn("could not count the robots another replica changed", "err", err)
	}
}

// publishPolicy stores pol as the policy in force and tells the other replicas.
func (s *Server) publishPolicy(pol *policy.Set) error {
	if s.peers == nil {
		return nil
	}
	b, err := json.Marshal(pol)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	if err := s.peers.PutValue(ctx, topicPolicy, sharedPolicy, b); err != nil {
		return fmt.Errorf("share the policy with the other replicas: %w", err)
	}
	return s.peers.Notify(ctx, topicPolicy, pol.Hash())
}

// policyFromPeers adopts the policy another replica applied last.
func (s *Server) policyFromPeers(ctx context.Context) {
	if s.gate == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	b, err := s.peers.Value(ctx, topicPolicy, sharedPolicy)
	if errors.Is(err, storage.ErrNotFound) {
		return
	}
	pol := &policy.Set{}
	if err == nil {
		err = json.Unmarshal(b, pol)
	}
	if err == nil {
		err = pol.Validate()
	}
	if err != nil {
		s.log.Error("the policy another replica applied cannot be read: keeping the running policy", "err", err)
		return
	}
	if pol.Hash() != s.gate.PolicyHash() {
		s.gate.AdoptPolicy(pol)
	}
}

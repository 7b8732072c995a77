package gate

import (
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
)

// Replicas sharing a store each keep judgements in memory (the memo) and may wait for a
// scan another replica runs. What one changes reaches the others through the server:
// the gate tells it of every facts record it writes (Deps.Changed), and it calls
// FactsChanged, PeersChanged and AdoptPolicy with what the other replicas did.

// FactsChanged is told that another replica wrote dgst's facts: judgements remembered
// from the old ones are dropped, and a pull waiting for that replica's scan looks again.
func (g *Gate) FactsChanged(dgst digest.Digest) {
	g.memo.forget(dgst)
	g.wakeups.wake(dgst)
}

// PeersChanged is told that changes from other replicas may have been missed (the
// connection that carries them was lost): everything remembered is dropped.
func (g *Gate) PeersChanged() {
	g.memo.clear()
	g.wakeups.wakeAll()
}

// AdoptPolicy swaps in a policy another replica applied. That replica judged every
// recorded verdict again already (judgements are shared): this one only judges by it.
func (g *Gate) AdoptPolicy(pol *policy.Set) {
	g.policy.Store(pol)
	g.log.Info("policy applied by another replica", "policy_hash", pol.Hash())
}

// PolicyHash identifies the policy in force.
func (g *Gate) PolicyHash() string { return g.policy.Load().Hash() }

// announce tells the other replicas that dgst's facts changed.
func (g *Gate) announce(dgst digest.Digest) {
	if g.changed != nil {
		g.changed(dgst)
	}
}

// wakeups wake the pulls waiting for a digest's facts another replica is writing.
type wakeups struct {
	mu sync.Mutex
	ch map[digest.Digest]chan struct{}
}

// wait returns a channel closed when dgst's facts change.
func (w *wakeups) wait(dgst digest.Digest) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.ch[dgst]
	if !ok {
		if w.ch == nil {
			w.ch = map[digest.Digest]chan struct{}{}
		}
		c = make(chan struct{})
		w.ch[dgst] = c
	}
	return c
}

func (w *wakeups) wake(dgst digest.Digest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.ch[dgst]; ok {
		close(c)
		delete(w.ch, dgst)
	}
}

func (w *wakeups) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.ch {
		close(c)
	}
	w.ch = nil
}

package gc

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/storage"
)

// On a shared store every replica publishes its holds — the digests its requests and
// scans use, and the images it saw pulled within the grace period whose pull times are
// still buffered — under its own holder name, every heartbeat and soon after a digest
// becomes newly held. A set lasts holdBeats heartbeats: a replica that dies lets go by
// itself.
const (
	defaultHeartbeat = 5 * time.Second
	holdBeats        = 3
	// debounce gathers the digests newly held in a burst of requests into one write.
	debounce = 100 * time.Millisecond
)

// newHolder names this process among the holders: the host and a random part.
func newHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%s", host, rand.Text()[:12])
}

func (c *Collector) heartbeat() time.Duration {
	if c.Heartbeat > 0 {
		return c.Heartbeat
	}
	return defaultHeartbeat
}

// NewlyHeld tells the collector a digest became held (a request, a scan or a pull began
// using it): on a shared store its holds are published soon. It never blocks.
func (c *Collector) NewlyHeld() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Publish publishes this replica's holds every heartbeat, and within debounce of a
// digest becoming newly held, until ctx ends; then it withdraws them. Only on a shared
// store: one process alone checks its own leases.
func (c *Collector) Publish(ctx context.Context) {
	hb := c.heartbeat()
	wait := min(debounce, hb)
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		if err := c.publish(); err != nil {
			c.Log.Warn("could not publish the digests in use to the other replicas", "err", err)
		}
		select {
		case <-ctx.Done():
			// Expired at once: a collection elsewhere does not wait for this replica.
			if err := c.Store.PublishHolds(c.holder, nil, time.Now()); err != nil {
				c.Log.Warn("could not withdraw the digests in use", "err", err)
			}
			return
		case <-t.C:
		case <-c.poke:
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				continue
			}
		}
		select { // what the next publish takes in needs no second one
		case <-c.poke:
		default:
		}
	}
}

// publish writes what this replica holds now, until holdBeats heartbeats from now.
func (c *Collector) publish() error {
	ds := c.InUse.Holding()
	c.flushMu.Lock()
	pulls := c.pulls.Snapshot()
	c.flushMu.Unlock()
	now, grace := c.Now(), c.Config.Grace
	for k, at := range pulls {
		if now.Sub(at) >= grace {
			continue // a collection here would not spare it either
		}
		if _, d, err := storage.SplitPullKey(k); err == nil {
			ds = append(ds, d)
		}
	}
	return c.Store.PublishHolds(c.holder, ds, time.Now().Add(holdBeats*c.heartbeat()))
}

// holds says what a collection must spare as in use: this process's leases and, on a
// shared store, every other replica's published holds (the sets also returned).
func (c *Collector) holds() (func(digest.Digest) bool, map[string]storage.HoldSet, error) {
	if !c.Shared {
		return c.InUse.Held, nil, nil
	}
	sets, err := c.Store.Holds(time.Now())
	if err != nil {
		return nil, nil, err
	}
	shared := map[digest.Digest]bool{}
	for h, s := range sets {
		if h == c.holder {
			// This replica's own set is a snapshot of what its leases and buffered pulls
			// said up to a heartbeat ago: they are read live instead.
			continue
		}
		for _, d := range s.Digests {
			shared[d] = true
		}
	}
	return func(d digest.Digest) bool { return shared[d] || c.InUse.Held(d) }, sets, nil
}

// settle waits until every other replica that had published holds when the candidates
// were chosen (before) published twice since — the second set was taken after the
// candidates were, so it shows all that replica used then — or let its set expire. It
// waits at most until the last of those sets expires.
func (c *Collector) settle(ctx context.Context, before map[string]storage.HoldSet) error {
	last := map[string]time.Time{}
	for h, s := range before {
		if h != c.holder {
			last[h] = s.Until
		}
	}
	newer := map[string]int{}
	poll := max(c.heartbeat()/10, 10*time.Millisecond)
	for len(last) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		sets, err := c.Store.Holds(time.Now())
		if err != nil {
			return err
		}
		for h, until := range last {
			s, ok := sets[h]
			switch {
			case !ok: // expired or withdrawn
				delete(last, h)
			case s.Until.After(until):
				last[h] = s.Until
				if newer[h]++; newer[h] == 2 {
					delete(last, h)
				}
			}
		}
	}
	return nil
}

// again is a collection's second phase on a shared store: once the replicas settled,
// pulls flushed and holds read again, the images are chosen again from what is stored
// now, among first's candidates only, sparing those used or held since; a blob goes only
// if it was a candidate too (keep says which were not) and is not held now.
func (c *Collector) again(ctx context.Context, cfg config.GCConfig, first plan, before map[string]storage.HoldSet, size map[digest.Digest]int64, total int64, keep func(storage.BlobInfo) bool) (plan, func(storage.BlobInfo) bool, error) {
	if err := c.settle(ctx, before); err != nil {
		return plan{}, nil, err
	}
	if err := c.FlushPulls(); err != nil {
		return plan{}, nil, err
	}
	images, err := c.Store.Images()
	if err != nil {
		return plan{}, nil, err
	}
	held, _, err := c.holds()
	if err != nil {
		return plan{}, nil, err
	}
	candidates := first.gone()
	now := c.Now()
	spare := func(img storage.Image) bool {
		used, ok := candidates[storage.PullKey(img.Repository, img.Digest)]
		return !ok || img.Used().After(used) || now.Sub(img.Used()) < cfg.Grace || held(img.Digest)
	}
	p := choose(cfg, images, size, total, now, spare)
	return p, func(b storage.BlobInfo) bool { return first.count[b.Digest] > 0 || keep(b) || held(b.Digest) }, nil
}

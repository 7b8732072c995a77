package gate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Claims decide which of the replicas sharing a store scans a digest: the one holding
// its claim. A claim lapses when its holder has not renewed it for ttl (the replica
// died mid-scan), and another replica takes the scan over. storage/postgres implements
// it on the shared database; a store only one process opens (bbolt) uses localClaims.
type Claims interface {
	// Claim takes key for ttl unless another holder's claim on it is still live.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Renew extends the caller's own claim; false when it lapsed and was taken.
	Renew(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Release gives the caller's claim up.
	Release(ctx context.Context, key string) error
}

// localClaims are claims among the goroutines of one process: enough where the store is
// this process's alone, beside the singleflight that already runs one scan per digest.
type localClaims struct {
	mu   sync.Mutex
	held map[string]bool
}

func (c *localClaims) Claim(_ context.Context, key string, _ time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[key] {
		return false, nil
	}
	if c.held == nil {
		c.held = map[string]bool{}
	}
	c.held[key] = true
	return true, nil
}

func (c *localClaims) Renew(_ context.Context, key string, _ time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[key], nil
}

func (c *localClaims) Release(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.held, key)
	return nil
}

// pollFacts bounds how long a replica waiting for another's scan goes without looking
// at the facts (the scanning replica's change notification wakes it sooner).
const pollFacts = time.Second

// scanOnce is the one scan of dgst across every replica sharing the store, run in this
// process's singleflight: the replica that claims it ingests and scans; the others wait
// for the facts it saves — facts newer than prev (what the caller saw, nil for none) —
// and claim it in turn when its holder let the claim lapse before saving them.
func (g *Gate) scanOnce(ctx context.Context, source string, dgst digest.Digest, mediaType string, prev *Facts) (*Facts, error) {
	key := "scan/" + dgst.String()
	wait := 20 * time.Millisecond
	for {
		ok, err := g.claims.Claim(ctx, key, g.cfg.Lease)
		if err != nil {
			return nil, fmt.Errorf("claim the scan of %s: %w", dgst, err)
		}
		f, ferr := g.load(dgst)
		done := ferr == nil && newer(f, prev)
		if ok {
			if done { // another replica saved them between our look and our claim
				g.release(ctx, key)
				return f, nil
			}
			return g.scanClaimed(ctx, key, source, dgst, mediaType)
		}
		if done {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.wakeups.wait(dgst): // the scanning replica wrote them
		case <-time.After(wait):
		}
		wait = min(2*wait, pollFacts)
	}
}

// newer reports whether facts f are a scan's outcome that prev (nil: none) did not know.
func newer(f, prev *Facts) bool {
	if f.State == statePending {
		return false
	}
	return prev == nil || f.State != prev.State || !f.ScannedAt.Equal(prev.ScannedAt)
}

// scanClaimed scans under a claim, renewing it while the scan runs and releasing it
// after, so another replica waits for this scan instead of running its own.
func (g *Gate) scanClaimed(ctx context.Context, key, source string, dgst digest.Digest, mediaType string) (*Facts, error) {
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(g.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			if ok, err := g.claims.Renew(rctx, key, g.cfg.Lease); err != nil && rctx.Err() == nil {
				g.log.Warn("could not renew the claim on a scan; another replica may take it over", "digest", dgst, "err", err)
			} else if err == nil && !ok {
				g.log.Warn("the claim on a scan lapsed and was taken by another replica", "digest", dgst)
			}
		}
	})
	defer func() {
		stop()
		wg.Wait()
		g.release(ctx, key)
	}()
	return g.scanFacts(ctx, source, dgst, mediaType)
}

// release gives a claim up, also when ctx ended (the server closing): another replica
// then takes an interrupted scan over at once rather than after the lease.
func (g *Gate) release(ctx context.Context, key string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := g.claims.Release(rctx, key); err != nil {
		g.log.Warn("could not release the claim on a scan; it lapses after scan.lease", "key", key, "err", err)
	}
}

package postgres

import (
	"context"
	"fmt"
	"time"
)

// leaderLock is the advisory lock key the leader holds ("goldlead").
const leaderLock int64 = 0x676f6c646c656164

// Lead runs fn while this Store leads the Stores sharing the database: it holds a
// session advisory lock on a connection of its own, tried every retry while another
// Store holds it. The lock lives as long as that session, so a replica that dies loses
// it at once (its connection closes) and another takes over. fn's context ends when ctx
// does or when the lock's connection fails (checked every retry); once fn returns the
// lock is given up and, unless ctx ended, tried for again. Lead returns when ctx ends.
func (s *Store) Lead(ctx context.Context, retry time.Duration, fn func(context.Context)) error {
	for {
		err := s.leadOnce(ctx, retry, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = err // the connection failed: try again on a new one
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

func (s *Store) leadOnce(ctx context.Context, retry time.Duration, fn func(context.Context)) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: lead: %w", err)
	}
	// The session holds the lock: it never goes back to the pool, and closing it
	// releases the lock.
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderLock).Scan(&got); err != nil {
			return fmt.Errorf("postgres: lead: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
	lctx, lost := context.WithCancel(ctx)
	defer lost()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(lctx)
	}()
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
			if err := conn.Ping(ctx); err != nil {
				lost()
				<-done
				return fmt.Errorf("postgres: lead: %w", err)
			}
		}
	}
}

package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// leader elects one replica among those sharing the store: storage/postgres implements
// it with an advisory lock. A store only one process opens (bbolt) needs none: that
// process leads.
type leader interface {
	Lead(ctx context.Context, retry time.Duration, fn func(context.Context)) error
}

// leaderRetry is how often a replica that does not lead tries to, and how often the
// leader checks it still holds the lock.
const leaderRetry = time.Second

// leadership runs the jobs only one replica may run — re-evaluation, prefetch, garbage
// collection — for as long as this replica leads: each term starts every job with a
// context that ends with the term.
type leadership struct {
	leading atomic.Bool
	mu      sync.Mutex
	term    context.Context // nil between terms
	jobs    []func(context.Context)
	wg      sync.WaitGroup
}

// add runs fn in every term from now on, this one included.
func (l *leadership) add(fn func(context.Context)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs = append(l.jobs, fn)
	if l.term != nil {
		l.start(l.term, fn)
	}
}

func (l *leadership) start(ctx context.Context, fn func(context.Context)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn(ctx)
	}()
}

// serve is one term: it starts the jobs and returns when ctx ends and they stopped.
func (l *leadership) serve(ctx context.Context) {
	l.begin(ctx)
	<-ctx.Done()
	l.end()
}

func (l *leadership) begin(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.term = ctx
	l.leading.Store(true)
	for _, fn := range l.jobs {
		l.start(ctx, fn)
	}
}

func (l *leadership) end() {
	l.mu.Lock()
	l.term = nil
	l.leading.Store(false)
	l.mu.Unlock()
	l.wg.Wait()
}

// startLeading campaigns for leadership until the server closes; a process whose store
// is its alone leads from now on (before New returns).
func (s *Server) startLeading() {
	el, ok := s.store.Metadata().(leader)
	if !ok {
		ctx, done := s.life.Background(context.Background())
		s.lead.begin(ctx)
		go func() {
			defer done()
			<-ctx.Done()
			s.lead.end()
		}()
		return
	}
	s.goBackground(func(ctx context.Context) {
		_ = el.Lead(ctx, leaderRetry, func(ctx context.Context) {
			s.log.Info("leading the replicas: re-evaluation, prefetch and garbage collection run here")
			s.lead.serve(ctx)
			s.log.Info("no longer leading the replicas")
		})
	})
}

// Leading reports whether this replica runs the jobs only one replica may run.
func (s *Server) Leading() bool { return s.lead.leading.Load() }

// Lead runs fn whenever this replica leads, with a context that ends when it stops
// leading or the server closes; fn should return then. A store only this process opens
// makes it lead from the start.
func (s *Server) Lead(fn func(context.Context)) { s.lead.add(fn) }

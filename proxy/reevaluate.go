package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// ReevalStats sums up a re-evaluation.
type ReevalStats struct {
	Verdicts int           `json:"verdicts"`
	Flipped  int           `json:"flipped"`
	Failed   int           `json:"failed"`
	Duration time.Duration `json:"duration"`
}

// Reevaluate recomputes every stored verdict with the scanner's current vulnerability
// DB: vulnerabilities are detected again from each image's stored layer analysis (no
// layer is read, nothing is fetched), then judged by the current policy. Verdicts that
// flip are logged, counted and sent to the webhooks.
func (s *Server) Reevaluate(ctx context.Context) (ReevalStats, error) {
	var st ReevalStats
	g := s.scan
	if g == nil {
		return st, fmt.Errorf("no scanning gate")
	}
	rd, ok := g.scanner.(Redetector)
	if !ok {
		return st, fmt.Errorf("the scanner cannot re-detect from stored analysis")
	}
	start := time.Now()
	var recs []*VerdictRecord
	if err := s.store.Verdicts(func(_ digest.Digest, b []byte) error {
		var rec VerdictRecord
		if json.Unmarshal(b, &rec) == nil && rec.final() && rec.Input != nil && rec.ScanKey != nil {
			recs = append(recs, &rec)
		}
		return nil
	}); err != nil {
		return st, err
	}
	st.Verdicts = len(recs)
	s.metrics.reevalRunning.Set(1)
	defer s.metrics.reevalRunning.Set(0)
	s.log.Info("re-evaluating stored verdicts against the vulnerability DB", "verdicts", len(recs))

	var mu sync.Mutex
	done := 0
	work := make(chan *VerdictRecord)
	var wg sync.WaitGroup
	for range max(1, s.cfg.Scan.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range work {
				flipped, err := g.redetect(ctx, rd, rec)
				mu.Lock()
				done++
				if err != nil {
					st.Failed++
					s.log.Warn("re-evaluation failed; the old verdict stays", "repository", rec.Repository, "digest", rec.Digest, "err", err)
				}
				if flipped {
					st.Flipped++
				}
				s.metrics.reevalProgress.Set(float64(done) / float64(len(recs)))
				if done%500 == 0 {
					s.log.Info("re-evaluation progress", "done", done, "of", len(recs))
				}
				mu.Unlock()
			}
		}()
	}
	for _, rec := range recs {
		select {
		case work <- rec:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	st.Duration = time.Since(start)
	s.log.Info("re-evaluation done", "verdicts", st.Verdicts, "flipped", st.Flipped, "failed", st.Failed, "duration", st.Duration.Round(time.Millisecond))
	return st, ctx.Err()
}

// redetect re-detects one image and stores its new verdict; it reports a flip.
func (g *scanGate) redetect(ctx context.Context, rd Redetector, rec *VerdictRecord) (bool, error) {
	dgst := digest.Digest(rec.Digest)
	report, err := g.s.store.Report(dgst)
	if err != nil {
		return false, err
	}
	res, err := rd.Redetect(ctx, rec.ScanKey, report)
	if err != nil {
		return false, err
	}
	next := *rec
	in := *rec.Input
	in.Vulnerabilities, in.OS, in.EOSL = res.Vulnerabilities, res.OS, res.EOSL
	next.Input = &in
	next.DBVersion = res.DBVersion
	next.ScannedAt = time.Now().UTC()
	g.evaluate(&next, g.policy.Load())
	b, err := json.Marshal(&next)
	if err != nil {
		return false, err
	}
	if err := g.s.store.PutVerdictAndReport(dgst, b, res.Report); err != nil {
		return false, err
	}
	g.logFlip(rec, &next)
	return rec.State != next.State, nil
}

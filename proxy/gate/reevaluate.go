package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// ReevalStats sums up a re-evaluation.
type ReevalStats struct {
	// Verdicts is how many digests' facts were made with another DB than the current one
	// and were detected again; Judgements how many (repository, digest) judgements
	// followed, Flipped how many of those changed state.
	Verdicts   int `json:"verdicts"`
	Current    int `json:"current"`
	Judgements int `json:"judgements"`
	// Rescanned counts digests scanned again because their stored analysis was made
	// with other analyzers (or before a Java DB was loaded).
	Rescanned int           `json:"rescanned"`
	Flipped   int           `json:"flipped"`
	Failed    int           `json:"failed"`
	Duration  time.Duration `json:"duration"`
}

// Reevaluate brings every stored digest's facts to the scanner's current vulnerability
// DB: the vulnerabilities of each digest whose facts were made with another DB are
// detected again from its stored layer analysis (no layer is read, nothing is fetched),
// then every judgement of it is made again under the current policy. Verdicts that flip
// are logged, counted and sent to the webhooks. It is driven by the DB version each
// digest's facts record, so a run that was cancelled or failed half way is completed by
// the next one.
func (g *Gate) Reevaluate(ctx context.Context) (ReevalStats, error) {
	var st ReevalStats
	rd, ok := g.scanner.(Redetector)
	if !ok {
		return st, fmt.Errorf("the scanner cannot re-detect from stored analysis")
	}
	ctx, done := g.life.Bound(ctx)
	defer done()
	current := ""
	if v, ok := g.scanner.(DBVersioner); ok {
		var err error
		if current, err = v.DBVersion(); err != nil {
			return st, fmt.Errorf("re-evaluation needs a loaded DB: %w", err)
		}
	}
	start := time.Now()
	ac, _ := g.scanner.(AnalysisChecker)
	var stale, rescan []*Facts
	if err := g.store.Verdicts(func(_ digest.Digest, b []byte) error {
		f, err := decodeFacts(b)
		if err != nil || f.State != stateScanned || f.ScanKey == nil {
			return nil
		}
		if ac != nil && ac.NeedsAnalysis(f.ScanKey) && f.Source != "" {
			rescan = append(rescan, f)
			return nil
		}
		if current != "" && (f.DBVersion == current || newerDB(f.DBVersion, current)) {
			// Made with this DB, or (by another replica sharing the store, which loaded
			// its refresh first) with a newer one: detecting it again with ours would
			// flip it back.
			st.Current++
			return nil
		}
		stale = append(stale, f)
		return nil
	}); err != nil {
		return st, err
	}
	// A stored analysis the scanner would not make now is made again: a full scan of the
	// digest (its blobs are in the store), through the pull singleflight.
	rescanned := map[digest.Digest]bool{}
	for _, f := range rescan {
		if ctx.Err() != nil {
			break
		}
		d := digest.Digest(f.Digest)
		res, err, _ := g.sf.Do("scan\x00"+f.Digest, func() (any, error) { return g.scanOnce(ctx, f.Source, d, f.MediaType, f) })
		if err == nil && res.(*Facts).Final() {
			rescanned[d] = true
		} else {
			st.Failed++
			g.log.Warn("rescan with the current analyzers failed; the old verdict stays", "digest", f.Digest, "err", err)
		}
	}
	st.Rescanned = len(rescanned)
	st.Verdicts = len(stale)
	if len(stale) == 0 {
		if len(rescanned) > 0 {
			var err error
			st.Judgements, st.Flipped, err = g.rejudge(rescanned)
			return st, err
		}
		return st, nil
	}
	g.metrics.reevalRunning.Set(1)
	defer g.metrics.reevalRunning.Set(0)
	g.log.Info("re-evaluating stored verdicts against the vulnerability DB", "verdicts", len(stale), "current", st.Current, "db", current)

	var mu sync.Mutex
	finished := 0
	redone := map[digest.Digest]bool{}
	work := make(chan *Facts)
	var wg sync.WaitGroup
	for range max(1, g.cfg.Workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				err := g.redetect(ctx, rd, f)
				mu.Lock()
				finished++
				if err != nil {
					st.Failed++
					g.log.Warn("re-evaluation failed; the old verdict stays", "digest", f.Digest, "err", err)
				} else {
					redone[digest.Digest(f.Digest)] = true
				}
				g.metrics.reevalProgress.Set(float64(finished) / float64(len(stale)))
				if finished%500 == 0 {
					g.log.Info("re-evaluation progress", "done", finished, "of", len(stale))
				}
				mu.Unlock()
			}
		}()
	}
dispatch:
	for _, f := range stale {
		select {
		case work <- f:
		case <-ctx.Done():
			break dispatch // what is left keeps its old DB version: the next run does it
		}
	}
	close(work)
	wg.Wait()
	for d := range rescanned {
		redone[d] = true
	}
	var err error
	st.Judgements, st.Flipped, err = g.rejudge(redone)
	st.Duration = time.Since(start)
	g.log.Info("re-evaluation done", "verdicts", st.Verdicts, "redetected", len(redone), "judgements", st.Judgements,
		"flipped", st.Flipped, "failed", st.Failed, "duration", st.Duration.Round(time.Millisecond))
	if err != nil {
		return st, err
	}
	return st, ctx.Err()
}

// redetect re-detects one digest's vulnerabilities and stores its new facts.
func (g *Gate) redetect(ctx context.Context, rd Redetector, f *Facts) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dgst := digest.Digest(f.Digest)
	report, err := g.store.Report(dgst)
	if err != nil {
		return err
	}
	res, err := rd.Redetect(ctx, f.ScanKey, report)
	if err != nil {
		return err
	}
	next := *f
	in := *f.Input
	in.Vulnerabilities, in.OS, in.EOSL = res.Vulnerabilities, res.OS, res.EOSL
	next.Input = &in
	next.DBVersion = res.DBVersion
	next.ScannedAt = time.Now().UTC()
	b, err := json.Marshal(&next)
	if err != nil {
		return err
	}
	defer g.memo.forget(dgst)
	if err := g.store.PutVerdictAndReport(dgst, b, res.Report); err != nil {
		return err
	}
	g.announce(dgst)
	return nil
}

// newerDB reports whether DB version a ("v2@2026-03-01T06:00:00Z", scanner.DBInfo.ID)
// names a newer DB than b: a later schema version, or the same one updated later. Names
// that do not parse are never newer.
func newerDB(a, b string) bool {
	parse := func(s string) (int, time.Time, bool) {
		v, at, ok := strings.Cut(s, "@")
		n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
		if !ok || err != nil || !strings.HasPrefix(v, "v") {
			return 0, time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339, at)
		return n, t, err == nil
	}
	av, at, aok := parse(a)
	bv, bt, bok := parse(b)
	if !aok || !bok {
		return false
	}
	return av > bv || av == bv && at.After(bt)
}

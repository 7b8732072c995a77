package proxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
)

// evaluate judges a record's stored input under pol and sets its verdict and state.
func (g *scanGate) evaluate(rec *VerdictRecord, pol *policy.Set) {
	rec.Verdict = pol.Evaluate(*rec.Input, g.now())
	rec.PolicyHash = pol.Hash()
	rec.State = stateDenied
	if rec.Verdict.Allowed {
		rec.State = stateAllowed
	}
}

// stale reports whether a final verdict must be recomputed: the policy changed, or an
// exception it relied on has expired.
func (g *scanGate) stale(rec *VerdictRecord, pol *policy.Set) bool {
	if rec.Input == nil {
		return false
	}
	if rec.PolicyHash != pol.Hash() {
		return true
	}
	exp := rec.Verdict.ExpiresFirst()
	return !exp.IsZero() && g.now().After(exp)
}

// current returns the record's verdict under the current policy, recomputing it from
// the stored scan result when it is stale: no scan, no layer read.
func (g *scanGate) current(rec *VerdictRecord) *VerdictRecord {
	pol := g.policy.Load()
	if !g.stale(rec, pol) {
		return rec
	}
	next := *rec
	g.evaluate(&next, pol)
	g.logFlip(rec, &next)
	if b, err := json.Marshal(&next); err == nil {
		_ = g.s.store.PutVerdict(digest.Digest(rec.Digest), b)
	}
	return &next
}

// logFlip logs, counts and announces a verdict that changed state.
func (g *scanGate) logFlip(old, next *VerdictRecord) {
	if old.State == next.State {
		return
	}
	g.s.log.Info("verdict changed", "repository", next.Repository, "digest", next.Digest, "from", old.State, "to", next.State,
		"policy", next.Verdict.Policy, "rule", next.Verdict.Rule(), "reasons", denialText(next))
	g.s.metrics.verdictChanges.WithLabelValues(old.State, next.State).Inc()
	g.s.notify.send(VerdictChange{Repository: next.Repository, Tag: next.Tag, Digest: next.Digest, From: old.State, To: next.State,
		Policy: next.Verdict.Policy, Reasons: next.Verdict.Reasons, DBVersion: next.DBVersion, At: time.Now().UTC()})
}

// SetPolicy swaps in a new policy set and re-evaluates every stored verdict from its
// stored scan result. It returns how many verdicts flipped.
func (s *Server) SetPolicy(pol *policy.Set) (flipped int, err error) {
	if s.scan == nil {
		return 0, fmt.Errorf("no scanning gate")
	}
	g := s.scan
	g.policy.Store(pol)
	var recs []VerdictRecord
	err = s.store.Verdicts(func(_ digest.Digest, b []byte) error {
		var rec VerdictRecord
		if json.Unmarshal(b, &rec) == nil && rec.final() && rec.Input != nil {
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i := range recs {
		rec := &recs[i]
		if !g.stale(rec, pol) {
			continue
		}
		next := g.current(rec)
		if next.State != rec.State {
			flipped++
		}
	}
	s.log.Info("policy applied: verdicts re-evaluated", "verdicts", len(recs), "flipped", flipped, "policy_hash", pol.Hash())
	return flipped, nil
}

// SetClock sets the clock exceptions and image ages are judged by (tests).
func (s *Server) SetClock(now func() time.Time) {
	if s.scan != nil {
		s.scan.now = now
	}
}

// verdictOf turns a record into the gate's answer, with the message a denied developer
// reads in their terminal.
func (g *scanGate) verdictOf(rec *VerdictRecord) Verdict {
	image := rec.Repository + "@" + rec.Digest
	if rec.Tag != "" {
		image = rec.Repository + ":" + rec.Tag + " (" + rec.Digest + ")"
	}
	switch rec.State {
	case stateAllowed:
		if rec.Verdict.Audit {
			g.auditDenials.Add(1)
			g.s.metrics.denials.WithLabelValues(rec.Verdict.Policy, rec.Verdict.Rule(), "true").Inc()
			g.s.log.Warn("audit: would deny", "image", image, "policy", rec.Verdict.Policy, "rule", rec.Verdict.Rule(), "reasons", denialText(rec))
		}
		return Verdict{Allowed: true, Rule: rec.Verdict.Policy}
	case stateError:
		if g.s.cfg.Scan.OnScanError == "allow" {
			g.s.log.Warn("serving an image that could not be scanned (on_scan_error: allow)", "image", image, "err", rec.Error)
			return Verdict{Allowed: true, Rule: "on_scan_error"}
		}
		return Verdict{Policy: "scan", Rule: "scan-error", Message: fmt.Sprintf(
			"image %s could not be scanned, and goldproxy does not serve what it has not scanned: %s. Retry the pull; if it keeps failing, tell the platform team", image, rec.Error)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "image %s is denied by policy %q: %s", image, rec.Verdict.Policy, denialText(rec))
	fmt.Fprintf(&b, ". Full report: /api/v1/images/%s/report", rec.Digest)
	if rec.Verdict.Contact != "" {
		fmt.Fprintf(&b, ". %s", rec.Verdict.Contact)
	} else {
		b.WriteString(". Use a rebuilt image with the fixes (a newer tag or a hardened base) or ask the platform team for an exception")
	}
	return Verdict{Policy: rec.Verdict.Policy, Rule: rec.Verdict.Rule(), Message: b.String()}
}

// denialText lists every failed rule with its evidence: up to five findings per rule and
// a count of the rest.
func denialText(rec *VerdictRecord) string {
	var parts []string
	for _, r := range rec.Verdict.Reasons {
		var b strings.Builder
		fmt.Fprintf(&b, "rule %q: %s", r.Rule, r.Message)
		for i, v := range r.Evidence {
			if i == 5 {
				fmt.Fprintf(&b, "; and %d more", len(r.Evidence)-5)
				break
			}
			fmt.Fprintf(&b, "; %s", v)
		}
		for _, d := range r.Details {
			fmt.Fprintf(&b, "; %s", d)
		}
		parts = append(parts, b.String())
	}
	if len(rec.Verdict.Exceptions) > 0 {
		var ex []string
		for _, e := range rec.Verdict.Exceptions {
			ex = append(ex, fmt.Sprintf("%s until %s", e.ID, e.Expires.Format(time.DateOnly)))
		}
		parts = append(parts, "exceptions applied: "+strings.Join(ex, ", "))
	}
	return strings.Join(parts, " | ")
}

package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/storage"
)

// Judgement is what the policy made of a digest's facts for one repository and the
// reference it was asked by. It is a pure function of the facts, the repository, the
// reference, the policy and the time; it is recorded per (repository, digest) for the
// dashboard, the API, the metrics and the webhooks.
type Judgement struct {
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Tag is the tag it was last asked by; empty for a pull by digest.
	Tag        string         `json:"tag,omitempty"`
	State      string         `json:"state"` // allowed, denied, error
	Verdict    policy.Verdict `json:"verdict"`
	PolicyHash string         `json:"policyHash,omitempty"`
	DBVersion  string         `json:"dbVersion,omitempty"`
	ScannedAt  time.Time      `json:"scannedAt,omitzero"`
	JudgedAt   time.Time      `json:"judgedAt"`
	Error      string         `json:"error,omitempty"`
}

// judge applies pol to facts f for repository repo asked by tag ("" for a digest).
func (g *Gate) judge(f *Facts, repo, tag string, pol *policy.Set, now time.Time) *Judgement {
	j := &Judgement{Repository: repo, Digest: f.Digest, Tag: tag, DBVersion: f.DBVersion, ScannedAt: f.ScannedAt,
		PolicyHash: pol.Hash(), JudgedAt: now.UTC()}
	switch f.State {
	case stateScanned:
		in := *f.Input
		in.Repository, in.Tag, in.Digest = repo, tag, f.Digest
		if p, _ := pol.Choose(repo); p.UsesTrust() {
			in.Trust = g.trustOf(f, p)
		}
		j.Verdict = pol.Evaluate(in, now)
		j.State = stateDenied
		if j.Verdict.Allowed {
			j.State = stateAllowed
		}
	case stateRefused:
		// Over a limit: no policy judged, the limit did, whatever on_scan_error says.
		j.State = stateDenied
		j.Verdict = policy.Verdict{Policy: "limits", Reasons: []policy.Reason{{Rule: f.Limit, Message: f.Error}}}
	default:
		j.State, j.Error = stateError, f.Error
		if j.Error == "" {
			j.Error = "the scan did not finish"
		}
	}
	return j
}

// judgeFacts is judge for images and judgeArtifact for artifacts.
func (g *Gate) judgeFacts(ctx context.Context, f *Facts, repo, tag string, pol *policy.Set, now time.Time, depth int) *Judgement {
	if f.State == stateArtifact {
		return g.judgeArtifact(ctx, f, repo, tag, pol, now, depth)
	}
	return g.judge(f, repo, tag, pol, now)
}

// record keeps a judgement when it differs from the stored one, and logs, counts and
// announces a flip. It is skipped once the server is closing.
func (g *Gate) record(j *Judgement, write bool) (flipped bool) {
	if !g.life.Begin() {
		return false
	}
	defer g.life.End()
	d := digest.Digest(j.Digest)
	old := g.storedJudgement(j.Repository, d)
	if old != nil && old.State == j.State && old.PolicyHash == j.PolicyHash && old.DBVersion == j.DBVersion &&
		old.Tag == j.Tag && old.Verdict.Until.Equal(j.Verdict.Until) {
		return false
	}
	if write {
		if b, err := json.Marshal(j); err == nil {
			if err := g.store.PutJudgement(j.Repository, d, b); err != nil {
				g.log.Warn("could not record a judgement", "repository", j.Repository, "digest", d, "err", err)
			}
		}
	}
	g.states.set(j.Repository, d, j.State)
	if old != nil && old.State != j.State {
		g.logFlip(old, j)
		return true
	}
	return false
}

// Judgement returns the recorded judgement of a digest in a repository, or nil.
func (g *Gate) Judgement(repo string, d digest.Digest) *Judgement { return g.storedJudgement(repo, d) }

// ScanKey finds a digest's stored layer analysis (nil when it has none).
func (g *Gate) ScanKey(d digest.Digest) json.RawMessage {
	f, err := g.load(d)
	if err != nil {
		return nil
	}
	return f.ScanKey
}

// Forget drops what the gate remembers in memory of a repository's manifest that was
// evicted: the store has already dropped its record.
func (g *Gate) Forget(repo string, d digest.Digest) {
	g.memo.forget(d)
	g.states.forget(repo, d)
}

func (g *Gate) storedJudgement(repo string, d digest.Digest) *Judgement {
	b, err := g.store.Judgement(repo, d)
	if err != nil {
		return nil
	}
	var j Judgement
	if json.Unmarshal(b, &j) != nil {
		return nil
	}
	return &j
}

// logFlip logs, counts and announces a judgement that changed state.
func (g *Gate) logFlip(old, next *Judgement) {
	g.log.Info("verdict changed", "repository", next.Repository, "digest", next.Digest, "from", old.State, "to", next.State,
		"policy", next.Verdict.Policy, "rule", next.Verdict.Rule(), "reasons", denialText(next.Verdict))
	g.metrics.verdictChanges.WithLabelValues(old.State, next.State).Inc()
	g.notify.send(VerdictChange{Repository: next.Repository, Tag: next.Tag, Digest: next.Digest, From: old.State, To: next.State,
		Policy: next.Verdict.Policy, Reasons: next.Verdict.Reasons, DBVersion: next.DBVersion, At: time.Now().UTC()})
}

// rejudge judges every recorded (repository, digest) again under the current policy,
// with each digest's stored facts (no scan, no layer read); only digests is given, only
// those. It returns how many judgements there were and how many flipped.
func (g *Gate) rejudge(only map[digest.Digest]bool) (total, flipped int, err error) {
	var js []*Judgement
	err = g.store.Judgements(func(_ string, d digest.Digest, b []byte) error {
		if only != nil && !only[d] {
			return nil
		}
		var j Judgement
		if json.Unmarshal(b, &j) == nil {
			js = append(js, &j)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	pol, now := g.policy.Load(), g.now()
	facts := map[string]*Facts{}
	batch := map[string][]byte{}
	for _, old := range js {
		f, ok := facts[old.Digest]
		if !ok {
			f, _ = g.load(digest.Digest(old.Digest))
			facts[old.Digest] = f
		}
		if f == nil || !f.Final() {
			continue
		}
		total++
		next := g.judgeFacts(context.Background(), f, old.Repository, old.Tag, pol, now, 0)
		if old.State == next.State && old.PolicyHash == next.PolicyHash && old.DBVersion == next.DBVersion && old.Verdict.Until.Equal(next.Verdict.Until) {
			continue
		}
		if b, err := json.Marshal(next); err == nil {
			batch[storage.PullKey(next.Repository, digest.Digest(next.Digest))] = b
		}
		g.states.set(next.Repository, digest.Digest(next.Digest), next.State)
		if old.State != next.State {
			flipped++
			g.logFlip(old, next)
		}
	}
	return total, flipped, g.store.PutJudgements(batch)
}

// SetPolicy swaps in a new policy set and judges every recorded (repository, digest)
// again from its stored facts. It returns how many verdicts flipped.
func (g *Gate) SetPolicy(pol *policy.Set) (flipped int, err error) {
	g.policy.Store(pol)
	if !g.life.Begin() {
		return 0, fmt.Errorf("server closing")
	}
	defer g.life.End()
	total, flipped, err := g.rejudge(nil)
	if err != nil {
		return flipped, err
	}
	g.log.Info("policy applied: verdicts re-evaluated", "verdicts", total, "flipped", flipped, "policy_hash", pol.Hash())
	return flipped, nil
}

// Rejudge judges every recorded (repository, digest) again under the current policy,
// as at start, when the recorded ones may have been made under another policy file.
func (g *Gate) Rejudge() (flipped int, err error) {
	if !g.life.Begin() {
		return 0, fmt.Errorf("server closing")
	}
	defer g.life.End()
	_, flipped, err = g.rejudge(nil)
	return flipped, err
}

// SetClock sets the clock exceptions and image ages are judged by (tests).
func (g *Gate) SetClock(now func() time.Time) {
	g.now = now
	g.memo.clear()
}

// judged is a Verdict with what a later pull needs to repeat it without judging again.
type judged struct {
	verdict Verdict
	audit   bool
	reasons string
	until   time.Time
	// trust is what the image's signatures were (trustResult), "" when not judged.
	trust string
}

// counted counts a denied pull, and logs and counts one an audit-mode policy would
// have denied. A warm-up is no pull: it is not counted.
func (g *Gate) counted(v judged, m Manifest) {
	if m.Warm {
		return
	}
	if v.trust != "" {
		g.metrics.trust.WithLabelValues(v.verdict.Policy, v.trust).Inc()
	}
	if !v.verdict.Allowed {
		g.metrics.denials.WithLabelValues(v.verdict.Policy, v.verdict.Rule, "false").Inc()
		return
	}
	if !v.audit {
		return
	}
	g.auditDenials.Add(1)
	g.metrics.denials.WithLabelValues(v.verdict.Policy, v.verdict.Rule, "true").Inc()
	g.log.Warn("audit: would deny", "image", imageName(m.Repository, m.Tag, m.Descriptor.Digest.String()),
		"policy", v.verdict.Policy, "rule", v.verdict.Rule, "reasons", v.reasons)
}

func imageName(repo, tag, dgst string) string {
	if tag != "" {
		return repo + ":" + tag + " (" + dgst + ")"
	}
	return repo + "@" + dgst
}

// ReportPath is where a denied developer reads the full report of dgst as repo saw it.
func ReportPath(repo, dgst string) string {
	return "/api/v1/images/" + dgst + "/report?repository=" + url.QueryEscape(repo)
}

// verdictOf turns a judgement into the gate's answer, with the message a denied
// developer reads in their terminal: the repository and reference they asked for.
func (g *Gate) verdictOf(j *Judgement, m Manifest) judged {
	v := g.verdictText(j, m)
	v.trust = trustResult(j.Verdict.Trust)
	return v
}

func (g *Gate) verdictText(j *Judgement, m Manifest) judged {
	image := imageName(m.Repository, m.Tag, j.Digest)
	switch j.State {
	case stateAllowed:
		v := judged{verdict: Verdict{Allowed: true, Policy: j.Verdict.Policy, Rule: j.Verdict.Policy}, until: j.Verdict.Until}
		if j.Verdict.Audit {
			v.audit, v.reasons = true, denialText(j.Verdict)
			v.verdict.Rule = j.Verdict.Rule()
		}
		return v
	case stateError:
		if g.cfg.OnScanError == "allow" {
			g.log.Warn("serving an image that could not be scanned (on_scan_error: allow)", "image", image, "err", j.Error)
			return judged{verdict: Verdict{Allowed: true, Rule: "on_scan_error"}}
		}
		return judged{verdict: Verdict{Policy: "scan", Rule: "scan-error", Message: fmt.Sprintf(
			"image %s could not be scanned, and goldproxy does not serve what it has not scanned: %s. Retry the pull; if it keeps failing, tell the platform team", image, j.Error),
			Short: "denied: the image could not be scanned (" + firstLine(j.Error) + "); retry the pull"}}
	}
	if j.Verdict.Policy == "limits" && len(j.Verdict.Reasons) == 1 {
		r := j.Verdict.Reasons[0]
		what := "none of its layers was fetched. Use an image with fewer layers"
		if r.Rule != "limits.layers" {
			what = "its scan stopped there. Use an image with smaller layers"
		}
		return judged{verdict: Verdict{Policy: "limits", Rule: r.Rule, Message: fmt.Sprintf(
			"image %s is refused: %s (%s); %s, or ask the platform team to raise %s", image, r.Message, r.Rule, what, r.Rule),
			Short: fmt.Sprintf("denied: %s (%s)", r.Message, r.Rule)}}
	}
	page := fmt.Sprintf("%s/ui/images/%s?repository=%s", g.external, j.Digest, url.QueryEscape(m.Repository))
	if j.Verdict.Rule() == "artifact-subject" {
		return judged{verdict: Verdict{Policy: j.Verdict.Policy, Rule: j.Verdict.Rule(), Message: fmt.Sprintf(
			"artifact %s is not served: %s. Pull (and pass) the image it belongs to first", image, denialText(j.Verdict)),
			Short: "denied: an artifact is served only with an allowed image it belongs to, see " + page}}
	}
	report := g.external + ReportPath(m.Repository, j.Digest)
	var b strings.Builder
	fmt.Fprintf(&b, "image %s is denied by policy %q: %s", image, j.Verdict.Policy, denialText(j.Verdict))
	fmt.Fprintf(&b, ". Full report: %s", report)
	switch {
	case j.Verdict.Contact != "":
		fmt.Fprintf(&b, ". %s", j.Verdict.Contact)
	case trustRules[j.Verdict.Rule()]:
		b.WriteString(". Use an image its publisher signed and attested as the policy asks (or sign the image and attach them: cosign sign, cosign attest), then pull again")
	default:
		b.WriteString(". Use a rebuilt image with the fixes (a newer tag or a hardened base) or ask the platform team for an exception")
	}
	return judged{verdict: Verdict{Policy: j.Verdict.Policy, Rule: j.Verdict.Rule(), Message: b.String(), Report: report,
		Short: fmt.Sprintf("denied by policy %s: %s, see %s", j.Verdict.Policy, firstEvidence(j.Verdict), page)}, until: j.Verdict.Until}
}

// trustRules are the rules about signatures and attestations: no rebuild fixes them.
var trustRules = map[string]bool{"signatures": true, "provenance": true, "sbom": true}

// firstEvidence is the one thing a status line can say about a denial: the worst
// finding of the first failed rule, else its first detail, else its message.
func firstEvidence(v policy.Verdict) string {
	if len(v.Reasons) == 0 {
		return "denied"
	}
	r := v.Reasons[0]
	switch {
	case len(r.Evidence) > 0:
		e := r.Evidence[0]
		return fmt.Sprintf("%s in %s (%s)", e.ID, e.Package, e.Severity)
	case len(r.Details) > 0:
		return r.Rule + ": " + r.Details[0]
	}
	return r.Rule + ": " + r.Message
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// denialText lists every failed rule with its evidence: up to five findings per rule and
// a count of the rest.
func denialText(v policy.Verdict) string {
	var parts []string
	for _, r := range v.Reasons {
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
	if len(v.Exceptions) > 0 {
		var ex []string
		for _, e := range v.Exceptions {
			ex = append(ex, fmt.Sprintf("%s until %s", e.ID, e.Expires.Format(time.DateOnly)))
		}
		parts = append(parts, "exceptions applied: "+strings.Join(ex, ", "))
	}
	return strings.Join(parts, " | ")
}

// memo remembers judgements in memory so a warm pull of a known digest neither reads
// nor decodes its facts. An entry holds while the policy is the one it was made under,
// the digest's facts have not changed and time has not reached its Until.
type memo struct {
	mu sync.Mutex
	m  map[digest.Digest]map[memoKey]memoEntry
	n  int
}

type memoKey struct{ repo, tag string }

type memoEntry struct {
	pol *policy.Set
	v   judged
}

// memoLimit bounds the memo; past it, it starts again empty.
const memoLimit = 100_000

func (m *memo) get(d digest.Digest, repo, tag string, pol *policy.Set, now time.Time) (judged, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.m[d][memoKey{repo, tag}]
	if !ok || e.pol != pol || (!e.v.until.IsZero() && !now.Before(e.v.until)) {
		return judged{}, false
	}
	return e.v, true
}

func (m *memo) put(d digest.Digest, repo, tag string, pol *policy.Set, v judged) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil || m.n >= memoLimit {
		m.m, m.n = map[digest.Digest]map[memoKey]memoEntry{}, 0
	}
	if m.m[d] == nil {
		m.m[d] = map[memoKey]memoEntry{}
	}
	if _, ok := m.m[d][memoKey{repo, tag}]; !ok {
		m.n++
	}
	m.m[d][memoKey{repo, tag}] = memoEntry{pol: pol, v: v}
}

// forget drops the judgements of a digest whose facts changed.
func (m *memo) forget(d digest.Digest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n -= len(m.m[d])
	delete(m.m, d)
}

func (m *memo) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m, m.n = nil, 0
}

// judgementStates counts recorded judgements by state for the metrics, so a scrape
// decodes nothing.
type judgementStates struct {
	mu sync.Mutex
	m  map[string]string // repo\x00digest → state
}

func (s *judgementStates) load(st *storage.Store) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = map[string]string{}
	_ = st.Judgements(func(repo string, d digest.Digest, b []byte) error {
		var j struct {
			State string `json:"state"`
		}
		if json.Unmarshal(b, &j) == nil {
			s.m[storage.PullKey(repo, d)] = j.State
		}
		return nil
	})
}

func (s *judgementStates) set(repo string, d digest.Digest, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]string{}
	}
	s.m[storage.PullKey(repo, d)] = state
}

func (s *judgementStates) forget(repo string, d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, storage.PullKey(repo, d))
}

func (s *judgementStates) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, st := range s.m {
		out[st]++
	}
	return out
}

// reLegacyArtifactTag is cosign's tag for the signature, attestation or SBOM of a digest.
var reLegacyArtifactTag = regexp.MustCompile(`^sha256-([0-9a-f]{64})\.(sig|att|sbom)$`)

// judgeArtifact judges an artifact for repo: a signature, attestation or SBOM is served
// with its subject — when the image it is for is allowed in repo; one with no subject
// only when the policy lists its type. depth bounds artifacts of artifacts.
func (g *Gate) judgeArtifact(ctx context.Context, f *Facts, repo, tag string, pol *policy.Set, now time.Time, depth int) *Judgement {
	j := &Judgement{Repository: repo, Digest: f.Digest, Tag: tag, State: stateAllowed, PolicyHash: pol.Hash(), ScannedAt: f.ScannedAt, JudgedAt: now.UTC()}
	var subjects []string
	if f.Subject != "" {
		subjects = append(subjects, f.Subject)
	}
	// A legacy tag names the image it is for: the one asked by, else (a pull by digest,
	// a blob) any that points at the artifact in this repository.
	tags := []string{tag}
	if tag == "" {
		tags, _ = g.store.TagsOf(repo, digest.Digest(f.Digest))
	}
	for _, t := range tags {
		if m := reLegacyArtifactTag.FindStringSubmatch(t); m != nil {
			subjects = append(subjects, "sha256:"+m[1])
		}
	}
	if len(subjects) == 0 {
		ok, name := pol.ServesArtifact(repo, f.ArtifactType)
		j.Verdict = policy.Verdict{Allowed: ok, Policy: name}
		if !ok {
			j.State = stateDenied
			j.Verdict.Reasons = []policy.Reason{{Rule: "artifact-subject", Message: fmt.Sprintf(
				"artifact %s of type %s names no image it belongs to; policy %q serves such artifacts only when their type is listed under artifacts:",
				f.Digest, orNone(f.ArtifactType), name)}}
		}
		return j
	}
	var why []string
	for _, s := range subjects {
		ok, reason := g.subjectAllowed(ctx, repo, digest.Digest(s), depth)
		if ok {
			j.Verdict = policy.Verdict{Allowed: true, Policy: "artifact"}
			return j
		}
		why = append(why, reason)
	}
	j.State = stateDenied
	j.Verdict = policy.Verdict{Policy: "artifact", Reasons: []policy.Reason{{Rule: "artifact-subject",
		Message: fmt.Sprintf("%s %s is served only with the image it belongs to", orNone(f.Kind), f.Digest), Details: why}}}
	return j
}

// Subject says whether the image subject is allowed in repo, for its referrers: known
// is false when it was never pulled or judged there.
func (g *Gate) Subject(ctx context.Context, repo string, subject digest.Digest) (allowed, known bool, reason string) {
	v, known := g.subject(ctx, repo, subject, 1)
	return known && v.Allowed, known, v.Message
}

// subject judges the image subject in repo from what is known (an index: allowed when
// it is stored there; each platform is judged on its own).
func (g *Gate) subject(ctx context.Context, repo string, subject digest.Digest, depth int) (Verdict, bool) {
	rec, ok := g.store.HasManifest(repo, subject)
	if !ok {
		return Verdict{}, false
	}
	if types.MediaType(rec.MediaType).IsIndex() {
		return Verdict{Allowed: true, Rule: "index"}, true
	}
	return g.judged(ctx, Manifest{Repository: repo, Descriptor: v1.Descriptor{MediaType: types.MediaType(rec.MediaType), Digest: toHash(subject)}}, depth)
}

// subjectAllowed reports whether the image subject is allowed in repo, or says why not.
func (g *Gate) subjectAllowed(ctx context.Context, repo string, subject digest.Digest, depth int) (bool, string) {
	if depth > 3 {
		return false, "artifacts nest too deep"
	}
	v, known := g.subject(ctx, repo, subject, depth+1)
	switch {
	case !known:
		return false, fmt.Sprintf("%s@%s has not been pulled and judged through this proxy: pull the image first", repo, subject)
	case !v.Allowed:
		return false, fmt.Sprintf("%s@%s is denied (%s)", repo, subject, v.Rule)
	}
	return true, ""
}

func toHash(d digest.Digest) v1.Hash {
	return v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

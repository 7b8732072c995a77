package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Severities from worst to least, as vulnerability databases grade them.
var Severities = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}

// SeverityRank orders severities: CRITICAL is 0, UNKNOWN (or anything else) last.
func SeverityRank(s string) int {
	if i := slices.Index(Severities, strings.ToUpper(s)); i >= 0 {
		return i
	}
	return len(Severities) - 1
}

// Vulnerability is one finding: a vulnerability of an installed package.
type Vulnerability struct {
	ID               string `json:"id"`
	Package          string `json:"package"`
	InstalledVersion string `json:"installedVersion"`
	FixedVersion     string `json:"fixedVersion,omitempty"`
	Severity         string `json:"severity"`
	Title            string `json:"title,omitempty"`
	// Target is where it was found: the OS ("alpine 3.19.1") or a file ("usr/bin/app").
	Target string `json:"target,omitempty"`
}

// Fixable reports whether a fixed version exists.
func (v Vulnerability) Fixable() bool { return v.FixedVersion != "" }

// Input is everything a policy may judge an image on.
type Input struct {
	// Repository is "<upstream>/<repository>"; Tag is empty for a pull by digest.
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	// OS is the detected distribution ("alpine 3.19.1"), empty when none was found.
	OS              string          `json:"os,omitempty"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
}

// Reason is one rule that failed, with its evidence.
type Reason struct {
	Rule     string          `json:"rule"`
	Message  string          `json:"message"`
	Evidence []Vulnerability `json:"evidence,omitempty"`
}

// Verdict is a policy's judgement of one image.
type Verdict struct {
	Allowed bool     `json:"allowed"`
	Policy  string   `json:"policy"`
	Reasons []Reason `json:"reasons,omitempty"`
	// Counts and Fixable count vulnerabilities by severity (all, and those with a fix).
	Counts  map[string]int `json:"counts"`
	Fixable map[string]int `json:"fixable"`
}

// Rule returns the name of the first failed rule, or "" when allowed.
func (v Verdict) Rule() string {
	if len(v.Reasons) == 0 {
		return ""
	}
	return v.Reasons[0].Rule
}

// Policy decides which images may be served.
type Policy struct {
	Name string `json:"name"`
	// DenySeverities: a vulnerability of one of these severities denies the image...
	DenySeverities []string `json:"denySeverities"`
	// ...only when a fixed version exists, if OnlyFixable.
	OnlyFixable bool `json:"onlyFixable"`
}

// Default is the policy until one is configured: deny when a vulnerability with a fix
// available is HIGH or CRITICAL.
func Default() *Policy {
	return &Policy{Name: "default", DenySeverities: []string{"CRITICAL", "HIGH"}, OnlyFixable: true}
}

// Hash identifies the policy's content; a verdict records the hash it was made under.
func (p *Policy) Hash() string {
	b, _ := json.Marshal(p)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Evaluate judges an image.
func (p *Policy) Evaluate(in Input) Verdict {
	v := Verdict{Allowed: true, Policy: p.Name, Counts: map[string]int{}, Fixable: map[string]int{}}
	var hits []Vulnerability
	for _, vuln := range in.Vulnerabilities {
		sev := Severities[SeverityRank(vuln.Severity)]
		v.Counts[sev]++
		if vuln.Fixable() {
			v.Fixable[sev]++
		}
		if slices.Contains(p.DenySeverities, sev) && (!p.OnlyFixable || vuln.Fixable()) {
			hits = append(hits, vuln)
		}
	}
	if len(hits) > 0 {
		SortWorstFirst(hits)
		what := "vulnerabilities"
		if p.OnlyFixable {
			what = "fixable vulnerabilities"
		}
		v.Allowed = false
		v.Reasons = append(v.Reasons, Reason{
			Rule:     "vulnerabilities",
			Message:  fmt.Sprintf("%d %s of severity %s", len(hits), what, strings.Join(p.DenySeverities, " or ")),
			Evidence: hits,
		})
	}
	return v
}

// SortWorstFirst orders findings by severity, fixable before unfixable, then by id.
func SortWorstFirst(vs []Vulnerability) {
	slices.SortStableFunc(vs, func(a, b Vulnerability) int {
		if d := SeverityRank(a.Severity) - SeverityRank(b.Severity); d != 0 {
			return d
		}
		if a.Fixable() != b.Fixable() {
			if a.Fixable() {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Package, b.Package)
	})
}

package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
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

func (v Vulnerability) String() string {
	s := fmt.Sprintf("%s in %s %s", v.ID, v.Package, v.InstalledVersion)
	if v.FixedVersion != "" {
		s += " → " + v.FixedVersion
	}
	return s + " (" + v.Severity + ")"
}

// Input is everything a policy may judge an image on: the scan's findings and facts
// about the image. It is stored with the verdict, so verdicts can be recomputed later.
type Input struct {
	// Repository is "<upstream>/<repository>"; Tag is empty for a pull by digest.
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	// OS is the detected distribution ("alpine 3.19.1"), empty when none was found.
	OS string `json:"os,omitempty"`
	// EOSL is true when the OS release no longer gets security updates.
	EOSL            bool            `json:"eosl,omitempty"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities"`
	// User is the image config's User ("" means root).
	User string `json:"user"`
	// Created is the image config's creation time (zero when unset).
	Created time.Time `json:"created,omitzero"`
	// OSPackages is the number of OS packages installed.
	OSPackages int `json:"osPackages"`
	// Executables are the paths (without a leading /) of the files and links in the
	// image's bin directories, after every layer is applied.
	Executables []string `json:"executables,omitempty"`
	// UnanalysedJARs counts the JAR (WAR, EAR) files the scanner could not identify
	// because no Java DB was loaded: their vulnerabilities are unknown.
	UnanalysedJARs int `json:"unanalysedJars,omitempty"`
	// Trust is what verified of the image's signatures and attestations, for the policy
	// judging it; nil when they were not looked up.
	Trust *Trust `json:"trust,omitempty"`
}

// Reason is one rule that failed, with its evidence.
type Reason struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
	// Evidence are the findings behind a vulnerability rule, worst first.
	Evidence []Vulnerability `json:"evidence,omitempty"`
	// Details are the facts behind any other rule (a user, a path, a count, an age).
	Details []string `json:"details,omitempty"`
}

// AppliedException is an exception that removed findings from a verdict.
type AppliedException struct {
	ID       string    `json:"id"`
	Reason   string    `json:"reason"`
	Expires  time.Time `json:"expires"`
	Packages []string  `json:"packages,omitempty"`
}

// Verdict is a policy's judgement of one image.
type Verdict struct {
	Allowed bool `json:"allowed"`
	// Policy is the name of the policy that judged; Scope the glob that chose it ("" for
	// the default policy).
	Policy string `json:"policy"`
	Scope  string `json:"scope,omitempty"`
	// Audit is true when the policy is in audit mode: the image is allowed, and Reasons
	// say why it would have been denied.
	Audit      bool               `json:"audit,omitempty"`
	Reasons    []Reason           `json:"reasons,omitempty"`
	Exceptions []AppliedException `json:"exceptions,omitempty"`
	// Counts and Fixable count vulnerabilities by severity (all, and those with a fix),
	// after exceptions.
	Counts  map[string]int `json:"counts"`
	Fixable map[string]int `json:"fixable"`
	// Contact says how to ask for an exception.
	Contact string `json:"contact,omitempty"`
	// Warnings are facts a reader should know that did not decide (JARs not analysed).
	Warnings []string `json:"warnings,omitempty"`
	// Trust is who signed the image and what is attested, for a policy with signature
	// or attestation rules.
	Trust *Trust `json:"trust,omitempty"`
	// Until is when time alone may change this verdict (an applied exception expires,
	// the image grows older than max_age); zero when nothing does.
	Until time.Time `json:"until,omitzero"`
}

// Rule returns the name of the first failed rule, or "".
func (v Verdict) Rule() string {
	if len(v.Reasons) == 0 {
		return ""
	}
	return v.Reasons[0].Rule
}

// Denied reports whether the verdict would deny, in audit mode too.
func (v Verdict) Denied() bool { return len(v.Reasons) > 0 }

// ExpiresFirst is the earliest expiry of an applied exception (zero when none): the
// verdict must be recomputed then.
func (v Verdict) ExpiresFirst() time.Time {
	var t time.Time
	for _, e := range v.Exceptions {
		if t.IsZero() || e.Expires.Before(t) {
			t = e.Expires
		}
	}
	return t
}

// Hash identifies a set's content; a verdict records the hash it was made under.
// Validate computes it once; a set that was never validated hashes on each call.
func (s *Set) Hash() string {
	if s.hash != "" {
		return s.hash
	}
	return s.computeHash()
}

func (s *Set) computeHash() string {
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
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

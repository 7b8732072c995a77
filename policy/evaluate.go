package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Choose returns the policy for a repository: the first scope that matches, else the
// default, with the glob that chose it.
func (s *Set) Choose(repository string) (*Policy, string) {
	for _, sc := range s.Scopes {
		for _, g := range sc.Match {
			if s.match(g, repository) {
				return s.policy(sc.Policy), g
			}
		}
	}
	return s.policy(s.Default), ""
}

func (s *Set) policy(name string) *Policy {
	for _, p := range s.Policies {
		if p.Name == name {
			return p
		}
	}
	return s.Policies[0] // Validate guarantees names resolve
}

// ServesArtifact reports whether the policy chosen for repository serves artifacts of
// type artifactType on their own (with no subject), and names that policy.
func (s *Set) ServesArtifact(repository, artifactType string) (bool, string) {
	p, _ := s.Choose(repository)
	return slices.ContainsFunc(p.Artifacts, func(g string) bool { return Match(g, artifactType) }), p.Name
}

// Evaluate judges an image at time now (exceptions expire, images age).
func (s *Set) Evaluate(in Input, now time.Time) Verdict {
	p, scope := s.Choose(in.Repository)
	v := Verdict{Allowed: true, Policy: p.Name, Scope: scope, Counts: map[string]int{}, Fixable: map[string]int{}, Contact: s.Contact}

	vulns := s.applyExceptions(in, now, &v)
	for _, x := range vulns {
		sev := Severities[SeverityRank(x.Severity)]
		v.Counts[sev]++
		if x.Fixable() {
			v.Fixable[sev]++
		}
	}
	v.Reasons = p.check(in, vulns, v.Counts, now)
	if p.UsesTrust() {
		v.Trust = in.Trust
	}
	if in.UnanalysedJARs > 0 && !p.DenyUnanalysedJARs {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%d JAR files not analysed: no Java DB is loaded, so their vulnerabilities are unknown", in.UnanalysedJARs))
	}
	if len(v.Reasons) > 0 {
		v.Allowed = p.Mode == "audit"
		v.Audit = p.Mode == "audit"
	}
	v.Until = v.ExpiresFirst()
	if p.MaxAge > 0 && !in.Created.IsZero() {
		if old := in.Created.Add(time.Duration(p.MaxAge)); old.After(now) && (v.Until.IsZero() || old.Before(v.Until)) {
			v.Until = old
		}
	}
	return v
}

// applyExceptions drops the findings an unexpired exception covers and records which
// exceptions applied.
func (s *Set) applyExceptions(in Input, now time.Time, v *Verdict) []Vulnerability {
	out := make([]Vulnerability, 0, len(in.Vulnerabilities))
	applied := map[int]*AppliedException{}
	for _, x := range in.Vulnerabilities {
		covered := false
		for i, e := range s.Exceptions {
			if !s.covers(e, x, in.Repository, now) {
				continue
			}
			covered = true
			a, ok := applied[i]
			if !ok {
				a = &AppliedException{ID: e.ID, Reason: e.Reason, Expires: e.Expires.Time}
				applied[i] = a
			}
			if !slices.Contains(a.Packages, x.Package) {
				a.Packages = append(a.Packages, x.Package)
			}
			break
		}
		if !covered {
			out = append(out, x)
		}
	}
	for i := range s.Exceptions {
		if a, ok := applied[i]; ok {
			v.Exceptions = append(v.Exceptions, *a)
		}
	}
	return out
}

func (s *Set) covers(e Exception, x Vulnerability, repo string, now time.Time) bool {
	if !strings.EqualFold(e.ID, x.ID) || now.After(e.Expires.Time) {
		return false
	}
	if len(e.Repositories) > 0 && !slices.ContainsFunc(e.Repositories, func(g string) bool { return s.match(g, repo) }) {
		return false
	}
	if len(e.Packages) > 0 && !slices.ContainsFunc(e.Packages, func(g string) bool { return s.match(g, x.Package) }) {
		return false
	}
	return true
}

// check runs every rule of the policy and returns the ones that fail.
func (p *Policy) check(in Input, vulns []Vulnerability, counts map[string]int, now time.Time) []Reason {
	var rs []Reason
	if r := p.Vulnerabilities; r != nil {
		rs = append(rs, r.check(vulns, counts)...)
	}
	if p.NonRoot && isRoot(in.User) {
		user := in.User
		if user == "" {
			user = "(unset: root)"
		}
		rs = append(rs, Reason{Rule: "non-root", Message: "the image runs as root; set USER to a non-root user (e.g. 65532)", Details: []string{"user: " + user}})
	}
	if p.NoShell {
		shells := p.Shells
		if len(shells) == 0 {
			shells = DefaultShells
		}
		var found []string
		for _, sh := range shells {
			if slices.Contains(in.Executables, strings.TrimPrefix(sh, "/")) {
				found = append(found, sh)
			}
		}
		if len(found) > 0 {
			rs = append(rs, Reason{Rule: "no-shell", Message: "the image contains a shell", Details: found})
		}
	}
	if p.NoPackageManager {
		pms := p.PackageManagers
		if len(pms) == 0 {
			pms = DefaultPackageManagers
		}
		var found []string
		for _, e := range in.Executables {
			if slices.Contains(pms, path.Base(e)) {
				found = append(found, "/"+e)
			}
		}
		if len(found) > 0 {
			rs = append(rs, Reason{Rule: "no-package-manager", Message: "the image contains a package manager", Details: found})
		}
	}
	if p.MaxOSPackages > 0 && in.OSPackages > p.MaxOSPackages {
		rs = append(rs, Reason{Rule: "minimal-base", Message: fmt.Sprintf("%d OS packages, more than the %d allowed", in.OSPackages, p.MaxOSPackages),
			Details: []string{fmt.Sprintf("os packages: %d", in.OSPackages)}})
	}
	if p.MaxAge > 0 {
		switch {
		case in.Created.IsZero():
			rs = append(rs, Reason{Rule: "freshness", Message: "the image has no creation date, so its age cannot be checked", Details: []string{"created: unset"}})
		case now.Sub(in.Created) > time.Duration(p.MaxAge):
			age := now.Sub(in.Created)
			rs = append(rs, Reason{Rule: "freshness", Message: fmt.Sprintf("the image was built %d days ago, more than the %s allowed; use a recent rebuild", int(age.Hours()/24), p.MaxAge),
				Details: []string{"created: " + in.Created.UTC().Format(time.RFC3339)}})
		}
	}
	if p.Pinned && in.Tag != "" {
		rs = append(rs, Reason{Rule: "pinned", Message: fmt.Sprintf("%s must be pulled by digest, not by tag %q", in.Repository, in.Tag),
			Details: []string{"pull " + in.Repository + "@" + in.Digest}})
	}
	if p.DenyUnanalysedJARs && in.UnanalysedJARs > 0 {
		rs = append(rs, Reason{Rule: "unanalysed-jars", Message: fmt.Sprintf("%d JAR files not analysed: no Java DB is loaded, so their vulnerabilities are unknown", in.UnanalysedJARs),
			Details: []string{"load a Java DB (db.java_dir or db.java_repository) and the image is scanned again"}})
	}
	if p.DenyEOSL && in.EOSL {
		rs = append(rs, Reason{Rule: "eosl", Message: fmt.Sprintf("the OS release %s is end of life and gets no security updates", in.OS), Details: []string{"os: " + in.OS}})
	}
	return append(rs, p.checkTrust(in.Trust)...)
}

func isRoot(user string) bool {
	u, _, _ := strings.Cut(user, ":")
	return u == "" || u == "root" || u == "0"
}

func (r *VulnerabilityRule) check(vulns []Vulnerability, counts map[string]int) []Reason {
	var rs []Reason
	if len(r.DenyIDs) > 0 {
		var hits []Vulnerability
		for _, x := range vulns {
			if slices.ContainsFunc(r.DenyIDs, func(id string) bool { return strings.EqualFold(id, x.ID) }) {
				hits = append(hits, x)
			}
		}
		if len(hits) > 0 {
			SortWorstFirst(hits)
			rs = append(rs, Reason{Rule: "denied-vulnerabilities", Message: fmt.Sprintf("%d finding(s) of vulnerabilities this policy denies outright", len(hits)), Evidence: hits})
		}
	}
	if r.Severity != "" {
		limit := SeverityRank(r.Severity)
		var hits []Vulnerability
		for _, x := range vulns {
			if SeverityRank(x.Severity) <= limit && (!r.OnlyFixable || x.Fixable()) {
				hits = append(hits, x)
			}
		}
		if len(hits) > 0 {
			SortWorstFirst(hits)
			what := "vulnerabilities"
			if r.OnlyFixable {
				what = "fixable vulnerabilities"
			}
			rs = append(rs, Reason{Rule: "vulnerabilities", Message: fmt.Sprintf("%d %s of severity %s or worse", len(hits), what, r.Severity), Evidence: hits})
		}
	}
	for _, sev := range Severities {
		limit, ok := r.Max[sev]
		if !ok {
			limit, ok = r.Max[strings.ToLower(sev)]
		}
		if ok && counts[sev] > limit {
			var hits []Vulnerability
			for _, x := range vulns {
				if Severities[SeverityRank(x.Severity)] == sev {
					hits = append(hits, x)
				}
			}
			SortWorstFirst(hits)
			rs = append(rs, Reason{Rule: "max-" + strings.ToLower(sev), Message: fmt.Sprintf("%d %s vulnerabilities, more than the %d allowed", counts[sev], sev, limit), Evidence: hits})
		}
	}
	return rs
}

// Fails reports whether rule (one of this policy's rule names) fails for in: a way to
// ask a single question of an image ("does it have a shell?") with the rules' own logic.
func (p *Policy) Fails(in Input, rule string, now time.Time) bool {
	for _, r := range p.check(in, in.Vulnerabilities, map[string]int{}, now) {
		if r.Rule == rule {
			return true
		}
	}
	return false
}

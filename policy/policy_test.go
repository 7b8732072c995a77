package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/policy"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func vuln(id, pkg, sev, fixed string) policy.Vulnerability {
	return policy.Vulnerability{ID: id, Package: pkg, InstalledVersion: "1.0", FixedVersion: fixed, Severity: sev}
}

// alpine is an alpine:3.19-like image: root, busybox shell, apk, 15 packages.
func alpine() policy.Input {
	return policy.Input{
		Repository: "docker.io/library/alpine", Tag: "3.19", Digest: "sha256:aaa", OS: "alpine 3.19.1",
		Vulnerabilities: []policy.Vulnerability{
			vuln("CVE-2024-6119", "libcrypto3", "HIGH", "3.1.7-r0"),
			vuln("CVE-2024-0727", "libcrypto3", "MEDIUM", "3.1.4-r5"),
			vuln("CVE-2024-9143", "libssl3", "LOW", ""),
		},
		User: "", Created: now.Add(-60 * 24 * time.Hour), OSPackages: 15,
		Executables: []string{"bin/busybox", "bin/sh", "sbin/apk"},
	}
}

// distroless is a distroless-like image: nonroot, no shell, few packages, recent.
func distroless() policy.Input {
	return policy.Input{Repository: "gcr.io/distroless/static-debian12", Digest: "sha256:bbb", OS: "debian 12.7",
		User: "65532", Created: now.Add(-2 * 24 * time.Hour), OSPackages: 4}
}

func set(t *testing.T, yaml string) *policy.Set {
	t.Helper()
	s, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules string
		in    func() policy.Input
		deny  []string // failed rules, in order
		say   string   // in a reason's message or details
	}{
		{"severity, fixable only", "vulnerabilities: {severity: HIGH, only_fixable: true}", alpine, []string{"vulnerabilities"}, "CVE-2024-6119"},
		{"severity MEDIUM counts both", "vulnerabilities: {severity: MEDIUM}", alpine, []string{"vulnerabilities"}, "2 vulnerabilities of severity MEDIUM"},
		{"unfixable LOW ignored when only fixable", "vulnerabilities: {severity: LOW, only_fixable: true}", alpine, []string{"vulnerabilities"}, "2 fixable"},
		{"max per severity", "vulnerabilities: {max: {MEDIUM: 0, LOW: 1}}", alpine, []string{"max-medium"}, "1 MEDIUM vulnerabilities, more than the 0 allowed"},
		{"deny ids", "vulnerabilities: {deny_ids: [cve-2024-9143]}", alpine, []string{"denied-vulnerabilities"}, ""},
		{"clean image passes vulnerability rules", "vulnerabilities: {severity: LOW}", distroless, nil, ""},
		{"non-root: unset user is root", "non_root: true", alpine, []string{"non-root"}, "(unset: root)"},
		{"non-root: uid 0", "non_root: true", func() policy.Input { in := distroless(); in.User = "0:0"; return in }, []string{"non-root"}, "user: 0:0"},
		{"non-root: 65532 passes", "non_root: true", distroless, nil, ""},
		{"no shell", "no_shell: true", alpine, []string{"no-shell"}, "/bin/sh"},
		{"no shell: custom list", "no_shell: true\n    shells: [/bin/zsh]", alpine, nil, ""},
		{"no package manager", "no_package_manager: true", alpine, []string{"no-package-manager"}, "/sbin/apk"},
		{"minimal base", "max_os_packages: 10", alpine, []string{"minimal-base"}, "15 OS packages"},
		{"freshness", "max_age: 30d", alpine, []string{"freshness"}, "60 days ago"},
		{"freshness: recent passes", "max_age: 720h", distroless, nil, ""},
		{"freshness: no date", "max_age: 30d", func() policy.Input { in := distroless(); in.Created = time.Time{}; return in }, []string{"freshness"}, "no creation date"},
		{"pinned: by tag denied", "pinned: true", alpine, []string{"pinned"}, "docker.io/library/alpine@sha256:aaa"},
		{"pinned: by digest passes", "pinned: true", distroless, nil, ""},
		{"eosl", "deny_eosl: true", func() policy.Input { in := alpine(); in.OS, in.EOSL = "alpine 3.14.10", true; return in }, []string{"eosl"}, "alpine 3.14.10"},
		{"every failing rule is reported", "non_root: true\n    no_shell: true\n    no_package_manager: true\n    max_os_packages: 5\n    max_age: 7d\n    pinned: true\n    vulnerabilities: {severity: HIGH}",
			alpine, []string{"vulnerabilities", "non-root", "no-shell", "no-package-manager", "minimal-base", "freshness", "pinned"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := set(t, "policies:\n  - name: p\n    "+tc.rules+"\n")
			v := s.Evaluate(tc.in(), now)
			var got []string
			text := ""
			for _, r := range v.Reasons {
				got = append(got, r.Rule)
				text += r.Message + " " + strings.Join(r.Details, " ")
				for _, e := range r.Evidence {
					text += " " + e.String()
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.deny, ",") || v.Allowed != (len(tc.deny) == 0) {
				t.Fatalf("rules %v (allowed %v), want %v", got, v.Allowed, tc.deny)
			}
			if !strings.Contains(text, tc.say) {
				t.Fatalf("reasons %q lack %q", text, tc.say)
			}
			if v.Policy != "p" {
				t.Fatalf("policy %q", v.Policy)
			}
		})
	}
}

func TestExceptionsExpire(t *testing.T) {
	s := set(t, `
policies:
  - name: p
    vulnerabilities: {severity: HIGH}
exceptions:
  - id: CVE-2024-6119
    reason: not reachable in our use
    expires: 2026-12-31
    repositories: [docker.io/library/*]
    packages: [libcrypto3]
  - id: CVE-2024-6119
    reason: scoped elsewhere
    expires: 2030-01-01
    repositories: [quay.io/**]
`)
	for _, tc := range []struct {
		name    string
		at      time.Time
		repo    string
		allowed bool
		applied int
	}{
		{"before expiry", now, "docker.io/library/alpine", true, 1},
		{"on the last day", time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), "docker.io/library/alpine", true, 1},
		{"after expiry", time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC), "docker.io/library/alpine", false, 0},
		{"other repository", now, "docker.io/team/alpine", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := alpine()
			in.Repository = tc.repo
			v := s.Evaluate(in, tc.at)
			if v.Allowed != tc.allowed || len(v.Exceptions) != tc.applied {
				t.Fatalf("allowed %v exceptions %+v", v.Allowed, v.Exceptions)
			}
			if tc.applied > 0 {
				e := v.Exceptions[0]
				if e.ID != "CVE-2024-6119" || e.Reason != "not reachable in our use" || strings.Join(e.Packages, ",") != "libcrypto3" {
					t.Fatalf("applied %+v", e)
				}
				if !v.ExpiresFirst().Equal(time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC)) {
					t.Fatalf("expires %v", v.ExpiresFirst())
				}
				if v.Counts["HIGH"] != 0 {
					t.Fatalf("an excepted finding still counts: %v", v.Counts)
				}
			}
		})
	}
}

func TestScopesFirstMatchWins(t *testing.T) {
	s := set(t, `
default: loose
policies:
  - name: loose
  - name: strict
    non_root: true
  - name: chainguard
    no_shell: true
scopes:
  - match: [cgr.dev/chainguard/static]
    policy: strict
  - match: [cgr.dev/chainguard/*]
    policy: chainguard
  - match: [cgr.dev/**]
    policy: strict
`)
	for repo, want := range map[string][2]string{
		"cgr.dev/chainguard/static": {"strict", "cgr.dev/chainguard/static"},
		"cgr.dev/chainguard/python": {"chainguard", "cgr.dev/chainguard/*"},
		"cgr.dev/other/deep/repo":   {"strict", "cgr.dev/**"},
		"docker.io/library/alpine":  {"loose", ""},
	} {
		in := alpine()
		in.Repository = repo
		v := s.Evaluate(in, now)
		if v.Policy != want[0] || v.Scope != want[1] {
			t.Errorf("%s: policy %q scope %q, want %v", repo, v.Policy, v.Scope, want)
		}
	}
}

func TestAuditMode(t *testing.T) {
	s := set(t, "policies:\n  - name: rollout\n    mode: audit\n    non_root: true\n")
	v := s.Evaluate(alpine(), now)
	if !v.Allowed || !v.Audit || !v.Denied() || v.Rule() != "non-root" {
		t.Fatalf("audit verdict %+v", v)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty file"},
		{"policies: []\n", "at least one policy"},
		{"policies:\n  - name: a\n    colour: red\n", `unknown key "colour"`},
		{"policies:\n  - name: a\n    mode: loud\n", "policies[0].mode"},
		{"policies:\n  - name: a\n    vulnerabilities: {severity: SEVERE}\n", "policies[0].vulnerabilities.severity"},
		{"policies:\n  - name: a\n    vulnerabilities: {max: {HUGE: 1}}\n", "vulnerabilities.max"},
		{"policies:\n  - name: a\n    max_age: soon\n", "invalid duration"},
		{"policies:\n  - name: a\n    shells: [sh]\n", "policies[0].shells[0]"},
		{"policies:\n  - name: a\n  - name: a\n", "defined twice"},
		{"default: b\npolicies:\n  - name: a\n", "default: no policy"},
		{"policies:\n  - name: a\nscopes:\n  - match: [x/*]\n    policy: b\n", "scopes[0].policy"},
		{"policies:\n  - name: a\nexceptions:\n  - id: CVE-1\n    expires: 2027-01-01\n", "exceptions[0].reason"},
		{"policies:\n  - name: a\nexceptions:\n  - id: CVE-1\n    reason: r\n", "exceptions[0].expires"},
		{"policies:\n  - name: a\nexceptions:\n  - id: CVE-1\n    reason: r\n    expires: someday\n", "invalid date"},
		{"policies:\n  - name: a\n    signatures: {required: true}\n", "policies[0].signatures: required with no keys and no keyless signers"},
		{"policies:\n  - name: a\n    signatures: {keys: [\"\"]}\n", "policies[0].signatures.keys[0]: empty path"},
		{"policies:\n  - name: a\n    signatures: {keyless: [{identity: x}]}\n", "policies[0].signatures.keyless[0]: set exactly one of issuer and issuer_regexp"},
		{"policies:\n  - name: a\n    signatures: {keyless: [{issuer: i, identity: x, identity_regexp: y}]}\n", "policies[0].signatures.keyless[0]: set exactly one of identity and identity_regexp"},
		{"policies:\n  - name: a\n    signatures: {keyless: [{issuer: i, identity_regexp: \"(\"}]}\n", "policies[0].signatures.keyless[0].identity_regexp"},
		{"policies:\n  - name: a\n    signatures: {keyless: [{issuer: i, identity: x, subject: y}]}\n", `unknown key "subject"`},
		{"policies:\n  - name: a\n    attestations: {provenance: {builder_ids: [\"\"]}}\n", "policies[0].attestations.provenance.builder_ids[0]"},
		{"policies:\n  - name: a\n    attestations: {slsa: {required: true}}\n", `unknown key "slsa"`},
	} {
		_, err := policy.Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestLoadResolvesKeyFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "team.pub"), []byte("not checked here"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(keys string) string {
		p := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(p, []byte("policies:\n  - name: a\n  - name: signed\n    signatures: {required: true, keys: ["+keys+"]}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s, err := policy.Load(write("team.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.KeyFiles(); len(got) != 1 || got[0] != filepath.Join(dir, "team.pub") {
		t.Fatalf("key files %v, want the one next to the policy", got)
	}
	if _, err := policy.Load(write("team.pub, gone.pub")); err == nil || !strings.Contains(err.Error(), "policies[1].signatures.keys[1]") {
		t.Fatalf("a missing key file: %v", err)
	}
}

func TestShippedPolicyIsValid(t *testing.T) {
	s, err := policy.Load(filepath.Join("..", "configs", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Default != "baseline" || len(s.Policies) != 3 || s.Contact == "" {
		t.Fatalf("%+v", s)
	}
	if p, _ := s.Choose("cgr.dev/chainguard/static"); p.Name != "hardened" {
		t.Fatalf("chainguard gets %s", p.Name)
	}
	if h1, h2 := s.Hash(), policy.DefaultSet().Hash(); h1 == h2 {
		t.Fatal("different sets share a hash")
	}
}

func TestTrustRules(t *testing.T) {
	idx := int64(7)
	gh := policy.Signer{Identity: "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", Issuer: "https://token.actions.githubusercontent.com", LogIndex: &idx, IntegratedTime: now}
	evil := policy.Signer{Identity: "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main", Issuer: gh.Issuer}
	keyed := policy.Signer{Key: "/keys/team.pub", Fingerprint: "0123456789abcdef0123"}
	prov := func(builder string, by policy.Signer) policy.Attestation {
		return policy.Attestation{PredicateType: policy.SLSAProvenanceV1, BuilderID: builder, Signer: by}
	}
	rules := `signatures: {required: true, keys: [/keys/team.pub], keyless: [{issuer: "https://token.actions.githubusercontent.com", identity_regexp: "https://github.com/acme/.*"}]}
    attestations: {provenance: {required: true, builder_ids: ["https://github.com/slsa-framework/**"]}, sbom: {required: true}}`
	sbom := policy.Attestation{PredicateType: "https://spdx.dev/Document", Signer: keyed}
	good := prov("https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.1.0", gh)
	for _, tc := range []struct {
		name  string
		trust *policy.Trust
		deny  []string
		say   string
	}{
		{"keyless signer and attestations", &policy.Trust{Signers: []policy.Signer{gh}, Attestations: []policy.Attestation{good, sbom}}, nil, ""},
		{"key signer", &policy.Trust{Signers: []policy.Signer{keyed}, Attestations: []policy.Attestation{good, sbom}}, nil, ""},
		{"never looked up", nil, []string{"signatures", "provenance", "sbom"}, "were not looked up"},
		{"unsigned", &policy.Trust{}, []string{"signatures", "provenance", "sbom"}, "the image has no signature"},
		{"lookup failed", &policy.Trust{Error: "upstream down"}, []string{"signatures", "provenance", "sbom"}, "could not be looked up: upstream down"},
		{"wrong identity", &policy.Trust{Signers: []policy.Signer{evil}, Attestations: []policy.Attestation{good, sbom}}, []string{"signatures"},
			"signed by " + evil.Identity + " (issuer " + evil.Issuer + "), policy wants key /keys/team.pub or identity matching https://github.com/acme/.*"},
		{"invalid signature", &policy.Trust{Problems: []string{"cosign signature (tag x): bad"}, Attestations: []policy.Attestation{good, sbom}}, []string{"signatures"}, "cosign signature (tag x): bad"},
		{"wrong builder", &policy.Trust{Signers: []policy.Signer{gh}, Attestations: []policy.Attestation{prov("https://evil.example/b", gh), sbom}}, []string{"provenance"},
			`provenance by builder "https://evil.example/b", policy wants a builder id matching https://github.com/slsa-framework/**`},
		{"provenance by a stranger", &policy.Trust{Signers: []policy.Signer{gh}, Attestations: []policy.Attestation{prov(good.BuilderID, evil), sbom}}, []string{"provenance"},
			"not a signer this policy accepts"},
		{"no sbom", &policy.Trust{Signers: []policy.Signer{gh}, Attestations: []policy.Attestation{good}}, []string{"sbom"}, "no signed SBOM attestation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := distroless()
			in.Trust = tc.trust
			v := set(t, "policies:\n  - name: gold\n    "+rules+"\n").Evaluate(in, now)
			var got []string
			all := ""
			for _, r := range v.Reasons {
				got = append(got, r.Rule)
				all += r.Message + "; " + strings.Join(r.Details, "; ")
			}
			if strings.Join(got, ",") != strings.Join(tc.deny, ",") || v.Allowed != (len(tc.deny) == 0) {
				t.Fatalf("failed rules %v, want %v (%s)", got, tc.deny, all)
			}
			if !strings.Contains(all, tc.say) {
				t.Fatalf("reasons %q do not say %q", all, tc.say)
			}
			if tc.trust != nil && v.Trust != tc.trust {
				t.Fatal("the verdict does not carry the signature facts")
			}
		})
	}
}

// FuzzParse: the parser never panics, and what it accepts evaluates and re-validates.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "configs", "policy.yaml"))
	for _, p := range seeds {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("policies:\n  - name: a\n    max_age: 3d\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := policy.Parse(b)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted then invalid: %v", err)
		}
		_ = s.Evaluate(alpine(), now)
		_ = s.Hash()
	})
}

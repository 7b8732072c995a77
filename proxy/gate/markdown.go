package gate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/goldproxy/goldproxy/policy"
)

// MarkdownReport renders a scan for people: verdict and reasons first, then every
// finding, worst first.
func MarkdownReport(in policy.Input, v policy.Verdict, dbID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", in.Repository)
	fmt.Fprintf(&b, "- Digest: `%s`\n- OS: %s\n- Vulnerability DB: %s\n", in.Digest, noneIfEmpty(in.OS), dbID)
	verdict := "ALLOWED"
	if !v.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(&b, "- Verdict: **%s** (policy `%s`)\n\n", verdict, v.Policy)
	for _, r := range v.Reasons {
		fmt.Fprintf(&b, "Rule `%s`: %s\n", r.Rule, r.Message)
		for _, d := range r.Details {
			fmt.Fprintf(&b, "- %s\n", d)
		}
		b.WriteString("\n")
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n\n", w)
	}
	if len(v.Exceptions) > 0 {
		b.WriteString("Exceptions applied:\n\n")
		for _, e := range v.Exceptions {
			fmt.Fprintf(&b, "- %s (%s): %s, until %s\n", e.ID, strings.Join(e.Packages, ", "), e.Reason, e.Expires.Format("2006-01-02"))
		}
		b.WriteString("\n")
	}
	writeTrust(&b, v.Trust)
	b.WriteString("## Summary\n\n| Severity | Total | Fixable |\n|---|---:|---:|\n")
	for _, sev := range policy.Severities {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", sev, v.Counts[sev], v.Fixable[sev])
	}
	vulns := slices.Clone(in.Vulnerabilities)
	policy.SortWorstFirst(vulns)
	b.WriteString("\n## Vulnerabilities\n\n")
	if len(vulns) == 0 {
		b.WriteString("None found.\n")
		return b.String()
	}
	b.WriteString("| Severity | ID | Package | Installed | Fixed | Target | Title |\n|---|---|---|---|---|---|---|\n")
	for _, x := range vulns {
		fixed := x.FixedVersion
		if fixed == "" {
			fixed = "—"
		}
		fmt.Fprintf(&b, "| %s | [%s](https://avd.aquasec.com/nvd/%s) | %s | %s | %s | %s | %s |\n",
			x.Severity, x.ID, strings.ToLower(x.ID), x.Package, x.InstalledVersion, fixed, x.Target, strings.ReplaceAll(x.Title, "|", "\\|"))
	}
	return b.String()
}

// writeTrust renders who signed the image and what is attested about it.
func writeTrust(b *strings.Builder, t *policy.Trust) {
	if t == nil {
		return
	}
	b.WriteString("## Signatures & attestations\n\n")
	if len(t.Signers) == 0 {
		b.WriteString("No signature verified.\n")
	}
	for _, s := range t.Signers {
		fmt.Fprintf(b, "- Signed by %s, found as %s\n", s, s.Via)
	}
	for _, a := range t.Attestations {
		fmt.Fprintf(b, "- Attestation `%s`", a.PredicateType)
		if a.BuilderID != "" {
			fmt.Fprintf(b, " (builder `%s`)", a.BuilderID)
		}
		fmt.Fprintf(b, " signed by %s\n", a.Signer)
	}
	for _, p := range t.Problems {
		fmt.Fprintf(b, "- Did not verify: %s\n", p)
	}
	if t.Error != "" {
		fmt.Fprintf(b, "- Lookup failed: %s\n", t.Error)
	}
	if t.NotLooked {
		b.WriteString("- Signatures were not looked up when the image was mirrored.\n")
	}
	b.WriteString("\n")
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "none detected"
	}
	return s
}

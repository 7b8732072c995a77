package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// SignatureRule requires an image to be signed by one of the listed signers: a public
// key (a PEM file) or a keyless identity (an OIDC issuer and a certificate identity).
// Any one listed signer suffices.
type SignatureRule struct {
	Required bool     `yaml:"required" json:"required,omitempty"`
	Keys     []string `yaml:"keys" json:"keys,omitempty"`
	// Keyless are certificate identities from the trusted root's Fulcio CAs.
	Keyless []KeylessSigner `yaml:"keyless" json:"keyless,omitempty"`
}

// KeylessSigner is one accepted keyless identity: the issuer exact or by regexp, and the
// certificate's subject alternative name exact or by regexp.
type KeylessSigner struct {
	Issuer         string `yaml:"issuer" json:"issuer,omitempty"`
	IssuerRegexp   string `yaml:"issuer_regexp" json:"issuerRegexp,omitempty"`
	Identity       string `yaml:"identity" json:"identity,omitempty"`
	IdentityRegexp string `yaml:"identity_regexp" json:"identityRegexp,omitempty"`
}

// AttestationRule requires signed in-toto attestations.
type AttestationRule struct {
	Provenance *ProvenanceRule `yaml:"provenance" json:"provenance,omitempty"`
	SBOM       *SBOMRule       `yaml:"sbom" json:"sbom,omitempty"`
}

// ProvenanceRule requires a SLSA provenance attestation, from one of the builders listed
// (globs; "**" crosses "/"; empty: any builder).
type ProvenanceRule struct {
	Required   bool     `yaml:"required" json:"required,omitempty"`
	BuilderIDs []string `yaml:"builder_ids" json:"builderIDs,omitempty"`
}

// SBOMRule requires an SPDX or CycloneDX SBOM attestation.
type SBOMRule struct {
	Required bool `yaml:"required" json:"required,omitempty"`
}

// Trust is what was verified about an image's signatures and attestations, against the
// keys of the policy judging it and the trusted root: who signed, what is attested, and
// what did not verify. It is computed per judgement from the stored signature material.
type Trust struct {
	// Signers verified a signature of the image's manifest digest.
	Signers []Signer `json:"signers,omitempty"`
	// Attestations are the verified in-toto attestations about the digest.
	Attestations []Attestation `json:"attestations,omitempty"`
	// Problems are signatures or attestations found that did not verify, and why.
	Problems []string `json:"problems,omitempty"`
	// Error says why signatures could not be looked up at all (the upstream failed).
	Error string `json:"error,omitempty"`
	// NotLooked is true when the image was mirrored before signatures were looked up.
	NotLooked bool `json:"notLooked,omitempty"`
}

// Signer is one verified signer.
type Signer struct {
	// Key is the key file that verified the signature, Fingerprint its SHA-256.
	Key         string `json:"key,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Identity and Issuer are a keyless certificate's SAN and OIDC issuer.
	Identity string `json:"identity,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	// LogIndex and IntegratedTime are the Rekor entry's, when there is one.
	LogIndex       *int64    `json:"logIndex,omitempty"`
	IntegratedTime time.Time `json:"integratedTime,omitzero"`
	// Via says where the signature was found ("tag sha256-….sig", "referrer sha256:…").
	Via string `json:"via,omitempty"`
}

func (s Signer) String() string {
	var b strings.Builder
	if s.Key != "" {
		fmt.Fprintf(&b, "key %s (sha256:%s)", s.Key, shortFP(s.Fingerprint))
	} else {
		fmt.Fprintf(&b, "%s (issuer %s)", s.Identity, s.Issuer)
	}
	if s.LogIndex != nil {
		fmt.Fprintf(&b, ", rekor log index %d at %s", *s.LogIndex, s.IntegratedTime.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func shortFP(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// Attestation is one verified in-toto attestation.
type Attestation struct {
	PredicateType string `json:"predicateType"`
	// BuilderID is a SLSA provenance's builder id.
	BuilderID string `json:"builderId,omitempty"`
	Signer    Signer `json:"signer"`
}

// Predicate types the attestation rules look for.
const (
	SLSAProvenanceV02 = "https://slsa.dev/provenance/v0.2"
	SLSAProvenanceV1  = "https://slsa.dev/provenance/v1"
)

// IsProvenance reports whether an in-toto predicate type is SLSA provenance.
func IsProvenance(predicateType string) bool {
	return predicateType == SLSAProvenanceV02 || predicateType == SLSAProvenanceV1
}

// IsSBOM reports whether an in-toto predicate type is an SPDX or CycloneDX document.
func IsSBOM(predicateType string) bool {
	return strings.HasPrefix(predicateType, "https://spdx.dev/Document") || strings.HasPrefix(predicateType, "https://cyclonedx.org/bom")
}

// UsesTrust reports whether the policy judges signatures or attestations.
func (p *Policy) UsesTrust() bool { return p.Signatures != nil || p.Attestations != nil }

// UsesTrust reports whether any policy of the set judges signatures or attestations:
// then every image's signatures are looked up when it is mirrored.
func (s *Set) UsesTrust() bool { return slices.ContainsFunc(s.Policies, (*Policy).UsesTrust) }

// KeyFiles lists every key file the set's policies name, once each.
func (s *Set) KeyFiles() []string {
	var out []string
	for _, p := range s.Policies {
		if p.Signatures == nil {
			continue
		}
		for _, k := range p.Signatures.Keys {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func (r *SignatureRule) validate(key string) error {
	for i, k := range r.Keys {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("policy: %s.signatures.keys[%d]: empty path", key, i)
		}
	}
	for i, k := range r.Keyless {
		kk := fmt.Sprintf("%s.signatures.keyless[%d]", key, i)
		if (k.Issuer == "") == (k.IssuerRegexp == "") {
			return fmt.Errorf("policy: %s: set exactly one of issuer and issuer_regexp", kk)
		}
		if (k.Identity == "") == (k.IdentityRegexp == "") {
			return fmt.Errorf("policy: %s: set exactly one of identity and identity_regexp", kk)
		}
		if _, err := anchored(k.IssuerRegexp); err != nil {
			return fmt.Errorf("policy: %s.issuer_regexp: %w", kk, err)
		}
		if _, err := anchored(k.IdentityRegexp); err != nil {
			return fmt.Errorf("policy: %s.identity_regexp: %w", kk, err)
		}
	}
	if r.Required && len(r.Keys) == 0 && len(r.Keyless) == 0 {
		return fmt.Errorf("policy: %s.signatures: required with no keys and no keyless signers: nothing could ever pass", key)
	}
	return nil
}

func (r *AttestationRule) validate(key string) error {
	if r.Provenance != nil {
		for i, g := range r.Provenance.BuilderIDs {
			if _, err := CompileGlob(g); err != nil {
				return fmt.Errorf("policy: %s.attestations.provenance.builder_ids[%d]: %w", key, i, err)
			}
		}
	}
	return nil
}

// anchored compiles a regexp that must match the whole string ("" compiles to nil).
func anchored(re string) (*regexp.Regexp, error) {
	if re == "" {
		return nil, nil
	}
	return regexp.Compile("^(?:" + re + ")$")
}

// Accepts reports whether signer s is one this rule lists.
func (r *SignatureRule) Accepts(s Signer) bool {
	if s.Key != "" {
		return slices.Contains(r.Keys, s.Key)
	}
	return slices.ContainsFunc(r.Keyless, func(k KeylessSigner) bool { return k.matches(s) })
}

func (k KeylessSigner) matches(s Signer) bool {
	return matchOne(k.Issuer, k.IssuerRegexp, s.Issuer) && matchOne(k.Identity, k.IdentityRegexp, s.Identity)
}

func matchOne(exact, re, v string) bool {
	if exact != "" {
		return exact == v
	}
	r, err := anchored(re)
	return err == nil && r != nil && r.MatchString(v)
}

func (k KeylessSigner) String() string {
	iss, id := "issuer "+k.Issuer, "identity "+k.Identity
	if k.IssuerRegexp != "" {
		iss = "issuer matching " + k.IssuerRegexp
	}
	if k.IdentityRegexp != "" {
		id = "identity matching " + k.IdentityRegexp
	}
	return id + " (" + iss + ")"
}

func (r *SignatureRule) wanted() string {
	var w []string
	for _, k := range r.Keys {
		w = append(w, "key "+k)
	}
	for _, k := range r.Keyless {
		w = append(w, k.String())
	}
	return strings.Join(w, " or ")
}

// checkTrust runs the signature and attestation rules.
func (p *Policy) checkTrust(t *Trust) []Reason {
	if !p.UsesTrust() {
		return nil
	}
	if t == nil {
		t = &Trust{NotLooked: true}
	}
	var lookup []string
	switch {
	case t.Error != "":
		lookup = []string{"signatures could not be looked up: " + t.Error + "; the next pull or tag refresh looks again"}
	case t.NotLooked:
		lookup = []string{"signatures were not looked up when this image was mirrored; pull it by tag again to look them up"}
	}
	accepted := func(s Signer) bool { return p.Signatures == nil || p.Signatures.Accepts(s) }
	var rs []Reason
	if r := p.Signatures; r != nil && r.Required {
		if !slices.ContainsFunc(t.Signers, accepted) {
			var details []string
			for _, s := range t.Signers {
				details = append(details, "signed by "+s.String()+", policy wants "+r.wanted())
			}
			details = append(details, t.Problems...)
			details = append(details, lookup...)
			msg := "the image is not signed by a signer this policy accepts"
			if len(t.Signers) == 0 && len(t.Problems) == 0 {
				msg = "the image has no signature"
			}
			if len(details) == 0 {
				details = []string{"policy wants a signature by " + r.wanted() + "; sign the image (cosign sign) and pull it again"}
			}
			rs = append(rs, Reason{Rule: "signatures", Message: msg, Details: details})
		}
	}
	a := p.Attestations
	if a == nil {
		return rs
	}
	if pr := a.Provenance; pr != nil && pr.Required {
		var details []string
		ok := false
		for _, at := range t.Attestations {
			if !IsProvenance(at.PredicateType) {
				continue
			}
			if !accepted(at.Signer) {
				details = append(details, fmt.Sprintf("provenance signed by %s, not a signer this policy accepts", at.Signer))
				continue
			}
			if len(pr.BuilderIDs) == 0 || slices.ContainsFunc(pr.BuilderIDs, func(g string) bool { return Match(g, at.BuilderID) }) {
				ok = true
				break
			}
			details = append(details, fmt.Sprintf("provenance by builder %q, policy wants a builder id matching %s", at.BuilderID, strings.Join(pr.BuilderIDs, " or ")))
		}
		if !ok {
			if len(details) == 0 {
				details = append(details, "no signed SLSA provenance attestation was found")
			}
			details = append(details, lookup...)
			rs = append(rs, Reason{Rule: "provenance", Message: "the image has no accepted SLSA provenance", Details: details})
		}
	}
	if sr := a.SBOM; sr != nil && sr.Required {
		if !slices.ContainsFunc(t.Attestations, func(at Attestation) bool { return IsSBOM(at.PredicateType) && accepted(at.Signer) }) {
			rs = append(rs, Reason{Rule: "sbom", Message: "the image has no signed SBOM attestation (SPDX or CycloneDX) by a signer this policy accepts",
				Details: append([]string{"attach one with cosign attest --type spdxjson"}, lookup...)})
		}
	}
	return rs
}

package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Set is a policy file: named policies, the scopes that choose one per repository, the
// exceptions, and who to ask for one.
type Set struct {
	// Contact is the line every denial ends with: how to request an exception.
	Contact string `yaml:"contact" json:"contact,omitempty"`
	// Default names the policy for repositories no scope matches.
	Default  string    `yaml:"default" json:"default"`
	Policies []*Policy `yaml:"policies" json:"policies"`
	// Scopes choose a policy per repository glob; the first match wins.
	Scopes     []Scope     `yaml:"scopes" json:"scopes,omitempty"`
	Exceptions []Exception `yaml:"exceptions" json:"exceptions,omitempty"`
	// BaseImages are extra globs check-dockerfile admits in FROM lines.
	BaseImages []string `yaml:"base_images" json:"baseImages,omitempty"`

	// Filled by Validate, read on every judgement: the compiled globs and the content
	// hash, so a pull neither compiles a regexp nor encodes the set.
	globs map[string]*regexp.Regexp
	hash  string
}

// Policy is one set of rules. A rule left out does not apply.
type Policy struct {
	Name string `yaml:"name" json:"name"`
	// Mode is enforce (default) or audit: computed and recorded, served anyway.
	Mode            string             `yaml:"mode" json:"mode,omitempty"`
	Vulnerabilities *VulnerabilityRule `yaml:"vulnerabilities" json:"vulnerabilities,omitempty"`
	// NonRoot requires the image config's User to be set and not root or 0.
	NonRoot bool `yaml:"non_root" json:"nonRoot,omitempty"`
	// NoShell denies images containing any of Shells.
	NoShell bool     `yaml:"no_shell" json:"noShell,omitempty"`
	Shells  []string `yaml:"shells" json:"shells,omitempty"`
	// NoPackageManager denies images containing an executable named in PackageManagers
	// in a bin directory.
	NoPackageManager bool     `yaml:"no_package_manager" json:"noPackageManager,omitempty"`
	PackageManagers  []string `yaml:"package_managers" json:"packageManagers,omitempty"`
	// MaxOSPackages bounds the number of OS packages (0: no bound).
	MaxOSPackages int `yaml:"max_os_packages" json:"maxOSPackages,omitempty"`
	// MaxAge bounds the time since the image config's created date ("30d", "720h").
	MaxAge Duration `yaml:"max_age" json:"maxAge,omitempty"`
	// Pinned denies pulls by tag: the repositories it applies to must be pulled by digest.
	Pinned bool `yaml:"pinned" json:"pinned,omitempty"`
	// DenyEOSL denies end-of-life OS releases.
	DenyEOSL bool `yaml:"deny_eosl" json:"denyEOSL,omitempty"`
	// DenyUnanalysedJARs denies images holding JAR files the scanner could not identify
	// (no Java DB loaded); otherwise they are a warning in the verdict.
	DenyUnanalysedJARs bool `yaml:"deny_unanalysed_jars" json:"denyUnanalysedJars,omitempty"`
	// Artifacts are the artifact types (globs, e.g. "application/spdx+json") served on
	// their own. Signatures, attestations and SBOMs of an image are served with it, when
	// the image is allowed; an artifact with no subject only when its type is listed.
	Artifacts []string `yaml:"artifacts" json:"artifacts,omitempty"`
	// Signatures and Attestations judge who signed the image and what is attested about
	// it, per platform manifest, offline (see Trust).
	Signatures   *SignatureRule   `yaml:"signatures" json:"signatures,omitempty"`
	Attestations *AttestationRule `yaml:"attestations" json:"attestations,omitempty"`
}

// VulnerabilityRule denies on findings.
type VulnerabilityRule struct {
	// Severity: deny a finding at or above it (CRITICAL, HIGH, MEDIUM, LOW; "" = none).
	Severity string `yaml:"severity" json:"severity,omitempty"`
	// OnlyFixable: the severity threshold counts only findings with a fix.
	OnlyFixable bool `yaml:"only_fixable" json:"onlyFixable,omitempty"`
	// Max bounds the count per severity (after exceptions), e.g. {MEDIUM: 10}.
	Max map[string]int `yaml:"max" json:"max,omitempty"`
	// DenyIDs denies specific vulnerabilities whatever their severity.
	DenyIDs []string `yaml:"deny_ids" json:"denyIDs,omitempty"`
}

// Scope chooses a policy for the repositories matching any of its globs.
type Scope struct {
	Match  []string `yaml:"match" json:"match"`
	Policy string   `yaml:"policy" json:"policy"`
}

// Exception stops a vulnerability from counting, until it expires.
type Exception struct {
	ID     string `yaml:"id" json:"id"`
	Reason string `yaml:"reason" json:"reason"`
	// Expires is the last day the exception applies (YYYY-MM-DD, through the end of day
	// UTC) or an RFC 3339 time.
	Expires Time `yaml:"expires" json:"expires"`
	// Repositories and Packages narrow the exception (globs; empty = any).
	Repositories []string `yaml:"repositories" json:"repositories,omitempty"`
	Packages     []string `yaml:"packages" json:"packages,omitempty"`
}

// Default shells and package managers the rules look for.
var (
	DefaultShells          = []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/bin/ash", "/bin/dash", "/bin/zsh", "/usr/bin/bash", "/usr/bin/sh"}
	DefaultPackageManagers = []string{"apk", "apt", "apt-get", "dpkg", "rpm", "microdnf", "dnf", "yum"}
)

// DefaultSet is the policy until one is configured: deny when a vulnerability with a fix
// available is HIGH or CRITICAL.
func DefaultSet() *Set {
	s := &Set{
		Default: "default",
		Policies: []*Policy{{Name: "default", Mode: "enforce",
			Vulnerabilities: &VulnerabilityRule{Severity: "HIGH", OnlyFixable: true}}},
	}
	if err := s.Validate(); err != nil {
		panic(err) // a constant set: cannot happen
	}
	return s
}

// Load reads and validates a policy file.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.resolveKeys(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// resolveKeys makes the key files the policies name relative to dir (the policy file's
// directory) and checks each can be read: a missing key is an error at load, not a
// denial of every image later.
func (s *Set) resolveKeys(dir string) error {
	changed := false
	for i, p := range s.Policies {
		if p.Signatures == nil {
			continue
		}
		for j, k := range p.Signatures.Keys {
			if !filepath.IsAbs(k) {
				k, changed = filepath.Join(dir, k), true
				p.Signatures.Keys[j] = k
			}
			f, err := os.Open(k)
			if err != nil {
				return fmt.Errorf("policy: policies[%d].signatures.keys[%d]: %w", i, j, err)
			}
			f.Close()
		}
	}
	if changed {
		return s.Validate() // the hash covers the resolved paths
	}
	return nil
}

var unknownKey = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// Parse decodes a policy file strictly (unknown keys are errors) and validates it.
func Parse(b []byte) (*Set, error) {
	s := &Set{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("policy: empty file")
		}
		if m := unknownKey.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("policy: line %s: unknown key %q", m[1], m[2])
		}
		return nil, fmt.Errorf("policy: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks the set and names the first key that is wrong.
func (s *Set) Validate() error {
	if len(s.Policies) == 0 {
		return fmt.Errorf("policy: policies: at least one policy is required")
	}
	names := map[string]bool{}
	for i, p := range s.Policies {
		key := fmt.Sprintf("policies[%d]", i)
		if p == nil {
			return fmt.Errorf("policy: %s: empty policy", key)
		}
		if p.Name == "" {
			return fmt.Errorf("policy: %s.name: required", key)
		}
		if names[p.Name] {
			return fmt.Errorf("policy: %s.name: %q is defined twice", key, p.Name)
		}
		names[p.Name] = true
		for j, g := range p.Artifacts {
			if _, err := CompileGlob(g); err != nil {
				return fmt.Errorf("policy: %s.artifacts[%d]: %w", key, j, err)
			}
		}
		switch p.Mode {
		case "":
			p.Mode = "enforce"
		case "enforce", "audit":
		default:
			return fmt.Errorf("policy: %s.mode: %q is not enforce or audit", key, p.Mode)
		}
		if v := p.Vulnerabilities; v != nil {
			if v.Severity != "" {
				v.Severity = strings.ToUpper(v.Severity)
				if !slices.Contains(Severities[:4], v.Severity) {
					return fmt.Errorf("policy: %s.vulnerabilities.severity: %q is not CRITICAL, HIGH, MEDIUM or LOW", key, v.Severity)
				}
			}
			for sev, n := range v.Max {
				if !slices.Contains(Severities, strings.ToUpper(sev)) {
					return fmt.Errorf("policy: %s.vulnerabilities.max: %q is not a severity", key, sev)
				}
				if n < 0 {
					return fmt.Errorf("policy: %s.vulnerabilities.max.%s: must not be negative", key, sev)
				}
			}
			for j, id := range v.DenyIDs {
				if strings.TrimSpace(id) == "" {
					return fmt.Errorf("policy: %s.vulnerabilities.deny_ids[%d]: empty id", key, j)
				}
			}
		}
		if p.Signatures != nil {
			if err := p.Signatures.validate(key); err != nil {
				return err
			}
		}
		if p.Attestations != nil {
			if err := p.Attestations.validate(key); err != nil {
				return err
			}
		}
		if p.MaxOSPackages < 0 {
			return fmt.Errorf("policy: %s.max_os_packages: must not be negative", key)
		}
		if p.MaxAge < 0 {
			return fmt.Errorf("policy: %s.max_age: must not be negative", key)
		}
		for j, sh := range p.Shells {
			if !strings.HasPrefix(sh, "/") {
				return fmt.Errorf("policy: %s.shells[%d]: %q must be an absolute path", key, j, sh)
			}
		}
		for j, pm := range p.PackageManagers {
			if pm == "" || strings.Contains(pm, "/") {
				return fmt.Errorf("policy: %s.package_managers[%d]: %q must be an executable name", key, j, pm)
			}
		}
	}
	if s.Default == "" {
		s.Default = s.Policies[0].Name
	}
	if !names[s.Default] {
		return fmt.Errorf("policy: default: no policy is named %q", s.Default)
	}
	for i, sc := range s.Scopes {
		if len(sc.Match) == 0 {
			return fmt.Errorf("policy: scopes[%d].match: at least one glob is required", i)
		}
		for j, g := range sc.Match {
			if _, err := CompileGlob(g); err != nil {
				return fmt.Errorf("policy: scopes[%d].match[%d]: %w", i, j, err)
			}
		}
		if !names[sc.Policy] {
			return fmt.Errorf("policy: scopes[%d].policy: no policy is named %q", i, sc.Policy)
		}
	}
	for i, e := range s.Exceptions {
		key := fmt.Sprintf("exceptions[%d]", i)
		if strings.TrimSpace(e.ID) == "" {
			return fmt.Errorf("policy: %s.id: required", key)
		}
		if strings.TrimSpace(e.Reason) == "" {
			return fmt.Errorf("policy: %s.reason: required (say why %s is accepted)", key, e.ID)
		}
		if e.Expires.IsZero() {
			return fmt.Errorf("policy: %s.expires: required (YYYY-MM-DD): exceptions do not last forever", key)
		}
		for j, g := range append(slices.Clone(e.Repositories), e.Packages...) {
			if _, err := CompileGlob(g); err != nil {
				return fmt.Errorf("policy: %s: glob %d: %w", key, j, err)
			}
		}
	}
	for i, g := range s.BaseImages {
		if _, err := CompileGlob(g); err != nil {
			return fmt.Errorf("policy: base_images[%d]: %w", i, err)
		}
	}
	s.globs = map[string]*regexp.Regexp{}
	for _, sc := range s.Scopes {
		for _, g := range sc.Match {
			s.globs[g], _ = CompileGlob(g)
		}
	}
	for _, e := range s.Exceptions {
		for _, g := range append(slices.Clone(e.Repositories), e.Packages...) {
			s.globs[g], _ = CompileGlob(g)
		}
	}
	s.hash = ""
	s.hash = s.computeHash()
	return nil
}

// match is Match with the globs Validate compiled.
func (s *Set) match(g, str string) bool {
	if re, ok := s.globs[g]; ok {
		return re != nil && re.MatchString(str)
	}
	return Match(g, str)
}

// Duration is a time.Duration that also accepts days ("30d").
type Duration time.Duration

// UnmarshalYAML accepts Go durations and whole days.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses "30d", "12h", "1h30m".
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 30d or 720h)", s)
	}
	return d, nil
}

func (d Duration) String() string {
	if d%Duration(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", time.Duration(d)/(24*time.Hour))
	}
	return time.Duration(d).String()
}

// Time is an exception expiry: a date (the end of that day, UTC) or an RFC 3339 time.
type Time struct{ time.Time }

// UnmarshalYAML accepts YYYY-MM-DD and RFC 3339.
func (t *Time) UnmarshalYAML(n *yaml.Node) error {
	if d, err := time.Parse(time.DateOnly, n.Value); err == nil {
		t.Time = d.Add(24*time.Hour - time.Nanosecond)
		return nil
	}
	v, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid date %q (use YYYY-MM-DD)", n.Line, n.Value)
	}
	t.Time = v
	return nil
}

// CompileGlob turns a repository glob into a regexp: "*" matches within one path
// component, "**" across components, "?" one character.
func CompileGlob(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, fmt.Errorf("empty glob")
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Match reports whether s matches glob g (an invalid glob matches nothing).
func Match(g, s string) bool {
	re, err := CompileGlob(g)
	return err == nil && re.MatchString(s)
}

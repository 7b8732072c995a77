// Package config is goldproxy's configuration tree: one struct, decoded strictly (an
// unknown key is an error naming its line), defaults filled in one place, validated by
// Validate with errors that name the key, secrets only by environment variable or file
// reference, and the TLS key pair reloaded when it is renewed.
//
// It never holds a secret written inline in the file, and never starts anything.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/goldproxy/goldproxy/configs"
	"github.com/goldproxy/goldproxy/policy"
)

// Config is the whole configuration tree of a goldproxy server. It is decoded strictly
// (unknown keys are errors) and checked by Validate, which names the offending key.
type Config struct {
	Listen string `yaml:"listen"`
	// ExternalURL is the URL clients reach the proxy at: the token realm and report links.
	ExternalURL string        `yaml:"external_url"`
	DataDir     string        `yaml:"data_dir"`
	Log         LogConfig     `yaml:"log"`
	Storage     StorageConfig `yaml:"storage"`
	Tags        TagConfig     `yaml:"tags"`
	// UpstreamTimeout bounds connecting to an upstream and waiting for its response
	// headers; a blob body streams for as long as bytes keep coming.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// UpstreamIdleTimeout aborts a transfer from an upstream that sent no bytes this long.
	UpstreamIdleTimeout time.Duration `yaml:"upstream_idle_timeout"`
	// ClientWriteTimeout drops a client fed from a shared fetch that accepts no bytes
	// this long: the fetch goes on without it.
	ClientWriteTimeout time.Duration `yaml:"client_write_timeout"`
	// UpstreamBackoff is how long an upstream that failed at the network level (refused,
	// reset, timed out) is not asked again: tags known to the store are served from it.
	UpstreamBackoff time.Duration     `yaml:"upstream_backoff"`
	Limits          LimitsConfig      `yaml:"limits"`
	Upstreams       []UpstreamConfig  `yaml:"upstreams"`
	Aliases         map[string]string `yaml:"aliases"`
	Allow           AllowConfig       `yaml:"allow"`
	Scan            ScanConfig        `yaml:"scan"`
	// Policy is the policy file; empty means the built-in default (deny fixable HIGH and
	// CRITICAL vulnerabilities).
	Policy   string        `yaml:"policy"`
	DB       DBConfig      `yaml:"db"`
	Webhooks WebhookConfig `yaml:"webhooks"`
	// Trust is how image signatures and attestations are found and verified.
	Trust    TrustConfig    `yaml:"trust"`
	Prefetch PrefetchConfig `yaml:"prefetch"`
	// Auth is client authentication (docker login); off when no htpasswd is set.
	Auth ClientAuthConfig `yaml:"auth"`
	TLS  TLSConfig        `yaml:"tls"`
	// Metrics is where Prometheus scrapes /metrics (a separate listener).
	Metrics MetricsConfig `yaml:"metrics"`

	// dir is the directory of the config file; relative list paths resolve against it.
	dir string
}

// TrustConfig is how signatures and attestations are found and verified (offline).
type TrustConfig struct {
	// TrustedRoot is a Sigstore trusted_root.json (Fulcio CAs, Rekor and CT log keys,
	// TSAs) for keyless signatures; re-read when it changes. Empty: keyless signatures do
	// not verify.
	TrustedRoot string `yaml:"trusted_root"`
	// RequireSCT requires a Fulcio certificate to carry a signed certificate timestamp
	// from a CT log of the trusted root (default true).
	RequireSCT *bool `yaml:"require_sct"`
	// RequireTlog requires a keyless signature to come with a Rekor entry (default
	// true); false accepts a signed timestamp from a TSA of the root instead (a private
	// Sigstore without Rekor).
	RequireTlog *bool `yaml:"require_tlog"`
	// Discover looks up every image's signatures when it is mirrored, even when no
	// policy judges them (so they are mirrored for clients that verify); they are looked
	// up anyway whenever a policy has signature or attestation rules.
	Discover bool `yaml:"discover"`
	// Refresh is how often the trusted root and key files are checked for changes.
	Refresh time.Duration `yaml:"refresh"`
}

// SCTRequired is RequireSCT with its default.
func (t TrustConfig) SCTRequired() bool { return t.RequireSCT == nil || *t.RequireSCT }

// TlogRequired is RequireTlog with its default.
func (t TrustConfig) TlogRequired() bool { return t.RequireTlog == nil || *t.RequireTlog }

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// TagConfig controls how long tag resolutions are trusted.
type TagConfig struct {
	TTL time.Duration `yaml:"ttl"`
}

// UpstreamConfig is one registry goldproxy pulls from.
type UpstreamConfig struct {
	Name     string        `yaml:"name"`
	URL      string        `yaml:"url"`
	Aliases  []string      `yaml:"aliases"`
	Auth     AuthConfig    `yaml:"auth"`
	Insecure bool          `yaml:"insecure"`
	CAFile   string        `yaml:"ca_file"`
	TagTTL   time.Duration `yaml:"tag_ttl"`
}

// AuthConfig holds upstream credentials by reference: secrets come from the
// environment or from files, never from the config itself.
type AuthConfig struct {
	Username     string `yaml:"username"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	TokenEnv     string `yaml:"token_env"`
	TokenFile    string `yaml:"token_file"`
	Keychain     bool   `yaml:"keychain"`
}

// DBConfig says where the vulnerability database comes from.
type DBConfig struct {
	// Dir is a local directory with trivy.db and metadata.json, kept up to date by the site
	// (air-gapped). When empty the DB lives under <data_dir>/trivy-db and is fetched from
	// Repository through the matching upstream and its credentials.
	Dir        string `yaml:"dir"`
	Repository string `yaml:"repository"`
	// Refresh is how often the source is checked for a newer DB.
	Refresh time.Duration `yaml:"refresh"`
	// JavaDir (air-gapped: holds java-db/) or JavaRepository: the Java DB Trivy needs to
	// identify JAR files. Without one, JAR files are not analysed.
	JavaDir        string `yaml:"java_dir"`
	JavaRepository string `yaml:"java_repository"`
}

// MetricsConfig places the metrics listener.
type MetricsConfig struct {
	// Listen is host:port for /metrics; empty turns the listener off.
	Listen string `yaml:"listen"`
}

// PrefetchConfig lists images to keep warm: pulled, scanned and judged on start and
// every Interval, tags re-resolved each time.
type PrefetchConfig struct {
	Lists    []string      `yaml:"lists"`
	Interval time.Duration `yaml:"interval"`
}

// AllowConfig lists the repositories that may be pulled at all.
type AllowConfig struct {
	Repositories []string `yaml:"repositories"`
	Lists        []string `yaml:"lists"`
}

// Default returns the embedded default configuration (configs/goldproxy.yaml).
func Default() (*Config, error) {
	return Parse(configs.DefaultConfig, "")
}

// Load reads, decodes and validates the config file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// Parse decodes a config strictly, fills defaults and validates it. dir is the
// directory relative list paths resolve against.
func Parse(b []byte, dir string) (*Config, error) {
	cfg := &Config{dir: dir}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) /* an empty file means all defaults */ {
		msg := err.Error()
		if m := unknownField.FindStringSubmatch(msg); m != nil {
			hint := ""
			switch m[2] {
			case "password", "token", "access_key", "secret_key", "dsn":
				hint = fmt.Sprintf(" (secrets are never inline: use %s_env or %s_file)", m[2], m[2])
			}
			return nil, fmt.Errorf("config: line %s: unknown key %q%s", m[1], m[2], hint)
		}
		return nil, fmt.Errorf("config: %s", strings.TrimPrefix(msg, "yaml: "))
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":5000"
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Storage.Driver == "" {
		c.Storage.Driver = "filesystem"
	}
	if c.Storage.Metadata.Driver == "" {
		c.Storage.Metadata.Driver = "bolt"
	}
	if c.Tags.TTL == 0 {
		c.Tags.TTL = 5 * time.Minute
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = 30 * time.Second
	}
	if c.UpstreamIdleTimeout == 0 {
		c.UpstreamIdleTimeout = 30 * time.Second
	}
	if c.ClientWriteTimeout == 0 {
		c.ClientWriteTimeout = 30 * time.Second
	}
	if c.UpstreamBackoff == 0 {
		c.UpstreamBackoff = 30 * time.Second
	}
	if c.Limits.ManifestBytes == 0 {
		c.Limits.ManifestBytes = 4 << 20
	}
	if c.Limits.Layers == 0 {
		c.Limits.Layers = 500
	}
	if c.Limits.LayerUncompressedBytes == 0 {
		c.Limits.LayerUncompressedBytes = 8 << 30
	}
	if c.Limits.ImageUncompressedBytes == 0 {
		c.Limits.ImageUncompressedBytes = 24 << 30
	}
	if c.Limits.CompressionRatio == 0 {
		c.Limits.CompressionRatio = 100
	}
	if c.Scan.Workers == 0 {
		c.Scan.Workers = runtime.NumCPU()
	}
	if c.Scan.Wait == 0 {
		c.Scan.Wait = 10 * time.Minute
	}
	if c.Scan.Timeout == 0 {
		c.Scan.Timeout = 30 * time.Minute
	}
	if c.Scan.Lease == 0 {
		c.Scan.Lease = 30 * time.Second
	}
	if c.Scan.OnScanError == "" {
		c.Scan.OnScanError = "deny"
	}
	if c.Auth.TokenTTL == 0 {
		c.Auth.TokenTTL = 5 * time.Minute
	}
	if c.Auth.FailedLogins == 0 {
		c.Auth.FailedLogins = 10
	}
	if c.Storage.GC.Interval == 0 {
		c.Storage.GC.Interval = time.Hour
	}
	if c.Storage.GC.Grace == 0 {
		c.Storage.GC.Grace = 10 * time.Minute
	}
	if c.Prefetch.Interval == 0 {
		c.Prefetch.Interval = 6 * time.Hour
	}
	if c.DB.JavaRepository == "" {
		c.DB.JavaRepository = "ghcr.io/aquasecurity/trivy-java-db:1"
	}
	if c.DB.Refresh == 0 {
		c.DB.Refresh = 6 * time.Hour
	}
	if c.Trust.Refresh == 0 {
		c.Trust.Refresh = 30 * time.Second
	}
	if c.Webhooks.Timeout == 0 {
		c.Webhooks.Timeout = 10 * time.Second
	}
	if c.Webhooks.Retries == 0 {
		c.Webhooks.Retries = 5
	}
	if c.DB.Repository == "" {
		c.DB.Repository = "ghcr.io/aquasecurity/trivy-db:2"
	}
}

// Validate checks every key and names the first one that is wrong.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("config: listen: %q is not host:port", c.Listen)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("config: log.format: %q is not text or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if err := c.Storage.validate(); err != nil {
		return err
	}
	if c.Storage.GC.MaxSize < 0 || c.Storage.GC.MaxAge < 0 || c.Storage.GC.Grace < 0 {
		return fmt.Errorf("config: storage.gc: sizes and durations must not be negative")
	}
	if c.Storage.GC.Interval < time.Minute {
		return fmt.Errorf("config: storage.gc.interval: %s is too often (at least 1m)", c.Storage.GC.Interval)
	}
	if c.Tags.TTL < 0 {
		return fmt.Errorf("config: tags.ttl: must not be negative")
	}
	if c.UpstreamTimeout < 0 {
		return fmt.Errorf("config: upstream_timeout: must not be negative")
	}
	if c.UpstreamIdleTimeout < 0 {
		return fmt.Errorf("config: upstream_idle_timeout: must not be negative")
	}
	if c.ClientWriteTimeout < 0 {
		return fmt.Errorf("config: client_write_timeout: must not be negative")
	}
	if c.UpstreamBackoff < 0 {
		return fmt.Errorf("config: upstream_backoff: must not be negative")
	}
	if c.Limits.ManifestBytes < 0 {
		return fmt.Errorf("config: limits.manifest_bytes: must not be negative")
	}
	if c.Limits.Layers < 0 {
		return fmt.Errorf("config: limits.layers: must not be negative")
	}
	if c.Limits.LayerUncompressedBytes < 0 {
		return fmt.Errorf("config: limits.layer_uncompressed_bytes: must not be negative")
	}
	if c.Limits.ImageUncompressedBytes < 0 {
		return fmt.Errorf("config: limits.image_uncompressed_bytes: must not be negative")
	}
	if c.Limits.CompressionRatio < 0 {
		return fmt.Errorf("config: limits.compression_ratio: must not be negative")
	}
	if len(c.Upstreams) == 0 {
		return fmt.Errorf("config: upstreams: at least one upstream is required")
	}
	seen := map[string]string{}
	for i, u := range c.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			return fmt.Errorf("config: %s.name: required", key)
		}
		if strings.ContainsAny(u.Name, "/ ") {
			return fmt.Errorf("config: %s.name: %q must be a registry host, without scheme or path", key, u.Name)
		}
		pu, err := url.Parse(u.URL)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("config: %s.url: %q is not an http(s) URL", key, u.URL)
		}
		if pu.Path != "" && pu.Path != "/" {
			return fmt.Errorf("config: %s.url: %q must not have a path", key, u.URL)
		}
		for _, h := range append([]string{u.Name}, u.Aliases...) {
			if prev, dup := seen[h]; dup {
				return fmt.Errorf("config: %s: host %q is already used by %s", key, h, prev)
			}
			seen[h] = key
		}
		a := u.Auth
		if a.PasswordEnv != "" && a.PasswordFile != "" {
			return fmt.Errorf("config: %s.auth: set password_env or password_file, not both", key)
		}
		if a.TokenEnv != "" && a.TokenFile != "" {
			return fmt.Errorf("config: %s.auth: set token_env or token_file, not both", key)
		}
		if (a.PasswordEnv != "" || a.PasswordFile != "") && a.Username == "" {
			return fmt.Errorf("config: %s.auth.username: required with a password", key)
		}
		if u.CAFile != "" {
			if _, err := os.Stat(c.Resolve(u.CAFile)); err != nil {
				return fmt.Errorf("config: %s.ca_file: %w", key, err)
			}
		}
		if u.TagTTL < 0 {
			return fmt.Errorf("config: %s.tag_ttl: must not be negative", key)
		}
	}
	for alias, target := range c.Aliases {
		if alias == "" || strings.Contains(alias, "/") {
			return fmt.Errorf("config: aliases.%s: an alias is one path component", alias)
		}
		host, _, _ := strings.Cut(target, "/")
		if _, ok := seen[host]; !ok {
			return fmt.Errorf("config: aliases.%s: %q does not start with a configured upstream", alias, target)
		}
	}
	if c.Scan.Workers < 0 {
		return fmt.Errorf("config: scan.workers: must be positive")
	}
	if c.Scan.Wait < 0 || c.Scan.Timeout < 0 {
		return fmt.Errorf("config: scan.wait and scan.timeout must not be negative")
	}
	if c.Scan.Lease < 0 || (c.Scan.Lease > 0 && c.Scan.Lease < 300*time.Millisecond) {
		return fmt.Errorf("config: scan.lease: %s is too short to renew (at least 300ms)", c.Scan.Lease)
	}
	switch c.Scan.OnScanError {
	case "deny", "allow":
	default:
		return fmt.Errorf("config: scan.on_scan_error: %q is not deny or allow", c.Scan.OnScanError)
	}
	if c.DB.Refresh < time.Minute {
		return fmt.Errorf("config: db.refresh: %s is too often (at least 1m)", c.DB.Refresh)
	}
	for i, u := range c.Webhooks.URLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			return fmt.Errorf("config: webhooks.urls[%d]: %q is not an http(s) URL", i, u)
		}
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fmt.Errorf("config: tls: set both cert and key")
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		return fmt.Errorf("config: tls.client_ca: needs tls.cert and tls.key")
	}
	for _, f := range []struct{ key, path string }{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.client_ca", c.TLS.ClientCA}} {
		if f.path != "" {
			if _, err := os.Stat(c.Resolve(f.path)); err != nil {
				return fmt.Errorf("config: %s: %w", f.key, err)
			}
		}
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return fmt.Errorf("config: metrics.listen: %q is not host:port", c.Metrics.Listen)
		}
	}
	if c.Auth.Htpasswd != "" {
		if _, err := os.Stat(c.Resolve(c.Auth.Htpasswd)); err != nil {
			return fmt.Errorf("config: auth.htpasswd: %w", err)
		}
	}
	for i, cidr := range c.Auth.TrustedProxies {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return fmt.Errorf("config: auth.trusted_proxies[%d]: %q is not a CIDR (e.g. 10.0.0.0/8)", i, cidr)
		}
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("config: external_url: %q is not an http(s)://host[:port] URL", c.ExternalURL)
		}
		c.ExternalURL = strings.TrimSuffix(c.ExternalURL, "/")
	}
	if c.Auth.TokenTTL < time.Second || c.Auth.FailedLogins < 0 {
		return fmt.Errorf("config: auth: token_ttl must be at least 1s and failed_logins_per_minute positive")
	}
	for who, globs := range c.Auth.Scopes {
		for i, g := range globs {
			if _, err := policy.CompileGlob(g); err != nil {
				return fmt.Errorf("config: auth.scopes.%s[%d]: %w", who, i, err)
			}
		}
	}
	if c.Policy != "" {
		if _, err := os.Stat(c.Resolve(c.Policy)); err != nil {
			return fmt.Errorf("config: policy: %w", err)
		}
	}
	if c.Trust.TrustedRoot != "" {
		if _, err := os.Stat(c.Resolve(c.Trust.TrustedRoot)); err != nil {
			return fmt.Errorf("config: trust.trusted_root: %w", err)
		}
	}
	if c.Trust.Refresh < time.Second {
		return fmt.Errorf("config: trust.refresh: %s is too often (at least 1s)", c.Trust.Refresh)
	}
	if c.DB.Dir != "" {
		if fi, err := os.Stat(c.Resolve(c.DB.Dir)); err != nil || !fi.IsDir() {
			return fmt.Errorf("config: db.dir: %q is not a directory", c.DB.Dir)
		}
	}
	for i, g := range c.Allow.Repositories {
		if _, err := policy.CompileGlob(g); err != nil {
			return fmt.Errorf("config: allow.repositories[%d]: %w", i, err)
		}
	}
	for i, l := range c.Prefetch.Lists {
		if _, err := os.Stat(c.Resolve(l)); err != nil {
			return fmt.Errorf("config: prefetch.lists[%d]: %w", i, err)
		}
	}
	if c.Prefetch.Interval < time.Minute {
		return fmt.Errorf("config: prefetch.interval: %s is too often (at least 1m)", c.Prefetch.Interval)
	}
	for i, l := range c.Allow.Lists {
		if _, err := os.Stat(c.Resolve(l)); err != nil {
			return fmt.Errorf("config: allow.lists[%d]: %w", i, err)
		}
	}
	return nil
}

// External is the URL clients reach the proxy at: external_url, else
// http(s)://localhost:<listen port>. The token realm and report links use it; a request's
// Host header never does.
func (c *Config) External() string {
	if c.ExternalURL != "" {
		return c.ExternalURL
	}
	scheme := "http"
	if c.TLS.Cert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return scheme + "://localhost"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Resolve makes a path from the config relative to the config file's directory.
func (c *Config) Resolve(p string) string {
	if filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Secret reads a secret from an environment variable or a file.
func Secret(env, file string) (string, error) {
	switch {
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}

package config

import (
	"fmt"
	"time"
)

// ScanConfig controls the scanning gate.
type ScanConfig struct {
	// Workers is how many scans run at once (default: number of CPUs); more wait in a queue.
	Workers int `yaml:"workers"`
	// Wait is how long a pull waits for its scan before getting 503 with Retry-After; the
	// scan goes on.
	Wait time.Duration `yaml:"wait"`
	// Timeout bounds one scan; past it the image is denied (fail closed).
	Timeout time.Duration `yaml:"timeout"`
	// OnScanError is "deny" (default: fail closed) or "allow" (explicit, logged opt-in).
	OnScanError string `yaml:"on_scan_error"`
	// Lease is how long a replica's claim on a scan lasts unrenewed, with metadata shared
	// by replicas (PostgreSQL): a replica that dies mid-scan is taken over after it.
	Lease time.Duration `yaml:"lease"`
}

// WebhookConfig lists the endpoints told when a stored verdict flips.
type WebhookConfig struct {
	URLs []string `yaml:"urls"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many more times a failed delivery is tried, with doubling backoff.
	Retries int `yaml:"retries"`
	// SecretEnv or SecretFile hold the key bodies are signed with (HMAC-SHA256).
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
}

// GCConfig bounds the store. Least recently pulled images go first.
type GCConfig struct {
	// MaxSize is the largest the blob store may grow (e.g. 50GiB); 0: no bound.
	MaxSize ByteSize `yaml:"max_size"`
	// MaxAge evicts images not pulled for this long; 0: no bound.
	MaxAge time.Duration `yaml:"max_age"`
	// Interval is how often the bounds are enforced.
	Interval time.Duration `yaml:"interval"`
	// Grace protects images pulled this recently: a client between its manifest and its
	// blobs never loses them.
	Grace time.Duration `yaml:"grace"`
}

// ClientAuthConfig turns on client authentication.
type ClientAuthConfig struct {
	// Htpasswd is a file of users (bcrypt hashes only, as `htpasswd -B` writes them).
	Htpasswd string `yaml:"htpasswd"`
	// Scopes limit what a user or robot may pull (repository globs); a name without
	// scopes may pull everything the allowlist admits.
	Scopes map[string][]string `yaml:"scopes"`
	// Anonymous allows pulls without credentials. Default: on only when there are no users.
	Anonymous *bool `yaml:"anonymous"`
	// TokenTTL is how long an issued bearer token is valid.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// TokenKeyFile holds the key tokens are signed with (share it between replicas);
	// empty: a random key per process.
	TokenKeyFile string `yaml:"token_key_file"`
	// FailedLogins is how many failed logins a client address, and a user name, may make
	// per minute.
	FailedLogins int `yaml:"failed_logins_per_minute"`
	// TrustedProxies are the CIDRs of load balancers whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Admins may manage robots through the API.
	Admins []string `yaml:"admins"`
}

// ByteSize is a size in bytes written as 500MB, 10GiB or a plain number.
type ByteSize int64

// UnmarshalText parses sizes with decimal (KB, MB, GB, TB) or binary (KiB…TiB) units.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := string(text)
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			s, mult = s[:len(s)-len(u.suffix)], u.mult
			break
		}
	}
	var n float64
	if _, err := fmt.Sscanf(s, "%g", &n); err != nil || n < 0 {
		return fmt.Errorf("invalid size %q (use e.g. 500MB or 50GiB)", string(text))
	}
	*b = ByteSize(n * float64(mult))
	return nil
}

// LimitsConfig bounds what an upstream may make the proxy hold or do for one image.
type LimitsConfig struct {
	// ManifestBytes is the largest manifest or index accepted from an upstream; a larger
	// one is refused without being read whole.
	ManifestBytes ByteSize `yaml:"manifest_bytes"`
	// Layers is the most layers an image manifest may have; one with more is denied by
	// the gate before any layer is fetched.
	Layers int `yaml:"layers"`
	// LayerUncompressedBytes and ImageUncompressedBytes bound what a scan may expand one
	// layer, and all of an image's layers, to; CompressionRatio bounds how many times its
	// compressed size a layer may expand to (checked past 64 MiB). An image over any of
	// them is denied (a decompression bomb), and what a scan writes to disk stays bounded.
	LayerUncompressedBytes ByteSize `yaml:"layer_uncompressed_bytes"`
	ImageUncompressedBytes ByteSize `yaml:"image_uncompressed_bytes"`
	CompressionRatio       int      `yaml:"compression_ratio"`
}

package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// TLSConfig serves the registry over HTTPS.
type TLSConfig struct {
	// Cert and Key are PEM files; they are read again when they change (cert renewals
	// need no restart).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, requires clients to present a certificate it signed.
	ClientCA string `yaml:"client_ca"`
}

// certReloader hands out the key pair, reloading it when either file changes.
type certReloader struct {
	cert, key string
	mu        sync.Mutex
	stamp     string
	pair      *tls.Certificate
}

func fileStamp(paths ...string) string {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return ""
		}
		s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := fileStamp(r.cert, r.key)
	if r.pair != nil && st == r.stamp {
		return r.pair, nil
	}
	pair, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		if r.pair != nil {
			return r.pair, nil // a half-written renewal: keep serving the old pair
		}
		return nil, err
	}
	r.pair, r.stamp = &pair, st
	return r.pair, nil
}

// ServerTLS is the TLS configuration of the registry listener, or nil without tls.cert.
func (c *Config) ServerTLS() (*tls.Config, error) {
	if c.TLS.Cert == "" {
		return nil, nil
	}
	r := &certReloader{cert: c.Resolve(c.TLS.Cert), key: c.Resolve(c.TLS.Key)}
	if _, err := r.get(nil); err != nil {
		return nil, fmt.Errorf("config: tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get, NextProtos: []string{"h2", "http/1.1"}}
	if c.TLS.ClientCA != "" {
		pem, err := os.ReadFile(c.Resolve(c.TLS.ClientCA))
		if err != nil {
			return nil, fmt.Errorf("config: tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: tls.client_ca: no certificate found")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

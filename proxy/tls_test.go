package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *certAuthority {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "goldproxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &certAuthority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 (server) or a client, and its key.
func (ca *certAuthority) issue(t *testing.T, dir, name string, serial int64, client bool) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPath, keyPath
}

func TestTLSWithReloadAndClientCA(t *testing.T) {
	up := proxytest.NewUpstream(t)
	ca := newCA(t)
	dir := t.TempDir()
	certPath, keyPath := ca.issue(t, dir, "server", 100, false)
	cfg := proxytest.Config(t, up)
	cfg.TLS.Cert, cfg.TLS.Key = certPath, keyPath
	tlsCfg, err := cfg.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	p := proxytest.Start(t, cfg)
	srv := serveTLS(t, p.Gold, tlsCfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}, DisableKeepAlives: true}}
	}
	serial := func(c *http.Client) int64 {
		resp, err := c.Get(srv.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(client()); s != 100 {
		t.Fatalf("serial %d", s)
	}
	// A renewed certificate is used on the next connection, without a restart.
	time.Sleep(10 * time.Millisecond)
	ca.issue(t, dir, "server", 101, false)
	if s := serial(client()); s != 101 {
		t.Fatalf("after renewal, serial %d", s)
	}

	// With a client CA, a client without a certificate is turned away.
	cfg.TLS.ClientCA = filepath.Join(dir, "ca.pem")
	os.WriteFile(cfg.TLS.ClientCA, ca.pem, 0o644)
	mtls, err := cfg.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	srv2 := serveTLS(t, p.Gold, mtls)
	if _, err := client().Get(srv2.URL + "/v2/"); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	cc, ck := ca.issue(t, dir, "client", 200, true)
	pair, err := tls.LoadX509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client(pair).Get(srv2.URL + "/v2/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("client with a certificate: %v", err)
	}
	resp.Body.Close()
}

type tlsServer struct{ URL string }

// serveTLS serves h with exactly cfg, as goldproxy serve does (tls.NewListener).
func serveTLS(t *testing.T, h http.Handler, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = hs.Serve(tls.NewListener(ln, cfg)) }()
	t.Cleanup(func() { hs.Close() })
	return &tlsServer{URL: "https://" + ln.Addr().String()}
}

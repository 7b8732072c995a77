package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/proxy/trust/trusttest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

type rawManifest struct {
	b  []byte
	mt string
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(r.mt), nil }

// TestScanVerify: `goldproxy scan --verify` finds a key signature in the registry and
// judges it with the proxy's rules; an unsigned image, or a scan without --verify, is
// denied by the signatures rule.
func TestScanVerify(t *testing.T) {
	dir := t.TempDir()
	key := trusttest.NewKey(t, "ecdsa", dir)
	up := proxytest.NewUpstream(t)
	d := digest.Digest(up.Push(t, "team/alpine:1", scannertest.AlpineImage(t, false)).String())
	up.Push(t, "team/unsigned:1", scannertest.AlpineImage(t, false))
	sig := key.Signature(t, trusttest.SimpleSigning(up.Host+"/team/alpine", d))
	repo, err := name.NewRepository(up.Host+"/team/alpine", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sig.Blobs {
		if err := remote.WriteLayer(repo, static.NewLayer(b, types.MediaType("application/octet-stream"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(repo.Tag(trusttest.LegacyTag(d, "sig")), rawManifest{sig.Manifest, sig.MediaType}); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, fmt.Appendf(nil, "policies:\n  - name: signed\n    signatures: {required: true, keys: [%s]}\n", filepath.Base(key.Path)), 0o644); err != nil {
		t.Fatal(err)
	}
	db := t.TempDir()
	scannertest.BuildDB(t, db, time.Now())
	cfg, _ := config.Default()
	cfg.DataDir, cfg.DB.Dir, cfg.Policy = t.TempDir(), db, pol
	run := func(image string, verify bool) (string, string, error) {
		out := t.TempDir()
		var stdout strings.Builder
		err := cli.RunScan(context.Background(), &stdout, cfg, cli.ScanOptions{Image: up.Host + "/" + image, Insecure: true, Verify: verify, OutDir: out, Formats: []string{"md"}})
		md, _ := os.ReadFile(filepath.Join(out, "report.md"))
		return stdout.String(), string(md), err
	}
	out, md, err := run("team/alpine:1", true)
	if err != nil {
		t.Fatalf("signed image: %v\n%s", err, out)
	}
	if !strings.Contains(out, "signed by key "+key.Path) || !strings.Contains(md, "## Signatures & attestations") || !strings.Contains(md, "Signed by key "+key.Path) {
		t.Fatalf("the signer is not reported:\n%s\n%s", out, md)
	}
	for _, tc := range []struct {
		image  string
		verify bool
		says   string
	}{
		{"team/unsigned:1", true, "the image has no signature"},
		{"team/alpine:1", false, "run goldproxy scan --verify"},
	} {
		out, _, err := run(tc.image, tc.verify)
		var ee *cli.ExitError
		if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(out, `rule "signatures"`) || !strings.Contains(out, tc.says) {
			t.Fatalf("%s (verify %v): %v\n%s", tc.image, tc.verify, err, out)
		}
	}
	// `policy test REF` checks signatures the same way.
	if out, code := runCLI(t, "policy", "test", "--policy", pol, "--db-dir", db, "--insecure", up.Host+"/team/alpine:1"); code != 0 || !strings.Contains(out, "ALLOWED") {
		t.Fatalf("policy test of the signed image: %d %s", code, out)
	}
	if out, code := runCLI(t, "policy", "test", "--policy", pol, "--db-dir", db, "--insecure", up.Host+"/team/unsigned:1"); code != 1 || !strings.Contains(out, "the image has no signature") {
		t.Fatalf("policy test of the unsigned image: %d %s", code, out)
	}
}

package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// The first client of a blob is fed as it arrives; one that stops reading is dropped,
// so the fetch finishes and a second client waiting on it is served.
func TestStalledClientDoesNotHoldTheFetch(t *testing.T) {
	up := proxytest.NewUpstream(t)
	layer, err := random.Layer(64<<20, "application/vnd.docker.image.rootfs.diff.tar.gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "team/big:1", img)
	ld, _ := layer.Digest()
	cfg := proxytest.Config(t, up)
	cfg.ClientWriteTimeout = 300 * time.Millisecond
	p := proxytest.Start(t, cfg)
	if code, body := status(t, p, up.Name+"/team/big/manifests/1"); code != http.StatusOK {
		t.Fatalf("manifest: %d %s", code, body)
	}
	// The staller asks for the blob and never reads the answer.
	conn, err := net.Dial("tcp", p.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v2/%s/team/big/blobs/%s HTTP/1.1\r\nHost: %s\r\n\r\n", up.Name, ld, p.Host)
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line[:12] != "HTTP/1.1 200" {
		t.Fatalf("staller's status: %q %v", line, err)
	}
	// A second client of the same blob, while the first stalls.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/big/blobs/"+ld.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("second client waited on the stalled one: %v", err)
	}
	defer resp.Body.Close()
	v := digest.Digest(ld.String()).Verifier()
	if _, err := bufio.NewReader(resp.Body).WriteTo(v); err != nil || !v.Verified() || resp.StatusCode != http.StatusOK {
		t.Fatalf("second client: %d %v verified=%v", resp.StatusCode, err, v.Verified())
	}
	if n := up.BlobGETs("team/big", ld); n != 1 {
		t.Fatalf("%d upstream GETs of the blob, want 1", n)
	}
}

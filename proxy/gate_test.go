package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// recordingGate denies the digests in deny and records every manifest it is asked about.
type recordingGate struct {
	mu    sync.Mutex
	deny  map[v1.Hash]bool
	asked []gate.Manifest
}

func (g *recordingGate) Check(_ context.Context, m gate.Manifest) (gate.Verdict, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, m)
	if g.deny[m.Descriptor.Digest] {
		return gate.Verdict{Rule: "test", Message: "image " + m.Repository + "@" + m.Descriptor.Digest.String() + " is denied by the test gate"}, nil
	}
	return gate.Verdict{Allowed: true}, nil
}

func TestGateJudgesEachPlatformManifest(t *testing.T) {
	up := proxytest.NewUpstream(t)
	idx, amd, arm := multiArch(t)
	idxDigest := up.PushIndex(t, "test/multi:1", idx)
	amdDigest, _ := amd.Digest()
	armDigest, _ := arm.Digest()
	gate := &recordingGate{deny: map[v1.Hash]bool{armDigest: true}}
	p := proxytest.Start(t, proxytest.Config(t, up), proxy.WithGate(gate))
	base := p.URL + "/v2/" + up.Name + "/test/multi/manifests/"

	for _, tc := range []struct {
		ref    string
		status int
	}{
		{"1", http.StatusOK},                       // the index itself
		{amdDigest.String(), http.StatusOK},        // an allowed platform
		{armDigest.String(), http.StatusForbidden}, // a denied platform
	} {
		resp, body := get(t, http.MethodGet, base+tc.ref, nil)
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d: %s", tc.ref, resp.StatusCode, tc.status, body)
		}
		if tc.status == http.StatusForbidden {
			if errCode(t, body) != "DENIED" || !strings.Contains(string(body), "denied by the test gate") {
				t.Fatalf("denial body %s", body)
			}
		}
	}
	var asked []string
	for _, m := range gate.asked {
		asked = append(asked, m.Descriptor.Digest.String())
		if m.Repository != up.Name+"/test/multi" {
			t.Errorf("gate got repository %q", m.Repository)
		}
	}
	want := []string{idxDigest.String(), amdDigest.String(), armDigest.String()}
	if strings.Join(asked, " ") != strings.Join(want, " ") {
		t.Fatalf("gate asked about %v, want %v", asked, want)
	}
	if gate.asked[0].Tag != "1" || gate.asked[1].Tag != "" {
		t.Errorf("tags passed to the gate: %q %q", gate.asked[0].Tag, gate.asked[1].Tag)
	}
}

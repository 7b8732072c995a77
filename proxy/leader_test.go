package proxy_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// TestReplicasElectOneLeader: of two replicas on one database, one leads and runs the
// leader's jobs; when it closes, the other takes over and runs them.
func TestReplicasElectOneLeader(t *testing.T) {
	up := proxytest.NewUpstream(t)
	ps := replicas(t, up, nil, &fakeScanner{}, &fakeScanner{})
	var running [2]atomic.Int64 // leader jobs running on each replica
	var started [2]atomic.Int64 // terms begun on each
	for i, p := range ps {
		p.Gold.Lead(func(ctx context.Context) {
			started[i].Add(1)
			running[i].Add(1)
			defer running[i].Add(-1)
			<-ctx.Done()
		})
	}
	waitFor(t, 10*time.Second, "no replica leads", func() bool { return running[0].Load()+running[1].Load() == 1 })
	first := 0
	if running[1].Load() == 1 {
		first = 1
	}
	other := 1 - first
	if !ps[first].Gold.Leading() || ps[other].Gold.Leading() {
		t.Fatalf("Leading: %v and %v, want only replica %d", ps[0].Gold.Leading(), ps[1].Gold.Leading(), first)
	}
	// The follower keeps trying (every second): it must still not lead after several tries.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if running[other].Load() != 0 {
			t.Fatalf("replica %d leads beside replica %d", other, first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ps[first].Close()
	if n := running[first].Load(); n != 0 {
		t.Fatalf("replica %d closed with %d leader jobs running", first, n)
	}
	waitFor(t, 10*time.Second, "the follower did not take over from the leader that closed", func() bool { return running[other].Load() == 1 })
	if !ps[other].Gold.Leading() || started[other].Load() != 1 || started[first].Load() != 1 {
		t.Fatalf("after take-over: leading %v, terms %d and %d", ps[other].Gold.Leading(), started[0].Load(), started[1].Load())
	}
}

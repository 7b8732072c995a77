package proxy_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/proxytest"
)

// BenchmarkReplicasWarmPull is warm pull throughput with 1, 2 and 3 replicas on one S3
// bucket and PostgreSQL database, on loopback: 8×GOMAXPROCS clients pull one scanned and
// judged image (the manifest by tag, its config and two 256 KiB layers), each pull sent
// to the next replica in turn. Run it with a fixed count so each replica set starts once:
// -bench ReplicasWarmPull -benchtime 400x.
func BenchmarkReplicasWarmPull(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			up := proxytest.NewUpstream(b)
			img, err := random.Image(256<<10, 2)
			if err != nil {
				b.Fatal(err)
			}
			up.Push(b, "bench/app:1", img)
			ref := up.Name + "/bench/app:1"
			var ps []*proxytest.Proxy
			for _, cfg := range proxytest.ReplicaConfigs(b, n, up) {
				p := proxytest.Start(b, cfg, proxy.WithScanner(&fakeScanner{}, policy.DefaultSet()))
				if err := proxytest.PullAll(p.Host, ref); err != nil { // scanned once, then judged on each
					b.Fatal(err)
				}
				ps = append(ps, p)
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p := ps[next.Add(1)%int64(n)]
					if err := proxytest.PullAll(p.Host, ref); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pulls/s")
		})
	}
}

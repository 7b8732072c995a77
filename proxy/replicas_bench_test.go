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

// BenchmarkReplicasColdPull is one new image (three 1 MiB layers, a scanner that finds
// nothing) pulled at once through two replicas on S3 and PostgreSQL: one claims the scan,
// the other waits for its facts; an op ends when both pulls have. It reports scans and
// upstream GETs per blob, both 1 when the replicas share the work.
func BenchmarkReplicasColdPull(b *testing.B) {
	up := proxytest.NewUpstream(b)
	scanners := []*fakeScanner{{}, {}}
	var ps []*proxytest.Proxy
	for i, cfg := range proxytest.ReplicaConfigs(b, 2, up) {
		ps = append(ps, proxytest.Start(b, cfg, proxy.WithScanner(scanners[i], policy.DefaultSet())))
	}
	i, blobs := 0, 0
	for b.Loop() {
		b.StopTimer()
		tag, img := pushColdImage(b, up, i)
		i++
		up.ResetCounts()
		b.StartTimer()
		errs := make(chan error, len(ps))
		for _, p := range ps {
			go func() { errs <- proxytest.PullAll(p.Host, up.Name+"/"+tag) }()
		}
		for range ps {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		for _, d := range blobsOf(b, img) {
			blobs += up.BlobGETs("bench/cold", d)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(scanners[0].calls.Load()+scanners[1].calls.Load())/float64(i), "scans/image")
	b.ReportMetric(float64(blobs)/float64(4*i), "upstream-GETs/blob")
}

package mirror

import (
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the mirror's: cache lookups, upstream requests, latency and bytes.
type metrics struct {
	cache           *prometheus.CounterVec
	fetchedBytes    *prometheus.CounterVec
	upstream        *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_cache_requests_total",
			Help: "Manifest and blob lookups by whether the store had them."}, []string{"kind", "result"}),
		fetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_upstream_fetched_bytes_total",
			Help: "Bytes received from upstream registries."}, []string{"upstream"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_upstream_requests_total",
			Help: "Requests to upstream registries by kind and result (2xx, 3xx, 4xx, 5xx, error)."}, []string{"upstream", "kind", "result"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goldproxy_upstream_request_duration_seconds",
			Help: "Time to the upstream's response headers.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"upstream", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.cache, m.fetchedBytes, m.upstream, m.upstreamLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// CountManifest counts a manifest request as a cache hit or miss (rt.Missed).
func (m *Mirror) CountManifest(rt *Route) {
	result := "hit"
	if rt.Missed {
		result = "miss"
	}
	m.metrics.cache.WithLabelValues("manifest", result).Inc()
}

// upstreamTransport counts and times requests to one upstream, and the bytes received.
type upstreamTransport struct {
	next   http.RoundTripper
	name   string
	m      *metrics
	health *health // told of every response (rate limits)
	// manifestLimit bounds a manifest response body (limits.manifest_bytes); 0: none.
	manifestLimit int64
}

func upstreamKind(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return "ping"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "token"
}

func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	m := t.m
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if err == nil && t.health != nil {
		t.health.saw(resp)
	}
	if err == nil && t.manifestLimit > 0 && resp.StatusCode == http.StatusOK && r.Method == http.MethodGet && upstreamKind(r.URL.Path) == "manifest" {
		if err = limitManifest(resp, t.manifestLimit); err != nil {
			resp = nil
		}
	}
	if m == nil {
		return resp, err
	}
	kind := upstreamKind(r.URL.Path)
	m.upstreamLatency.WithLabelValues(t.name, kind).Observe(time.Since(start).Seconds())
	if err != nil {
		m.upstream.WithLabelValues(t.name, kind, "error").Inc()
		return resp, err
	}
	m.upstream.WithLabelValues(t.name, kind, resultClass(resp.StatusCode)).Inc()
	resp.Body = &countingBody{ReadCloser: resp.Body, c: m.fetchedBytes.WithLabelValues(t.name)}
	return resp, nil
}

func resultClass(code int) string {
	return string("12345"[min(max(code/100, 1), 5)-1]) + "xx"
}

type countingBody struct {
	io.ReadCloser
	c prometheus.Counter
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.Add(float64(n))
	return n, err
}

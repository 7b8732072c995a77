package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics, registered on the registry the server is
// given (WithRegistry) so tests can read them. Names follow Prometheus conventions:
// goldproxy_ prefix, base units, _total counters.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	cache           *prometheus.CounterVec
	servedBytes     *prometheus.CounterVec
	fetchedBytes    *prometheus.CounterVec
	upstream        *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
	scans           *prometheus.CounterVec
	scanDuration    prometheus.Histogram
	denials         *prometheus.CounterVec
	verdictChanges  *prometheus.CounterVec
	reevalProgress  prometheus.Gauge
	reevalRunning   prometheus.Gauge
	webhookErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_http_requests_total",
			Help: "HTTP requests by route, method and status code."}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goldproxy_http_request_duration_seconds",
			Help: "HTTP request durations by route and method.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"route", "method"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_cache_requests_total",
			Help: "Manifest and blob lookups by whether the store had them."}, []string{"kind", "result"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_served_bytes_total",
			Help: "Blob and manifest bytes sent to clients, by upstream."}, []string{"upstream"}),
		fetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_upstream_fetched_bytes_total",
			Help: "Bytes received from upstream registries."}, []string{"upstream"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_upstream_requests_total",
			Help: "Requests to upstream registries by kind and result (2xx, 3xx, 4xx, 5xx, error)."}, []string{"upstream", "kind", "result"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goldproxy_upstream_request_duration_seconds",
			Help: "Time to the upstream's response headers.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"upstream", "kind"}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_scans_total",
			Help: "Scans by result (scanned, error, artifact); verdicts are counted per repository in goldproxy_verdicts."}, []string{"result"}),
		scanDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "goldproxy_scan_duration_seconds",
			Help: "Ingest and scan time of new images.", Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 10)}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_denials_total",
			Help: "Manifest pulls denied, by policy and rule (audit-mode would-be denials have audit=true)."}, []string{"policy", "rule", "audit"}),
		verdictChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_verdict_changes_total",
			Help: "Stored verdicts that changed state on re-evaluation (new DB, new policy, expired exception)."}, []string{"from", "to"}),
		reevalProgress: prometheus.NewGauge(prometheus.GaugeOpts{Name: "goldproxy_reevaluation_progress_ratio",
			Help: "Share of stored verdicts the running (or last) re-evaluation has done."}),
		reevalRunning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "goldproxy_reevaluation_running",
			Help: "1 while stored verdicts are being re-evaluated."}),
		webhookErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "goldproxy_webhook_failures_total",
			Help: "Verdict-change notifications that could not be delivered after every retry."}),
	}
	// Export the usual label values from the start, so dashboards and alerts see zeros
	// rather than nothing.
	for _, from := range []string{stateAllowed, stateDenied} {
		for _, to := range []string{stateAllowed, stateDenied} {
			if from != to {
				m.verdictChanges.WithLabelValues(from, to)
			}
		}
	}
	for _, r := range []string{stateScanned, stateError, stateArtifact} {
		m.scans.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.requestDuration, m.cache, m.servedBytes, m.fetchedBytes, m.upstream, m.upstreamLatency,
		m.scans, m.scanDuration, m.denials, m.verdictChanges, m.reevalProgress, m.reevalRunning, m.webhookErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "goldproxy_scan_queue_depth", Help: "Scans waiting for a worker."},
			func() float64 { return s.scanGauge(func(g *scanGate) int64 { return g.queued.Load() }) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "goldproxy_scans_running", Help: "Scans running now."},
			func() float64 { return s.scanGauge(func(g *scanGate) int64 { return g.running.Load() }) }),
		&stateCollector{s: s},
	)
	return m
}

func (s *Server) scanGauge(f func(*scanGate) int64) float64 {
	if s.scan == nil {
		return 0
	}
	return float64(f(s.scan))
}

// WithRegistry registers the server's metrics on reg (default: a private registry).
func WithRegistry(reg prometheus.Registerer) Option { return func(s *Server) { s.registry = reg } }

// stateCollector reports what is read from the store at scrape time: verdicts by state,
// store size and objects (walked at most once a minute), the vulnerability DB.
type stateCollector struct {
	s       *Server
	mu      sync.Mutex
	walked  time.Time
	size    float64
	objects float64
}

var (
	descVerdicts   = prometheus.NewDesc("goldproxy_verdicts", "Stored verdicts by state.", []string{"state"}, nil)
	descStoreBytes = prometheus.NewDesc("goldproxy_store_size_bytes", "Bytes of blobs in the store.", nil, nil)
	descStoreObjs  = prometheus.NewDesc("goldproxy_store_objects", "Blobs in the store.", nil, nil)
	descDBAge      = prometheus.NewDesc("goldproxy_vulnerability_db_age_seconds", "Time since the loaded vulnerability DB was built.", nil, nil)
	descDBInfo     = prometheus.NewDesc("goldproxy_vulnerability_db_info", "The loaded vulnerability DB (value 1).", []string{"version", "source"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVerdicts, descStoreBytes, descStoreObjs, descDBAge, descDBInfo} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[string]float64{statePending: 0, stateAllowed: 0, stateDenied: 0, stateError: 0}
	if g := c.s.scan; g != nil {
		for st, n := range g.states.counts() {
			states[st] += float64(n)
		}
		states[statePending] = float64(g.queued.Load() + g.running.Load())
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.GaugeValue, n, st)
	}
	c.mu.Lock()
	if time.Since(c.walked) > time.Minute {
		if blobs, err := c.s.store.Blobs(context.Background()); err == nil {
			c.size, c.objects = 0, float64(len(blobs))
			for _, b := range blobs {
				c.size += float64(b.Size)
			}
			c.walked = time.Now()
		}
	}
	ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, c.size)
	ch <- prometheus.MustNewConstMetric(descStoreObjs, prometheus.GaugeValue, c.objects)
	c.mu.Unlock()
	if rep, ok := c.s.scanReporter(); ok {
		if st, err := rep.DBStatus(); err == nil {
			if m, ok := st.(map[string]any); ok {
				if age, ok := m["ageSeconds"].(int64); ok {
					ch <- prometheus.MustNewConstMetric(descDBAge, prometheus.GaugeValue, float64(age))
				}
				version, _ := m["version"].(string)
				source, _ := m["source"].(string)
				ch <- prometheus.MustNewConstMetric(descDBInfo, prometheus.GaugeValue, 1, version, source)
			}
		}
	}
}

// upstreamTransport counts and times requests to one upstream, and the bytes received.
type upstreamTransport struct {
	next http.RoundTripper
	name string
	m    func() *metrics
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
	m := t.m()
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
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

package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry front's and the mirror's Prometheus metrics, registered on
// the registry the server is given (WithRegistry) so tests can read them; the gate and
// the authenticator register their own. Names follow Prometheus conventions: goldproxy_
// prefix, base units, _total counters.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	servedBytes     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_http_requests_total",
			Help: "HTTP requests by route, method and status code."}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goldproxy_http_request_duration_seconds",
			Help: "HTTP request durations by route and method.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"route", "method"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_served_bytes_total",
			Help: "Blob and manifest bytes sent to clients, by upstream."}, []string{"upstream"}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.servedBytes, &stateCollector{s: s})
	return m
}

// WithRegistry registers the server's metrics on reg (default: a private registry).
func WithRegistry(reg prometheus.Registerer) Option { return func(s *Server) { s.registry = reg } }

// stateCollector reports what is read from the store at scrape time: store size and objects (walked at most once a minute), the vulnerability DB.
type stateCollector struct {
	s       *Server
	mu      sync.Mutex
	walked  time.Time
	size    float64
	objects float64
}

var (
	descStoreBytes = prometheus.NewDesc("goldproxy_store_size_bytes", "Bytes of blobs in the store.", nil, nil)
	descStoreObjs  = prometheus.NewDesc("goldproxy_store_objects", "Blobs in the store.", nil, nil)
	descDBAge      = prometheus.NewDesc("goldproxy_vulnerability_db_age_seconds", "Time since the loaded vulnerability DB was built.", nil, nil)
	descDBInfo     = prometheus.NewDesc("goldproxy_vulnerability_db_info", "The loaded vulnerability DB (value 1).", []string{"version", "source"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStoreBytes, descStoreObjs, descDBAge, descDBInfo} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
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

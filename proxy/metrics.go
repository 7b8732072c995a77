package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry front's and the mirror's Prometheus metrics, registered on
// the registry the server is given (WithRegistry) so tests can read them; the gate and
// the authenticator register their own. Names follow Prometheus conventions: goldproxy_
// prefix, base units, _total counters.
type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_http_requests_total",
			Help: "HTTP requests by route, method and status code."}, []string{"route", "method", "code"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "goldproxy_http_request_duration_seconds",
			Help: "HTTP request durations by route and method.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.requestDuration)
	return m
}

// WithRegistry registers the server's metrics on reg (default: a private registry).
func WithRegistry(reg prometheus.Registerer) Option { return func(s *Server) { s.registry = reg } }

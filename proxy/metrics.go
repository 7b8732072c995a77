package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics, registered on the registry the server is
// given (WithRegistry) so tests can read them.
type metrics struct {
	verdictChanges *prometheus.CounterVec
	reevalProgress prometheus.Gauge
	reevalRunning  prometheus.Gauge
	webhookErrors  prometheus.Counter
	authFailures   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		verdictChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldproxy_verdict_changes_total",
			Help: "Stored verdicts that changed state on re-evaluation (new DB, new policy, expired exception).",
		}, []string{"from", "to"}),
		reevalProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "goldproxy_reevaluation_progress_ratio",
			Help: "Share of stored verdicts the running (or last) re-evaluation has done.",
		}),
		reevalRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "goldproxy_reevaluation_running",
			Help: "1 while stored verdicts are being re-evaluated.",
		}),
		webhookErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldproxy_webhook_failures_total",
			Help: "Verdict-change notifications that could not be delivered after every retry.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldproxy_auth_failures_total",
			Help: "Rejected client credentials, by how they were presented.",
		}, []string{"method"}),
	}
	reg.MustRegister(m.verdictChanges, m.reevalProgress, m.reevalRunning, m.webhookErrors, m.authFailures)
	return m
}

// WithRegistry registers the server's metrics on reg (default: a private registry).
func WithRegistry(reg prometheus.Registerer) Option { return func(s *Server) { s.registry = reg } }

package gate

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/policy"
)

// metrics are the gate's: scans, verdicts, denials, re-evaluation, webhooks.
type metrics struct {
	scans          *prometheus.CounterVec
	scanDuration   prometheus.Histogram
	denials        *prometheus.CounterVec
	verdictChanges *prometheus.CounterVec
	reevalProgress prometheus.Gauge
	reevalRunning  prometheus.Gauge
	webhookErrors  prometheus.Counter
	trust          *prometheus.CounterVec
}

var descVerdicts = prometheus.NewDesc("goldproxy_verdicts", "Recorded verdicts (one per repository and digest) by state; pending counts scans under way.", []string{"state"}, nil)

func newMetrics(reg prometheus.Registerer, g *Gate) (*metrics, error) {
	m := &metrics{
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
		trust: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_signature_pulls_total",
			Help: "Manifest pulls under a policy with signature or attestation rules, by policy and what the image's signatures were: verified (a signature verified), invalid (signatures found, none verified), unsigned (none found)."}, []string{"policy", "result"}),
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
	for _, c := range []prometheus.Collector{m.scans, m.scanDuration, m.denials, m.verdictChanges, m.reevalProgress, m.reevalRunning, m.webhookErrors, m.trust,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "goldproxy_scan_queue_depth", Help: "Scans waiting for a worker."},
			func() float64 { return float64(g.queued.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "goldproxy_scans_running", Help: "Scans running now."},
			func() float64 { return float64(g.running.Load()) }),
		verdictCollector{g},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// verdictCollector reports the recorded verdicts by state from memory: a scrape
// decodes nothing.
type verdictCollector struct{ g *Gate }

func (c verdictCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descVerdicts }

func (c verdictCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[string]float64{statePending: 0, stateAllowed: 0, stateDenied: 0, stateError: 0}
	for st, n := range c.g.states.counts() {
		states[st] += float64(n)
	}
	states[statePending] = float64(c.g.queued.Load() + c.g.running.Load())
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.GaugeValue, n, st)
	}
}

// trustResult is what a pull's signatures were, for the metrics: verified (one
// verified), invalid (some found, none verified), unsigned (none found).
func trustResult(t *policy.Trust) string {
	switch {
	case t == nil:
		return ""
	case len(t.Signers) > 0:
		return "verified"
	case len(t.Problems) > 0:
		return "invalid"
	}
	return "unsigned"
}

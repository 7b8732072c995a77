package proxy_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goldproxy/goldproxy/proxy"
)

// metricValue sums the samples of a metric family whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			total += value(m)
		}
	}
	return total
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestMetricsMoveWithPulls(t *testing.T) {
	reg := prometheus.NewRegistry()
	sc := &fakeScanner{}
	up, p, _, clean := scanSetup(t, sc, nil, proxy.WithRegistry(reg))

	layers, _ := clean.Layers()
	var layerBytes int64
	for _, l := range layers {
		n, _ := l.Size()
		layerBytes += n
	}
	cfgSize, _ := clean.RawConfigFile()
	for range 2 { // cold, then warm
		if err := pullAll(up.Name+"/team/clean:1", p); err != nil {
			t.Fatal(err)
		}
	}
	resp, _ := get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)
	if resp.StatusCode != 403 {
		t.Fatal(resp.StatusCode)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"goldproxy_cache_requests_total", map[string]string{"kind": "manifest", "result": "miss"}, 2}, // clean and vuln
		{"goldproxy_cache_requests_total", map[string]string{"kind": "manifest", "result": "hit"}, 1},
		{"goldproxy_cache_requests_total", map[string]string{"kind": "blob", "result": "hit"}, 2 * float64(len(layers)+1)}, // the scan fetched them first
		{"goldproxy_scans_total", map[string]string{"result": "scanned"}, 2},
		{"goldproxy_denials_total", map[string]string{"policy": "default", "rule": "vulnerabilities"}, 1},
		{"goldproxy_http_requests_total", map[string]string{"route": "manifests", "code": "403"}, 1},
		{"goldproxy_http_requests_total", map[string]string{"route": "blobs", "code": "200"}, 2 * float64(len(layers)+1)},
		{"goldproxy_upstream_requests_total", map[string]string{"kind": "blob", "result": "2xx"}, float64(len(layers)+1) + 3}, // clean: config+layers; vuln: config+2 layers
		{"goldproxy_served_bytes_total", map[string]string{"upstream": up.Name}, 0},                                           // checked below
		{"goldproxy_verdicts", map[string]string{"state": "denied"}, 1},
		{"goldproxy_verdicts", map[string]string{"state": "allowed"}, 1},
	} {
		if tc.name == "goldproxy_served_bytes_total" {
			continue
		}
		if got := metricValue(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got := metricValue(t, reg, "goldproxy_served_bytes_total", map[string]string{"upstream": up.Name}); got < float64(2*(layerBytes+int64(len(cfgSize)))) {
		t.Errorf("served bytes %v, want at least %d", got, 2*(layerBytes+int64(len(cfgSize))))
	}
	if got := metricValue(t, reg, "goldproxy_upstream_fetched_bytes_total", map[string]string{"upstream": up.Name}); got < float64(layerBytes) {
		t.Errorf("fetched bytes %v, want at least %d", got, layerBytes)
	}
}

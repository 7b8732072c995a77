package admin

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector reports what is read at scrape time: store size and objects, the DB.
func (h *Handler) Collector() prometheus.Collector { return &stateCollector{h: h} }

// stateCollector reports what is read from the store at scrape time: store size and objects (walked at most once a minute), the vulnerability DB.
type stateCollector struct {
	h       *Handler
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
		if blobs, err := c.h.store.Blobs(context.Background()); err == nil {
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
	if rep, ok := c.h.scanReporter(); ok {
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

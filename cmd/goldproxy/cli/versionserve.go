package cli

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/scanner"
)

// BuildInfoCollector is the goldproxy_build_info gauge: value 1, labelled with this
// binary's version, commit, date, trivy_version and goversion (BuildInfo.Labels). The
// proxy registers it on its metrics registry beside its own collectors.
func BuildInfoCollector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "goldproxy_build_info",
		Help:        "goldproxy's build: version, commit, build date, Trivy and Go versions (value 1).",
		ConstLabels: Build().Labels(),
	}, func() float64 { return 1 })
}

// VersionHandler answers GET /api/v1/version with the BuildInfo JSON document `goldproxy
// version --json` prints, its DB fields from db as loaded at the time of the request.
func VersionHandler(db *scanner.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		bi := Build()
		if db != nil {
			if info, err := db.Info(); err == nil {
				bi = bi.WithDB(info)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = writeJSON(w, bi)
	})
}

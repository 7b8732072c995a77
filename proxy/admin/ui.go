package admin

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/auth"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// The dashboard is server-rendered from embedded templates and one stylesheet: no
// script, no CDN, works offline, behind the same authentication as the API.
//
//go:embed ui/*.html ui/static/*
var uiFiles embed.FS

var uiTemplates = template.Must(template.New("ui").Funcs(template.FuncMap{
	"severities": func() []string { return policy.Severities },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"abbr": func(s string) string { return s[:1] },
	"short": func(d string) string {
		if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
			return d[:i+13]
		}
		return d
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04")
	},
	"date":  func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"lower": strings.ToLower,
	"join":  strings.Join,
	"bytes": HumanBytes,
}).ParseFS(uiFiles, "ui/*.html"))

// HumanBytes writes a size for people: 6.5 KiB, 12.0 MiB.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type uiPackage struct{ Name, Version, Target string }

// serveUI answers /ui/ (images), /ui/images/<digest>, /ui/db and /ui/static/.
func (h *Handler) serveUI(w http.ResponseWriter, r *http.Request) error {
	p := strings.TrimPrefix(r.URL.Path, "/ui")
	switch {
	case strings.HasPrefix(p, "/static/"):
		sub, _ := fs.Sub(uiFiles, "ui")
		w.Header().Set("Cache-Control", "max-age=3600")
		http.StripPrefix("/ui", http.FileServerFS(sub)).ServeHTTP(w, r)
		return nil
	case p == "" || p == "/":
		images, err := h.summaries(auth.PrincipalOf(r.Context()), r.URL.Query())
		if err != nil {
			return err
		}
		q := r.URL.Query()
		return h.render(w, "images.html", map[string]any{"Title": "Images", "Images": images,
			"Denied": q.Get("denied") == "true", "Repository": q.Get("repository"), "Severity": strings.ToUpper(q.Get("severity"))})
	case strings.HasPrefix(p, "/images/"):
		d, err := digest.Parse(strings.TrimPrefix(p, "/images/"))
		if err != nil {
			return httpx.DigestInvalid("invalid digest: %v", err)
		}
		det, err := h.imageDetail(r, d)
		if err != nil {
			return err
		}
		data := map[string]any{"Title": d.String(), "Detail": det, "Packages": h.reportPackages(d)}
		if det.Facts != nil && det.Facts.Input != nil {
			in := *det.Facts.Input
			in.Vulnerabilities = append([]policy.Vulnerability(nil), in.Vulnerabilities...)
			policy.SortWorstFirst(in.Vulnerabilities)
			data["Input"] = &in
		}
		return h.render(w, "image.html", data)
	case p == "/baseline":
		data := map[string]any{"Title": "Baseline"}
		at, b, err := h.store.LatestBaseline()
		if err == nil {
			var bl struct {
				Policy  string           `json:"policy"`
				Images  []map[string]any `json:"images"`
				Summary []map[string]any `json:"summary"`
			}
			if json.Unmarshal(b, &bl) == nil {
				data["At"], data["Baseline"] = at, bl
			}
		}
		return h.render(w, "baseline.html", data)
	case p == "/db":
		data := map[string]any{"Title": "Vulnerability DB"}
		if rep, ok := h.scanReporter(); ok {
			st, err := rep.DBStatus()
			if err != nil {
				data["Error"] = err.Error()
			} else {
				data["Status"] = st
			}
		} else {
			data["Error"] = "scanning is off"
		}
		return h.render(w, "db.html", data)
	}
	return httpx.Unsupported("no such page: %s", r.URL.Path)
}

func (h *Handler) render(w http.ResponseWriter, name string, data any) error {
	var b strings.Builder
	if err := uiTemplates.ExecuteTemplate(&b, name, data); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := w.Write([]byte(b.String()))
	return err
}

// reportPackages lists the packages of a stored Trivy report.
func (h *Handler) reportPackages(d digest.Digest) []uiPackage {
	b, err := h.store.Report(d)
	if err != nil {
		return nil
	}
	var rep struct {
		Results []struct {
			Target   string
			Packages []struct{ Name, Version, Release string }
		}
	}
	if json.Unmarshal(b, &rep) != nil {
		return nil
	}
	var out []uiPackage
	for _, r := range rep.Results {
		for _, p := range r.Packages {
			v := p.Version
			if p.Release != "" {
				v += "-" + p.Release
			}
			out = append(out, uiPackage{Name: p.Name, Version: v, Target: r.Target})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

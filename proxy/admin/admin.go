// Package admin is goldproxy's own HTTP surface beside the registry API: /healthz,
// /readyz, the JSON API under /api/v1/ and the dashboard under /ui/. It reads the
// gate's facts and judgements and the store, and runs what operators ask for
// (collections, DB updates, robots).
//
// It never serves image content and never changes a verdict by itself: it shows them.
// Who may call it is the authenticator's to decide before it is asked.
package admin

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/goldproxy/goldproxy/proxy/auth"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/gc"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// Handler serves the admin endpoints.
type Handler struct {
	store    *storage.Store
	gate     *gate.Gate // nil without a scanning gate
	auth     *auth.Authenticator
	gc       *gc.Collector
	dbUpdate func(context.Context) (any, error)
	now      func() time.Time
	// version answers /api/v1/version; backup writes a consistent copy of the metadata.
	version http.Handler
	backup  func(io.Writer) (int64, error)
}

// WithVersion serves /api/v1/version with h.
func (h *Handler) WithVersion(v http.Handler) *Handler { h.version = v; return h }

// WithBackup serves GET /api/v1/admin/backup (admins only) with f.
func (h *Handler) WithBackup(f func(io.Writer) (int64, error)) *Handler { h.backup = f; return h }

// New returns the admin handler; g and dbUpdate may be nil.
func New(store *storage.Store, g *gate.Gate, a *auth.Authenticator, c *gc.Collector, dbUpdate func(context.Context) (any, error), now func() time.Time) *Handler {
	return &Handler{store: store, gate: g, auth: a, gc: c, dbUpdate: dbUpdate, now: now}
}

// Serve answers r when it is an admin endpoint; handled is false otherwise.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	switch r.URL.Path {
	case "/api/v1/version":
		if h.version == nil {
			return true, httpx.Unsupported("this proxy does not describe its build")
		}
		h.version.ServeHTTP(w, r)
		return true, nil
	case "/api/v1/admin/backup":
		if p := auth.PrincipalOf(r.Context()); !p.Admin() {
			return true, httpx.Denied("backups are for admins of this proxy (auth.admins)")
		}
		if h.backup == nil || r.Method != http.MethodGet {
			return true, httpx.Unsupported("GET /api/v1/admin/backup")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="meta.db"`)
		_, err := h.backup(w)
		return true, err
	}
	return h.serveAPI(w, r)
}

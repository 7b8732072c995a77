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
	"net/http"
	"time"

	"github.com/goldproxy/goldproxy/proxy/auth"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/gc"
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
}

// New returns the admin handler; g and dbUpdate may be nil.
func New(store *storage.Store, g *gate.Gate, a *auth.Authenticator, c *gc.Collector, dbUpdate func(context.Context) (any, error), now func() time.Time) *Handler {
	return &Handler{store: store, gate: g, auth: a, gc: c, dbUpdate: dbUpdate, now: now}
}

// Serve answers r when it is an admin endpoint; handled is false otherwise.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	return h.serveAPI(w, r)
}

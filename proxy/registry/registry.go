// Package registry is goldproxy's only OCI distribution HTTP server: it parses registry
// API paths, answers manifest, blob, tag-list and referrers requests, and refuses
// everything that would change the store (push, delete, uploads). Every name is routed
// to an upstream repository by the mirror, every repository is checked against the
// requester and the allowlist, and every manifest is judged by the gate for this
// request before a byte of it is sent.
//
// It never fetches from an upstream itself (the mirror does) and never judges (the gate
// does); it only serves what they produced, with the status codes the spec defines.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// Mirror is where content comes from: the store, or the upstream through it.
type Mirror interface {
	Resolve(rt *mirror.Route) error
	ResolveTag(ctx context.Context, rt *mirror.Route, tag string) (digest.Digest, error)
	Manifest(ctx context.Context, rt *mirror.Route, d digest.Digest) (storage.ManifestRecord, []byte, error)
	CountManifest(rt *mirror.Route)
	ServeBlob(w http.ResponseWriter, r *http.Request, rt *mirror.Route, d digest.Digest) error
	Tags(ctx context.Context, rt *mirror.Route) ([]string, error)
	Referrers(ctx context.Context, rt *mirror.Route, d digest.Digest) ([]storage.Descriptor, error)
	// Owners are the manifests of repo that reference blob.
	Owners(repo string, blob digest.Digest) ([]digest.Digest, error)
}

// Gate decides whether a manifest may be served, for one request.
type Gate interface {
	Check(ctx context.Context, m gate.Manifest) (gate.Verdict, error)
}

// Authorizer decides whether a request may read repository repo, which the client
// named name (both "" for the /v2/ base).
type Authorizer interface {
	Authorize(r *http.Request, name, repo string) error
}

// Allowlist admits the repositories this proxy mirrors at all.
type Allowlist interface {
	Allowed(repo string) bool
}

// PullMarker records that a manifest was served (the collector's LRU).
type PullMarker interface {
	Mark(repo string, d digest.Digest, t time.Time)
}

// Registry serves the pull API.
type Registry struct {
	mirror      Mirror
	gate        Gate
	auth        Authorizer
	allow       Allowlist
	pulls       PullMarker
	now         func() time.Time
	servedBytes *prometheus.CounterVec
}

// New returns the registry server; its metrics are registered on reg.
func New(m Mirror, g Gate, a Authorizer, allow Allowlist, pulls PullMarker, now func() time.Time, reg prometheus.Registerer) (*Registry, error) {
	r := &Registry{mirror: m, gate: g, auth: a, allow: allow, pulls: pulls, now: now,
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "goldproxy_served_bytes_total",
			Help: "Blob and manifest bytes sent to clients, by upstream."}, []string{"upstream"})}
	if err := reg.Register(r.servedBytes); err != nil {
		return nil, err
	}
	return r, nil
}

// Serve answers the registry API (/v2/…): read-only, every name routed to an upstream,
// every repository checked against the requester and the allowlist, every manifest
// judged by the gate.
func (reg *Registry) Serve(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, ok := parseRoute(r)
	if !ok {
		return &httpx.Error{Status: http.StatusNotFound, Code: "UNSUPPORTED", Message: fmt.Sprintf("no such endpoint: %s", r.URL.Path)}
	}
	if rt.Kind == mirror.KindUpload {
		return httpx.Unsupported("goldproxy is a read-only mirror: uploads are not supported")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return httpx.Unsupported("goldproxy is a read-only mirror: %s is not supported", r.Method)
	}
	if rt.Kind == mirror.KindBase {
		if err := reg.auth.Authorize(r, "", ""); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return nil
	}
	if err := reg.mirror.Resolve(rt); err != nil {
		if aerr := reg.auth.Authorize(r, "", ""); aerr != nil {
			return aerr // say nothing about names to a client that has not logged in
		}
		return err
	}
	if err := reg.auth.Authorize(r, rt.Name, rt.Key); err != nil {
		return err
	}
	if !reg.allow.Allowed(rt.Key) {
		e := httpx.Denied("%s", gate.NotAllowedMessage(rt.Key))
		e.Reason = "denied: repository " + rt.Key + " is not on the allowlist of this proxy"
		return e
	}
	if rw, ok := w.(*httpx.ResponseWriter); ok && (rt.Kind == mirror.KindManifest || rt.Kind == mirror.KindBlob) {
		before := rw.Bytes()
		defer func() { reg.servedBytes.WithLabelValues(rt.Upstream()).Add(float64(rw.Bytes() - before)) }()
	}
	switch rt.Kind {
	case mirror.KindManifest:
		return reg.serveManifest(w, r, rt)
	case mirror.KindBlob:
		return reg.serveBlob(w, r, rt)
	case mirror.KindTags:
		return reg.serveTags(w, r, rt)
	case mirror.KindReferrers:
		return reg.serveReferrers(w, r, rt)
	}
	return httpx.Unsupported("unsupported request")
}

var reTag = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// serveManifest answers GET/HEAD /v2/<name>/manifests/<ref>: resolve a tag, load the
// manifest from the store or ingest it, ask the gate, then serve the exact bytes.
func (reg *Registry) serveManifest(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
	ctx := r.Context()
	var dgst digest.Digest
	tag := ""
	switch {
	case strings.Contains(rt.Ref, ":"):
		d, err := digest.Parse(rt.Ref)
		if err != nil {
			return httpx.DigestInvalid("invalid digest %q: %v", rt.Ref, err)
		}
		dgst = d
	case reTag.MatchString(rt.Ref):
		tag = rt.Ref
		d, err := reg.mirror.ResolveTag(ctx, rt, tag)
		if err != nil {
			return err
		}
		dgst = d
	default:
		return httpx.ManifestUnknown("invalid tag %q", rt.Ref)
	}
	rec, raw, err := reg.mirror.Manifest(ctx, rt, dgst)
	if err != nil {
		return err
	}
	// A client that cannot read an index gets the default platform's manifest, as
	// distribution does; by digest the exact manifest asked for is always served.
	if tag != "" && mirror.IsIndex(rec.MediaType) && !accepts(r, rec.MediaType) {
		child, ok := defaultPlatform(raw)
		if !ok {
			return httpx.ManifestUnknown("%s:%s is an image index with no linux/amd64 manifest and the client does not accept indexes", rt.Key, tag)
		}
		if rec, raw, err = reg.mirror.Manifest(ctx, rt, child); err != nil {
			return err
		}
	}
	reg.mirror.CountManifest(rt)
	verdict, err := reg.gate.Check(ctx, gate.Manifest{
		Repository: rt.Key,
		Tag:        tag,
		Descriptor: mirror.DescriptorOf(rec),
	})
	if err != nil {
		return err
	}
	if !verdict.Allowed {
		e := httpx.Denied("%s", verdict.Message)
		e.Detail = map[string]string{"repository": rt.Key, "reference": rt.Ref, "digest": rec.Digest.String(), "rule": verdict.Rule,
			"report": verdict.Report}
		e.Reason = verdict.Short
		e.Header = map[string]string{"X-Goldproxy-Denied": verdict.Message}
		return e
	}
	reg.pulls.Mark(rt.Key, rec.Digest, reg.now())
	h := w.Header()
	h.Set("Content-Type", rec.MediaType)
	h.Set("Docker-Content-Digest", rec.Digest.String())
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	h.Set("ETag", `"`+rec.Digest.String()+`"`)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, err = w.Write(raw)
	return err
}

// accepts reports whether the request's Accept header admits media type mt. No Accept
// header admits everything.
func accepts(r *http.Request, mt string) bool {
	vals := r.Header.Values("Accept")
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		for _, a := range strings.Split(v, ",") {
			a, _, _ = strings.Cut(a, ";")
			a = strings.TrimSpace(a)
			if a == mt || a == "*/*" {
				return true
			}
		}
	}
	return false
}

// defaultPlatform picks the linux/amd64 manifest of an index.
func defaultPlatform(raw []byte) (digest.Digest, bool) {
	var m mirror.ManifestFields
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", false
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == "amd64" {
			return c.Digest, true
		}
	}
	return "", false
}

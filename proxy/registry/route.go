package registry

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/goldproxy/goldproxy/proxy/mirror"
)

var (
	reUpload   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads(/.*)?$`)
	reTags     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reResource = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|referrers)/([^/]+)$`)
)

// parsePath splits a /v2/ path into its kind, name and reference.
func parsePath(p string) (kind, name, ref string, ok bool) {
	if p == "/v2/" || p == "/v2" {
		return mirror.KindBase, "", "", true
	}
	if m := reUpload.FindStringSubmatch(p); m != nil {
		return mirror.KindUpload, m[1], "", true
	}
	if m := reTags.FindStringSubmatch(p); m != nil {
		return mirror.KindTags, m[1], "", true
	}
	if m := reResource.FindStringSubmatch(p); m != nil {
		return m[2], m[1], m[3], true
	}
	return "", "", "", false
}

// parseRoute parses a request into a route; it does not resolve the upstream.
func parseRoute(r *http.Request) (*mirror.Route, bool) {
	kind, name, ref, ok := parsePath(r.URL.Path)
	if !ok {
		return nil, false
	}
	return &mirror.Route{Kind: kind, Name: name, Ref: ref, NS: r.URL.Query().Get("ns")}, true
}

// RouteLabel names a request's route for metrics (bounded cardinality).
func RouteLabel(path string) string {
	switch {
	case path == "/token":
		return "token"
	case path == "/healthz" || path == "/readyz":
		return "health"
	case strings.HasPrefix(path, "/api/"):
		return "api"
	}
	kind, _, _, ok := parsePath(path)
	if !ok {
		return "other"
	}
	return kind
}

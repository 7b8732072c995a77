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

// parsePath splits a /v2/ path into its kind, name and reference. A name with an empty
// component, a leading or trailing slash or ".." is no route: no repository is spelled
// so, and nothing past this point has to think about path traversal.
func parsePath(p string) (kind, name, ref string, ok bool) {
	if p == "/v2/" || p == "/v2" {
		return mirror.KindBase, "", "", true
	}
	if m := reUpload.FindStringSubmatch(p); m != nil {
		kind, name = mirror.KindUpload, m[1]
	} else if m := reTags.FindStringSubmatch(p); m != nil {
		kind, name = mirror.KindTags, m[1]
	} else if m := reResource.FindStringSubmatch(p); m != nil {
		kind, name, ref = m[2], m[1], m[3]
	} else {
		return "", "", "", false
	}
	if strings.Contains(name, "..") || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", "", "", false
	}
	return kind, name, ref, true
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

package proxy

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// Kinds of registry API request.
const (
	kindBase      = "base"
	kindManifest  = "manifests"
	kindBlob      = "blobs"
	kindTags      = "tags"
	kindReferrers = "referrers"
	kindUpload    = "uploads"
)

// route is a parsed registry request: what is asked for, from which upstream repository.
type route struct {
	kind string
	name string // the name as the client wrote it
	ref  string // tag or digest (manifests, blobs, referrers)
	ns   string // containerd's ?ns=, kept for Link headers

	up   *upstream
	repo string // repository on the upstream ("library/alpine")
	key  string // "<upstream>/<repo>": the name the store, allowlist and gate use

	missed bool // the store lacked the manifest: it came from the upstream (metrics)
}

var (
	reUpload   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads(/.*)?$`)
	reTags     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reResource = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|referrers)/([^/]+)$`)
	// A repository path component, as the distribution spec defines it.
	reComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
)

// parsePath splits a /v2/ path into its kind, name and reference.
func parsePath(p string) (kind, name, ref string, ok bool) {
	if p == "/v2/" || p == "/v2" {
		return kindBase, "", "", true
	}
	if m := reUpload.FindStringSubmatch(p); m != nil {
		return kindUpload, m[1], "", true
	}
	if m := reTags.FindStringSubmatch(p); m != nil {
		return kindTags, m[1], "", true
	}
	if m := reResource.FindStringSubmatch(p); m != nil {
		return m[2], m[1], m[3], true
	}
	return "", "", "", false
}

// router maps the three ways clients name an upstream image to (upstream, repository):
// containerd/podman's ?ns=<host>, a host as the first path component (or an alias for
// one), and docker's registry-mirrors form, where a name without a host is Docker Hub.
type router struct {
	byHost  map[string]*upstream
	aliases map[string]string
	hub     *upstream // docker.io, when configured
}

func newRouter(ups []*upstream, cfg *config.Config) *router {
	r := &router{byHost: map[string]*upstream{}, aliases: cfg.Aliases}
	for i, u := range ups {
		c := cfg.Upstreams[i]
		for _, h := range append([]string{c.Name}, c.Aliases...) {
			r.byHost[h] = u
		}
		if c.Name == "docker.io" {
			r.hub = u
		}
	}
	return r
}

// looksLikeHost is the docker rule for telling a registry host from a path component.
func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// resolve fills rt.up, rt.repo and rt.key from rt.name and rt.ns.
func (rr *router) resolve(rt *route) *httpx.Error {
	name := rt.name
	var up *upstream
	switch {
	case rt.ns != "":
		u, ok := rr.byHost[rt.ns]
		if !ok {
			return httpx.NameUnknown("upstream registry %q is not configured on this proxy", rt.ns)
		}
		up = u
	default:
		first, rest, hasRest := strings.Cut(name, "/")
		if target, ok := rr.aliases[first]; ok && hasRest {
			name = target + "/" + rest
			first, rest, hasRest = strings.Cut(name, "/")
		}
		if looksLikeHost(first) && hasRest {
			u, ok := rr.byHost[first]
			if !ok {
				return httpx.NameUnknown("upstream registry %q is not configured on this proxy", first)
			}
			up, name = u, rest
		} else {
			if rr.hub == nil {
				return httpx.NameUnknown("%q names no upstream registry and Docker Hub is not configured", rt.name)
			}
			up = rr.hub
		}
	}
	if up == rr.hub && up != nil && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	for _, c := range strings.Split(name, "/") {
		if !reComponent.MatchString(c) {
			return httpx.NameInvalid("invalid repository name %q", rt.name)
		}
	}
	rt.up, rt.repo, rt.key = up, name, up.name+"/"+name
	return nil
}

// parseRoute parses a request into a route; it does not resolve the upstream.
func parseRoute(r *http.Request) (*route, bool) {
	kind, name, ref, ok := parsePath(r.URL.Path)
	if !ok {
		return nil, false
	}
	return &route{kind: kind, name: name, ref: ref, ns: r.URL.Query().Get("ns")}, true
}

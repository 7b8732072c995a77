package mirror

import (
	"regexp"
	"strings"

	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// Kinds of registry API request.
const (
	KindBase      = "base"
	KindManifest  = "manifests"
	KindBlob      = "blobs"
	KindTags      = "tags"
	KindReferrers = "referrers"
	KindUpload    = "uploads"
)

// Route is a registry request's name resolved to an upstream repository: what is asked
// for, from where.
type Route struct {
	Kind string
	Name string // the name as the client wrote it
	Ref  string // tag or digest (manifests, blobs, referrers)
	NS   string // containerd's ?ns=, kept for Link headers

	up   *upstream
	Repo string // repository on the upstream ("library/alpine")
	Key  string // "<upstream>/<repo>": the name the store, allowlist and gate use

	Missed bool // the store lacked the manifest: it came from the upstream (metrics)
}

// Upstream is the name of the route's upstream ("docker.io").
func (rt *Route) Upstream() string { return rt.up.name }

// A repository path component, as the distribution spec defines it.
var reComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)

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

// Name lengths the distribution spec's clients agree on: beyond them a name is refused
// before anything is asked of an upstream.
const (
	maxNameLen      = 255
	maxComponentLen = 128
)

// resolve fills rt.up, rt.Repo and rt.Key from rt.Name and rt.NS.
func (rr *router) resolve(rt *Route) *httpx.Error {
	name := rt.Name
	if len(name) > maxNameLen {
		return httpx.NameInvalid("repository name of %d characters is longer than %d", len(name), maxNameLen)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > maxComponentLen {
			return httpx.NameInvalid("repository name component %.32q… of %d characters is longer than %d", c, len(c), maxComponentLen)
		}
	}
	var up *upstream
	switch {
	case rt.NS != "":
		u, ok := rr.byHost[rt.NS]
		if !ok {
			return httpx.NameUnknown("upstream registry %q is not configured on this proxy", rt.NS)
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
				return httpx.NameUnknown("%q names no upstream registry and Docker Hub is not configured", rt.Name)
			}
			up = rr.hub
		}
	}
	if up == rr.hub && up != nil && !strings.Contains(name, "/") {
		name = "library/" + name
	}
	for _, c := range strings.Split(name, "/") {
		if !reComponent.MatchString(c) || len(c) > maxComponentLen {
			return httpx.NameInvalid("invalid repository name %q", rt.Name)
		}
	}
	if len(name) > maxNameLen {
		// An alias can lengthen a name: the upstream repository is held to the limit too.
		return httpx.NameInvalid("repository name %.32q… of %d characters on %s is longer than %d", name, len(name), up.name, maxNameLen)
	}
	rt.up, rt.Repo, rt.Key = up, name, up.name+"/"+name
	return nil
}

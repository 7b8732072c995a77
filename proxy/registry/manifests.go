package registry

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

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
			"report": gate.ReportPath(rt.Key, rec.Digest.String())}
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

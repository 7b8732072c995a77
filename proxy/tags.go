package proxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// serveTags answers GET /v2/<name>/tags/list with n/last pagination. The list comes from
// the upstream; when it cannot answer, the tags this proxy has resolved stand in.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, rt *route) error {
	q := r.URL.Query()
	n := -1
	if v := q.Get("n"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			return &httpx.Error{Status: http.StatusBadRequest, Code: "PAGINATION_NUMBER_INVALID", Message: "n must be a non-negative integer"}
		}
		n = i
	}
	last := q.Get("last")
	uctx, cancel := s.detach(r.Context())
	defer cancel()
	tags, err := rt.up.puller.List(uctx, rt.up.repo(rt.repo))
	if err != nil {
		local, lerr := s.store.Tags(rt.key)
		if !recoverable(err) || lerr != nil || len(local) == 0 {
			return upstreamErr(err, rt, "")
		}
		s.log.Warn("upstream unavailable, listing known tags", "repository", rt.key, "err", err)
		tags = local
	}
	sort.Strings(tags)
	if last != "" {
		i := sort.SearchStrings(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	if n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[n-1]}}
			if rt.ns != "" {
				next.Set("ns", rt.ns)
			}
			w.Header().Set("Link", `</v2/`+rt.name+`/tags/list?`+next.Encode()+`>; rel="next"`)
		}
	}
	if tags == nil {
		tags = []string{}
	}
	body, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(body)
	return err
}

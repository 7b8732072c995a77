package registry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/goldproxy/goldproxy/proxy/mirror"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
)

// serveTags answers GET /v2/<name>/tags/list with n/last pagination over the mirror's list.
func (reg *Registry) serveTags(w http.ResponseWriter, r *http.Request, rt *mirror.Route) error {
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
	tags, err := reg.mirror.Tags(r.Context(), rt)
	if err != nil {
		return err
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
			if rt.NS != "" {
				next.Set("ns", rt.NS)
			}
			w.Header().Set("Link", `</v2/`+rt.Name+`/tags/list?`+next.Encode()+`>; rel="next"`)
		}
	}
	if tags == nil {
		tags = []string{}
	}
	body, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.Name, tags})
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

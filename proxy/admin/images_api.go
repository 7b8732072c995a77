package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/auth"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// ImageSummary is one stored image manifest as the API lists it.
type ImageSummary struct {
	Repository string         `json:"repository"`
	Tags       []string       `json:"tags,omitempty"`
	Digest     string         `json:"digest"`
	MediaType  string         `json:"mediaType,omitempty"`
	Verdict    string         `json:"verdict"` // allowed, denied, error, pending, none
	Policy     string         `json:"policy,omitempty"`
	Rule       string         `json:"rule,omitempty"`
	Counts     map[string]int `json:"counts,omitempty"`
	LastPulled time.Time      `json:"lastPulled,omitzero"`
	StoredAt   time.Time      `json:"storedAt,omitzero"`
	ScannedAt  time.Time      `json:"scannedAt,omitzero"`
	DBVersion  string         `json:"dbVersion,omitempty"`
}

// page reads limit (1..500, default 50) and cursor from a request.
func page(r *http.Request) (int, string, error) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return 0, "", &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: "limit must be 1..500"}
		}
		limit = n
	}
	cursor := ""
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			return 0, "", &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: "invalid cursor"}
		}
		cursor = string(b)
	}
	return limit, cursor, nil
}

// writePage writes items with the cursor of the next page (and a Link header to it).
func writePage(w http.ResponseWriter, r *http.Request, key string, items any, next string) error {
	out := map[string]any{key: items}
	if next != "" {
		c := base64.RawURLEncoding.EncodeToString([]byte(next))
		out["next"] = c
		q := r.URL.Query()
		q.Set("cursor", c)
		w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// summaries lists every stored image manifest with its verdict, sorted by repository
// and digest; filters: denied=true, repository=<glob>, severity=<at least one finding
// of this severity or worse>.
func (h *Handler) summaries(p *auth.Principal, q url.Values) ([]ImageSummary, error) {
	images, err := h.store.Images()
	if err != nil {
		return nil, err
	}
	recent := h.gc.Pulls().Snapshot() // pulls not yet flushed to the store
	var out []ImageSummary
	for _, img := range images {
		if p != nil && !p.May(img.Repository) {
			continue // a scoped reader sees only its repositories
		}
		sum := ImageSummary{Repository: img.Repository, Digest: img.Digest.String(), LastPulled: img.LastPulled, StoredAt: img.StoredAt, Verdict: "none"}
		if t, ok := recent[storage.PullKey(img.Repository, img.Digest)]; ok && t.After(sum.LastPulled) {
			sum.LastPulled = t
		}
		if rec, _ := h.store.HasManifest(img.Repository, img.Digest); rec.MediaType != "" {
			sum.MediaType = rec.MediaType
		}
		if tags, err := h.store.TagsOf(img.Repository, img.Digest); err == nil {
			sum.Tags = tags
		}
		if h.gate != nil {
			if j := h.gate.Judgement(img.Repository, img.Digest); j != nil {
				sum.Verdict, sum.Policy, sum.Rule = j.State, j.Verdict.Policy, j.Verdict.Rule()
				sum.Counts, sum.ScannedAt, sum.DBVersion = j.Verdict.Counts, j.ScannedAt, j.DBVersion
			} else if f, err := h.gate.Facts(img.Digest); err == nil && !f.Final() {
				sum.Verdict, sum.ScannedAt, sum.DBVersion = f.State, f.ScannedAt, f.DBVersion
			}
		}
		if q.Get("denied") == "true" && sum.Verdict != "denied" {
			continue
		}
		if g := q.Get("repository"); g != "" && !policy.Match(g, sum.Repository) && !strings.Contains(sum.Repository, g) {
			continue
		}
		if sev := strings.ToUpper(q.Get("severity")); sev != "" {
			worst := false
			for s, n := range sum.Counts {
				if n > 0 && policy.SeverityRank(s) <= policy.SeverityRank(sev) {
					worst = true
				}
			}
			if !worst {
				continue
			}
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repository != out[j].Repository {
			return out[i].Repository < out[j].Repository
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

// serveImages is GET /api/v1/images: stored images with their verdicts, paginated.
func (h *Handler) serveImages(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	all, err := h.summaries(auth.PrincipalOf(r.Context()), r.URL.Query())
	if err != nil {
		return err
	}
	// The cursor is the sort key of the last item served: (repository, digest).
	crepo, cdigest, _ := strings.Cut(cursor, "\x00")
	i := sort.Search(len(all), func(i int) bool {
		if all[i].Repository != crepo {
			return all[i].Repository > crepo
		}
		return all[i].Digest > cdigest
	})
	if cursor == "" {
		i = 0
	}
	end, next := min(i+limit, len(all)), ""
	if end < len(all) {
		next = all[end-1].Repository + "\x00" + all[end-1].Digest
	}
	items := all[i:end]
	if items == nil {
		items = []ImageSummary{}
	}
	return writePage(w, r, "images", items, next)
}

// ImageDetail is GET /api/v1/images/<digest>: everything known about one digest — its
// facts, and its judgement in each repository that holds it.
type ImageDetail struct {
	Digest       string         `json:"digest"`
	Repositories []ImageSummary `json:"repositories"`
	// Verdict is the judgement in the repository asked for (?repository=), else in the
	// first one.
	Verdict    *gate.Judgement   `json:"verdict,omitempty"`
	Judgements []*gate.Judgement `json:"judgements,omitempty"`
	Facts      *gate.Facts       `json:"facts,omitempty"`
	Layers     []LayerSummary    `json:"layers,omitempty"`
	Manifest   json.RawMessage   `json:"manifest,omitempty"`
}

// LayerSummary is one layer of an image.
type LayerSummary struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

func (h *Handler) serveImage(w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	det, err := h.imageDetail(r, d)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(det)
}

// imageDetail gathers what is known about one digest.
func (h *Handler) imageDetail(r *http.Request, d digest.Digest) (*ImageDetail, error) {
	all, err := h.summaries(auth.PrincipalOf(r.Context()), nil) // every repository holding it (that the reader may see)
	if err != nil {
		return nil, err
	}
	det := ImageDetail{Digest: d.String()}
	for _, sum := range all {
		if sum.Digest == d.String() {
			det.Repositories = append(det.Repositories, sum)
		}
	}
	if len(det.Repositories) == 0 {
		return nil, httpx.ManifestUnknown("no stored image %s", d)
	}
	repo := det.Repositories[0].Repository
	if want := r.URL.Query().Get("repository"); want != "" {
		for _, sum := range det.Repositories {
			if sum.Repository == want {
				repo = want
			}
		}
	}
	if _, raw, err := h.store.Manifest(repo, d); err == nil {
		det.Manifest = raw
		var m struct {
			Layers []LayerSummary `json:"layers"`
		}
		if json.Unmarshal(raw, &m) == nil {
			det.Layers = m.Layers
		}
	}
	if h.gate != nil {
		if f, err := h.gate.Facts(d); err == nil {
			det.Facts = f
		}
		for _, sum := range det.Repositories {
			if j := h.gate.Judgement(sum.Repository, d); j != nil {
				det.Judgements = append(det.Judgements, j)
				if sum.Repository == repo {
					det.Verdict = j
				}
			}
		}
	}
	return &det, nil
}

// serveVerdicts is GET /api/v1/verdicts?state=denied: the recorded judgements, one per
// (repository, digest), paginated in that order.
func (h *Handler) serveVerdicts(w http.ResponseWriter, r *http.Request) error {
	limit, cursor, err := page(r)
	if err != nil {
		return err
	}
	state := r.URL.Query().Get("state")
	items := []gate.Judgement{}
	next := ""
	err = h.store.Judgements(func(repo string, d digest.Digest, b []byte) error {
		if k := repo + "\x00" + d.String(); cursor != "" && k <= cursor {
			return nil
		}
		if p := auth.PrincipalOf(r.Context()); p != nil && !p.May(repo) {
			return nil
		}
		var j gate.Judgement
		if json.Unmarshal(b, &j) != nil || (state != "" && j.State != state) {
			return nil
		}
		if len(items) == limit {
			next = items[limit-1].Repository + "\x00" + items[limit-1].Digest
			return errPageFull
		}
		j.Verdict.Reasons = nil // the reasons are in the image detail and report; keep the list light
		items = append(items, j)
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return err
	}
	return writePage(w, r, "verdicts", items, next)
}

var errPageFull = errors.New("page full")

package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// serveAPI answers goldproxy's own endpoints: /healthz, /readyz and /api/v1/.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) (bool, error) {

	p := r.URL.Path
	switch {
	case p == "/ui" || strings.HasPrefix(p, "/ui/"):
		return true, h.serveUI(w, r)
	case p == "/healthz":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
		return true, nil
	case p == "/readyz":
		return true, h.serveReady(w)
	case p == "/api/v1/baselines":
		if r.Method != http.MethodPost {
			return true, httpx.Unsupported("POST a baseline comparison (goldproxy baseline --proxy does)")
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil || !json.Valid(b) {
			return true, &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: "body must be the baseline JSON"}
		}
		if err := h.store.PutBaseline(h.now(), b); err != nil {
			return true, err
		}
		w.WriteHeader(http.StatusCreated)
		return true, nil
	case p == "/api/v1/baselines/latest":
		at, b, err := h.store.LatestBaseline()
		if errors.Is(err, storage.ErrNotFound) {
			return true, httpx.ManifestUnknown("no baseline comparison was run through this proxy")
		}
		if err != nil {
			return true, err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Last-Modified", at.UTC().Format(http.TimeFormat))
		_, err = w.Write(b)
		return true, err
	case p == "/api/v1/images":
		return true, h.serveImages(w, r)
	case p == "/api/v1/verdicts":
		return true, h.serveVerdicts(w, r)
	case strings.HasPrefix(p, "/api/v1/images/") && strings.Count(strings.TrimPrefix(p, "/api/v1/images/"), "/") == 0:
		d, err := digest.Parse(strings.TrimPrefix(p, "/api/v1/images/"))
		if err != nil {
			return true, httpx.DigestInvalid("invalid digest: %v", err)
		}
		return true, h.serveImage(w, r, d)
	case p == "/api/v1/robots" || strings.HasPrefix(p, "/api/v1/robots/"):
		return true, h.auth.ServeRobots(w, r)
	case p == "/api/v1/gc":
		if r.Method != http.MethodPost {
			return true, httpx.Unsupported("POST to run gc (?dry_run=true to see what it would remove)")
		}
		res, err := h.gc.Collect(r.Context(), r.URL.Query().Get("dry_run") == "true")
		if err != nil {
			return true, err
		}
		w.Header().Set("Content-Type", "application/json")
		return true, json.NewEncoder(w).Encode(res)
	case p == "/api/v1/db/update":
		if r.Method != http.MethodPost {
			return true, httpx.Unsupported("POST to update the vulnerability DB")
		}
		if h.dbUpdate == nil {
			return true, httpx.Unsupported("this proxy cannot update its DB")
		}
		res, err := h.dbUpdate(r.Context())
		if err != nil {
			return true, httpx.Upstream("DB update failed: %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		return true, json.NewEncoder(w).Encode(res)
	case p == "/api/v1/db":
		rep, ok := h.scanReporter()
		if !ok {
			return true, httpx.Unsupported("no vulnerability DB: scanning is off")
		}
		st, err := rep.DBStatus()
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true, json.NewEncoder(w).Encode(map[string]any{"loaded": false, "error": err.Error()})
		}
		return true, json.NewEncoder(w).Encode(map[string]any{"loaded": true, "db": st})
	case strings.HasPrefix(p, "/api/v1/images/") && strings.HasSuffix(p, "/verdict"):
		d, err := digest.Parse(strings.TrimSuffix(strings.TrimPrefix(p, "/api/v1/images/"), "/verdict"))
		if err != nil {
			return true, httpx.DigestInvalid("invalid digest: %v", err)
		}
		det, err := h.imageDetail(r, d)
		if err != nil {
			return true, err
		}
		if det.Facts == nil {
			return true, httpx.ManifestUnknown("no verdict for %s", d)
		}
		out := VerdictDetail{Judgement: gate.Judgement{Digest: d.String(), State: det.Facts.State, Error: det.Facts.Error,
			DBVersion: det.Facts.DBVersion, ScannedAt: det.Facts.ScannedAt}, Input: det.Facts.Input, Facts: det.Facts, Judgements: det.Judgements}
		if det.Verdict != nil {
			out.Judgement = *det.Verdict
		}
		w.Header().Set("Content-Type", "application/json")
		return true, json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(p, "/api/v1/images/") && strings.HasSuffix(p, "/report"):
		d, err := digest.Parse(strings.TrimSuffix(strings.TrimPrefix(p, "/api/v1/images/"), "/report"))
		if err != nil {
			return true, httpx.DigestInvalid("invalid digest: %v", err)
		}
		return true, h.serveReport(w, r, d)
	}
	return false, nil
}

// ReportFormatter is implemented by a Scanner that can render its stored reports in
// other formats (sarif, cyclonedx).
type ReportFormatter interface {
	FormatReport(ctx context.Context, w io.Writer, format string, report json.RawMessage) error
}

// serveReport answers /api/v1/images/<digest>/report?format=json|sarif|md|cyclonedx.
func (h *Handler) serveReport(w http.ResponseWriter, r *http.Request, d digest.Digest) error {
	det, err := h.imageDetail(r, d) // only a digest the reader may see
	if err != nil {
		return err
	}
	if want := r.URL.Query().Get("repository"); want != "" && !slices.ContainsFunc(det.Repositories, func(s ImageSummary) bool { return s.Repository == want }) {
		return httpx.ManifestUnknown("no stored image %s in %s", d, want)
	}
	report, err := h.store.Report(d)
	if errors.Is(err, storage.ErrNotFound) {
		return httpx.ManifestUnknown("no scan report for %s", d)
	}
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	// The report names the repository it is read for: the one the reader was denied in.
	repo := r.URL.Query().Get("repository")
	if repo != "" {
		if report, err = renameReport(report, repo, d); err != nil {
			return err
		}
	}
	switch format {
	case "", "json":
		// Beside the scanner's report, who signed the image and what is attested, as
		// the policy judged them for this repository.
		if det.Verdict != nil && det.Verdict.Verdict.Trust != nil {
			if report, err = addTrust(report, det.Verdict.Verdict.Trust); err != nil {
				return err
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, err = w.Write(report)
		return err
	case "md", "markdown":
		det, err := h.imageDetail(r, d)
		if err != nil || det.Facts == nil || det.Facts.Input == nil || det.Verdict == nil {
			return httpx.ManifestUnknown("no verdict for %s", d)
		}
		in := *det.Facts.Input
		in.Repository, in.Tag = det.Verdict.Repository, det.Verdict.Tag
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		_, err = io.WriteString(w, gate.MarkdownReport(in, det.Verdict.Verdict, det.Facts.DBVersion))
		return err
	case "sarif", "cyclonedx":
		var f ReportFormatter
		if h.gate != nil {
			f, _ = h.gate.Scanner().(ReportFormatter)
		}
		if f == nil {
			return httpx.Unsupported("this proxy cannot render %s reports", format)
		}
		var buf bytes.Buffer
		if err := f.FormatReport(r.Context(), &buf, format, report); err != nil {
			return err
		}
		ct := "application/sarif+json"
		if format == "cyclonedx" {
			ct = "application/vnd.cyclonedx+json"
		}
		w.Header().Set("Content-Type", ct)
		_, err = w.Write(buf.Bytes())
		return err
	}
	return &httpx.Error{Status: http.StatusBadRequest, Code: "UNSUPPORTED", Message: fmt.Sprintf("format %q: use json, sarif, md or cyclonedx", format)}
}

// VerdictDetail is GET /api/v1/images/<digest>/verdict[?repository=]: the judgement in
// that repository (else the first), the digest's facts and its scan input, and the
// judgements in every repository holding it.
type VerdictDetail struct {
	gate.Judgement
	Input      *policy.Input     `json:"input,omitempty"`
	Facts      *gate.Facts       `json:"facts"`
	Judgements []*gate.Judgement `json:"judgements,omitempty"`
}

// addTrust adds the signature facts of a verdict to a stored report as "Signatures".
func addTrust(report []byte, t *policy.Trust) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(report, &m); err != nil {
		return nil, fmt.Errorf("stored report: %w", err)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	m["Signatures"] = b
	return json.Marshal(m)
}

// renameReport makes a stored Trivy report name repo@dgst: the report is a fact of the
// digest, and the same content may be held by several repositories.
func renameReport(report []byte, repo string, dgst digest.Digest) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(report, &m); err != nil {
		return nil, fmt.Errorf("stored report of %s: %w", dgst, err)
	}
	name, _ := json.Marshal(repo + "@" + dgst.String())
	m["ArtifactName"] = name
	if md, ok := m["Metadata"]; ok {
		var meta map[string]json.RawMessage
		if json.Unmarshal(md, &meta) == nil {
			meta["RepoDigests"] = json.RawMessage("[" + string(name) + "]")
			delete(meta, "RepoTags")
			if b, err := json.Marshal(meta); err == nil {
				m["Metadata"] = b
			}
		}
	}
	return json.Marshal(m)
}

// DBReporter is implemented by a Scanner that can describe its vulnerability DB.
type DBReporter interface {
	DBStatus() (any, error)
}

func (h *Handler) scanReporter() (DBReporter, bool) {
	if h.gate == nil {
		return nil, false
	}
	r, ok := h.gate.Scanner().(DBReporter)
	return r, ok
}

func (h *Handler) serveReady(w http.ResponseWriter) error {
	checks := map[string]string{}
	ok := true
	if err := h.store.Writable(); err != nil {
		checks["store"], ok = err.Error(), false
	} else {
		checks["store"] = "ok"
	}
	if h.gate != nil {
		checks["scanner"] = "ok"
		if rd, is := h.gate.Scanner().(gate.Readiness); is {
			if err := rd.Ready(); err != nil {
				checks["scanner"], ok = err.Error(), false
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": checks})
}

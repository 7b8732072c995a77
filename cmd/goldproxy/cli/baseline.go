package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

// BaselineOptions are what `baseline` compares; its flags default to the BASELINE_*
// variables.
type BaselineOptions struct {
	Images        string // list of standard images (BASELINE_IMAGES)
	Hardened      string // list of hardened images (BASELINE_IMAGES_HARDENED)
	HardenedLimit int    // scan at most this many hardened images; 0: all (BASELINE_HARDENED_LIMIT)
	OutDir        string // where the comparison and the per-image reports go
	ConfigPath    string // config file; "" is the embedded default
	DBDir         string // vulnerability DB directory, overriding db.dir
	ProxyURL      string // pull through this running goldproxy instead of scanning here
	User          string // user for ProxyURL (password from GOLDPROXY_PASSWORD)
	Insecure      bool   // allow plain-HTTP registries
	Now           func() time.Time
}

// NewBaselineCmd is `baseline`: standard and hardened bases scanned and compared.
func NewBaselineCmd() *cobra.Command {
	o := BaselineOptions{Now: time.Now}
	cmd := &cobra.Command{
		Use:   "baseline --images FILE --hardened FILE --output-dir DIR",
		Short: "Scan standard and hardened images and compare them side by side",
		Long: `Scan every image of two lists (the seeds' format: one ref per line, "#" comments) — standard
bases and hardened ones — and write a comparison: baseline.json, baseline.md,
baseline.html (self-contained, sortable, a severity bar per image) and a report
directory per image. Each row: digest, OS, size, packages, vulnerabilities and fixable
ones by severity, non-root, shell, package manager, age, verdict under the policy. A
summary groups the images by kind (standard, slim, alpine, distroless, chainguard, UBI,
own). An image that fails is recorded in its row and the run goes on; the exit status
says whether any failed. BASELINE_IMAGES, BASELINE_IMAGES_HARDENED and
BASELINE_HARDENED_LIMIT set the same things as the flags. A list line "sbom:PATH"
(relative to the list) scans that SBOM's packages in place of an image, here even with
--proxy. Registries are reached with the docker config keychain (docker login).

Example:
  goldproxy baseline --images configs/images-standard.txt --hardened configs/images-hardened.txt --hardened-limit 5 --output-dir baseline/
  BASELINE_IMAGES=tests/baseline/images-hardened-myteam.txt go run ./cmd/baseline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunBaseline(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	limit, _ := strconv.Atoi(os.Getenv("BASELINE_HARDENED_LIMIT"))
	cmd.Flags().StringVar(&o.Images, "images", os.Getenv("BASELINE_IMAGES"), "list of standard images (env BASELINE_IMAGES)")
	cmd.Flags().StringVar(&o.Hardened, "hardened", os.Getenv("BASELINE_IMAGES_HARDENED"), "list of hardened images (env BASELINE_IMAGES_HARDENED)")
	cmd.Flags().IntVar(&o.HardenedLimit, "hardened-limit", limit, "scan at most N hardened images; 0: all (env BASELINE_HARDENED_LIMIT)")
	cmd.Flags().StringVar(&o.OutDir, "output-dir", "baseline", "where the comparison and the per-image reports go")
	cmd.Flags().StringVar(&o.ConfigPath, "config", "", "config file (db and policy keys are used)")
	cmd.Flags().StringVar(&o.DBDir, "db-dir", "", "vulnerability DB directory (config: db.dir)")
	cmd.Flags().BoolVar(&o.Insecure, "insecure", false, "allow plain-HTTP registries")
	cmd.Flags().StringVar(&o.ProxyURL, "proxy", "", "pull through this running goldproxy: its scans and verdicts are used, and the comparison is stored there for its dashboard")
	cmd.Flags().StringVar(&o.User, "user", "", "user for --proxy (password from GOLDPROXY_PASSWORD)")
	return cmd
}

// BaselineRow is one image of the comparison.
type BaselineRow struct {
	Ref        string         `json:"ref"`
	Set        string         `json:"set"` // standard or hardened
	Kind       string         `json:"kind"`
	Digest     string         `json:"digest,omitempty"`
	OS         string         `json:"os,omitempty"`
	SizeBytes  int64          `json:"sizeBytes,omitempty"`
	Packages   int            `json:"packages"`
	Vulns      map[string]int `json:"vulnerabilities"`
	Fixable    map[string]int `json:"fixable"`
	NonRoot    bool           `json:"nonRoot"`
	Shell      bool           `json:"shell"`
	PackageMgr bool           `json:"packageManager"`
	AgeDays    int            `json:"ageDays"`
	Verdict    string         `json:"verdict"`
	Rule       string         `json:"rule,omitempty"`
	Error      string         `json:"error,omitempty"`
	ReportDir  string         `json:"reportDir,omitempty"`
}

// Baseline is baseline.json.
type Baseline struct {
	Policy  string        `json:"policy"`
	Rows    []BaselineRow `json:"images"`
	Summary []KindSummary `json:"summary"`
}

// KindSummary sums up one kind of image.
type KindSummary struct {
	Kind       string `json:"kind"`
	Images     int    `json:"images"`
	FixableMin int    `json:"fixableMin"`
	FixableMax int    `json:"fixableMax"`
	TotalMin   int    `json:"totalMin"`
	TotalMax   int    `json:"totalMax"`
	Denied     int    `json:"denied"`
}

var kinds = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"chainguard", regexp.MustCompile(`(^|/)cgr\.dev/chainguard/|(^|/)chainguard/`)},
	{"distroless", regexp.MustCompile(`distroless`)},
	{"UBI", regexp.MustCompile(`ubi[0-9]*[-/]|/ubi[0-9]*$|registry\.access\.redhat\.com/`)},
	{"alpine", regexp.MustCompile(`alpine`)},
	{"slim", regexp.MustCompile(`slim`)},
	{"standard base", regexp.MustCompile(`(^|/)(library/)?(ubuntu|debian|python|node|eclipse-temurin|golang|openjdk|nginx|centos|fedora)[:@]`)},
}

// kindOf classifies an image by its reference; anything else is the team's own.
func kindOf(ref string) string {
	for _, k := range kinds {
		if k.re.MatchString(ref) {
			return k.kind
		}
	}
	return "own"
}

// RunBaseline scans both lists (or pulls them through o.ProxyURL) and writes the
// comparison to o.OutDir; the error is an *ExitError (1: an image failed, 2: set-up).
func RunBaseline(ctx context.Context, out io.Writer, o BaselineOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	standard, err := ReadList(o.Images)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	hardened, err := ReadList(o.Hardened)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if o.HardenedLimit > 0 && len(hardened) > o.HardenedLimit {
		hardened = hardened[:o.HardenedLimit]
	}
	if len(standard)+len(hardened) == 0 {
		return &ExitError{Code: 2, Err: fmt.Errorf("no images: give --images and/or --hardened (or BASELINE_IMAGES…)")}
	}
	cfg, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if o.DBDir != "" {
		cfg.DB.Dir = o.DBDir
	}
	pol, err := LoadPolicy(cfg)
	if err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	b := Baseline{Policy: OrDefault(cfg.Policy)}
	bar := NewProgress(out, len(standard)+len(hardened))
	failed := 0
	for _, set := range []struct {
		name    string
		entries []ListEntry
	}{{"standard", standard}, {"hardened", hardened}} {
		for _, e := range set.entries {
			bar.Step(e.Name)
			var row BaselineRow
			switch {
			case e.SBOM != "": // an SBOM is scanned here, with or without a proxy
				row = baselineRow(ctx, cfg, pol, o, set.name, e)
			case o.ProxyURL != "":
				row = baselineRowViaProxy(ctx, o, set.name, e.Name)
			default:
				row = baselineRow(ctx, cfg, pol, o, set.name, e)
			}
			if row.Error != "" {
				failed++
			}
			b.Rows = append(b.Rows, row)
		}
	}
	bar.Done()
	b.Summary = summarize(b.Rows)
	if err := writeBaseline(o.OutDir, b); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if o.ProxyURL != "" {
		body, _ := json.Marshal(b)
		if err := AdminCall(io.Discard, "POST", o.ProxyURL, "/api/v1/baselines", o.User, body); err != nil {
			fmt.Fprintf(out, "could not store the comparison on the proxy: %v\n", err)
		}
	}
	fmt.Fprintf(out, "baseline: %d images (%d failed) → %s\n", len(b.Rows), failed, o.OutDir)
	for _, k := range b.Summary {
		fmt.Fprintf(out, "  %-14s %d images, fixable CVEs %d–%d, all CVEs %d–%d\n", k.Kind, k.Images, k.FixableMin, k.FixableMax, k.TotalMin, k.TotalMax)
	}
	for _, r := range b.Rows {
		if r.Error != "" {
			fmt.Fprintf(out, "  failed: %s: %s\n", r.Ref, r.Error)
		}
	}
	if failed > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d images could not be scanned", failed, len(b.Rows))}
	}
	return nil
}

func baselineRow(ctx context.Context, cfg *config.Config, pol *policy.Set, o BaselineOptions, set string, e ListEntry) BaselineRow {
	ref := e.Name
	row := BaselineRow{Ref: ref, Set: set, Kind: kindOf(ref), Vulns: map[string]int{}, Fixable: map[string]int{}, Verdict: "error"}
	var sc *Scanned
	var err error
	if e.SBOM != "" {
		sc, err = ScanSBOM(ctx, cfg, e.SBOM)
	} else {
		sc, err = ScanOne(ctx, cfg, ref, "", o.Insecure)
	}
	if err != nil {
		row.Error = err.Error()
		return row
	}
	in := sc.In
	if e.SBOM != "" {
		row.Kind = kindOf(in.Repository + ":" + in.Tag) // what the SBOM describes
	}
	v := pol.Evaluate(in, o.Now())
	row.Digest, row.OS, row.Packages = in.Digest, in.OS, packageCount(sc)
	row.Vulns, row.Fixable = v.Counts, v.Fixable
	row.NonRoot = !(&policy.Policy{NonRoot: true}).Fails(in, "non-root", o.Now())
	row.Shell = (&policy.Policy{NoShell: true}).Fails(in, "no-shell", o.Now())
	row.PackageMgr = (&policy.Policy{NoPackageManager: true}).Fails(in, "no-package-manager", o.Now())
	for _, l := range sc.Res.Report.Metadata.Layers {
		row.SizeBytes += l.Size
	}
	if !in.Created.IsZero() {
		row.AgeDays = int(o.Now().Sub(in.Created).Hours() / 24)
	}
	row.Verdict = "allowed"
	if !v.Allowed {
		row.Verdict, row.Rule = "denied", v.Rule()
	}
	dir := filepath.Join(o.OutDir, "images", SafeName(ref))
	if err := os.MkdirAll(dir, 0o755); err == nil {
		for _, f := range []string{"json", "md"} {
			if err := WriteReportFile(ctx, dir, f, sc.Res, in, v); err != nil {
				row.Error = err.Error()
			}
		}
		row.ReportDir, _ = filepath.Rel(o.OutDir, dir)
	}
	return row
}

// baselineRowViaProxy pulls ref through a running goldproxy (which scans and judges it)
// and builds the row from the proxy's verdict and report.
func baselineRowViaProxy(ctx context.Context, o BaselineOptions, set, ref string) BaselineRow {
	row := BaselineRow{Ref: ref, Set: set, Kind: kindOf(ref), Vulns: map[string]int{}, Fixable: map[string]int{}, Verdict: "error"}
	w := WarmViaProxy(ctx, o.ProxyURL, ref)
	if w.Digest == "" {
		row.Error = w.Error
		return row
	}
	row.Digest = w.Digest
	get := func(path string, v any) error {
		var buf strings.Builder
		if err := AdminCall(&buf, "GET", o.ProxyURL, path, o.User, nil); err != nil {
			return err
		}
		return json.Unmarshal([]byte(buf.String()), v)
	}
	var rec struct {
		State   string         `json:"state"`
		Error   string         `json:"error"`
		Verdict policy.Verdict `json:"verdict"`
		Input   *policy.Input  `json:"input"`
	}
	repoQuery := ""
	if r, err := name.ParseReference(ref); err == nil {
		repoQuery = "?repository=" + url.QueryEscape(gate.RepositoryOf(r))
	}
	if err := get("/api/v1/images/"+w.Digest+"/verdict"+repoQuery, &rec); err != nil || rec.Input == nil {
		row.Error = fmt.Sprintf("no verdict from the proxy for %s: %v %s", w.Digest, err, rec.Error)
		return row
	}
	in := *rec.Input
	row.OS, row.Vulns, row.Fixable, row.Verdict, row.Rule = in.OS, rec.Verdict.Counts, rec.Verdict.Fixable, rec.State, rec.Verdict.Rule()
	row.NonRoot = !(&policy.Policy{NonRoot: true}).Fails(in, "non-root", o.Now())
	row.Shell = (&policy.Policy{NoShell: true}).Fails(in, "no-shell", o.Now())
	row.PackageMgr = (&policy.Policy{NoPackageManager: true}).Fails(in, "no-package-manager", o.Now())
	if !in.Created.IsZero() {
		row.AgeDays = int(o.Now().Sub(in.Created).Hours() / 24)
	}
	var report struct {
		Metadata struct{ Layers []struct{ Size int64 } }
		Results  []struct{ Packages []json.RawMessage }
	}
	if err := get("/api/v1/images/"+w.Digest+"/report", &report); err == nil {
		for _, l := range report.Metadata.Layers {
			row.SizeBytes += l.Size
		}
		for _, r := range report.Results {
			row.Packages += len(r.Packages)
		}
	}
	return row
}

func packageCount(sc *Scanned) int {
	n := 0
	for _, r := range sc.Res.Report.Results {
		n += len(r.Packages)
	}
	return n
}

var unsafeChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// SafeName is the directory of ref's reports under a baseline's images/.
func SafeName(ref string) string { return strings.Trim(unsafeChars.ReplaceAllString(ref, "_"), "_") }

func summarize(rows []BaselineRow) []KindSummary {
	by := map[string]*KindSummary{}
	var order []string
	for _, r := range rows {
		if r.Error != "" {
			continue
		}
		fix, all := 0, 0
		for _, n := range r.Fixable {
			fix += n
		}
		for _, n := range r.Vulns {
			all += n
		}
		k, ok := by[r.Kind]
		if !ok {
			k = &KindSummary{Kind: r.Kind, FixableMin: fix, FixableMax: fix, TotalMin: all, TotalMax: all}
			by[r.Kind] = k
			order = append(order, r.Kind)
		}
		k.Images++
		k.FixableMin, k.FixableMax = min(k.FixableMin, fix), max(k.FixableMax, fix)
		k.TotalMin, k.TotalMax = min(k.TotalMin, all), max(k.TotalMax, all)
		if r.Verdict == "denied" {
			k.Denied++
		}
	}
	sort.Strings(order)
	out := make([]KindSummary, 0, len(order))
	for _, k := range order {
		out = append(out, *by[k])
	}
	return out
}

func writeBaseline(dir string, b Baseline) error {
	js, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "baseline.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "baseline.md"), []byte(baselineMarkdown(b)), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "baseline.html"))
	if err != nil {
		return err
	}
	defer f.Close()
	return baselineHTML.Execute(f, b)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func baselineMarkdown(b Baseline) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Base image baseline\n\nPolicy: %s\n\n## Summary by kind\n\n| Kind | Images | Fixable CVEs | All CVEs | Denied |\n|---|---:|---|---|---:|\n", b.Policy)
	for _, k := range b.Summary {
		fmt.Fprintf(&s, "| %s | %d | %d–%d | %d–%d | %d |\n", k.Kind, k.Images, k.FixableMin, k.FixableMax, k.TotalMin, k.TotalMax, k.Denied)
	}
	s.WriteString("\n## Images\n\n| Image | Set | Kind | OS | Size | Packages | Critical | High | Medium | Low | Fixable C/H/M/L | Non-root | Shell | Pkg manager | Age (days) | Verdict |\n|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---|\n")
	for _, r := range b.Rows {
		if r.Error != "" {
			fmt.Fprintf(&s, "| %s | %s | %s | failed: %s |||||||||||||\n", r.Ref, r.Set, r.Kind, strings.ReplaceAll(r.Error, "|", "\\|"))
			continue
		}
		verdict := r.Verdict
		if r.Rule != "" {
			verdict += " (" + r.Rule + ")"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %d | %d | %d | %d | %d | %d/%d/%d/%d | %s | %s | %s | %d | %s |\n",
			r.Ref, r.Set, r.Kind, noneIf(r.OS), admin.HumanBytes(r.SizeBytes), r.Packages, r.Vulns["CRITICAL"], r.Vulns["HIGH"], r.Vulns["MEDIUM"], r.Vulns["LOW"],
			r.Fixable["CRITICAL"], r.Fixable["HIGH"], r.Fixable["MEDIUM"], r.Fixable["LOW"], yesNo(r.NonRoot), yesNo(r.Shell), yesNo(r.PackageMgr), r.AgeDays, verdict)
	}
	return s.String()
}

func noneIf(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

var baselineHTML = template.Must(template.New("baseline").Funcs(template.FuncMap{
	"human": admin.HumanBytes, "yesno": yesNo, "total": func(m map[string]int) int {
		t := 0
		for _, n := range m {
			t += n
		}
		return t
	}, "pct": func(n, total int) int {
		if total == 0 {
			return 0
		}
		return n * 100 / total
	},
}).Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Base image baseline</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5rem;color:#1b1f24}table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e1e4e8;padding:.3rem .5rem;text-align:left}th{background:#f3f4f6;cursor:pointer}
.bar{display:flex;width:160px;height:12px;background:#eee}.bar span{display:block;height:12px}.C{background:#86181d}.H{background:#d73a49}.M{background:#e36209}.L{background:#b08800}.fail{color:#86181d}</style></head><body>
<h1>Base image baseline</h1><p>Policy: {{.Policy}}</p>
<h2>Summary by kind</h2><table><tr><th>Kind</th><th>Images</th><th>Fixable CVEs</th><th>All CVEs</th><th>Denied</th></tr>
{{range .Summary}}<tr><td>{{.Kind}}</td><td>{{.Images}}</td><td>{{.FixableMin}}–{{.FixableMax}}</td><td>{{.TotalMin}}–{{.TotalMax}}</td><td>{{.Denied}}</td></tr>{{end}}</table>
<h2>Images</h2><table id="images"><thead><tr><th>Image</th><th>Kind</th><th>OS</th><th>Size</th><th>Packages</th><th>Critical</th><th>High</th><th>Medium</th><th>Low</th><th>Fixable</th><th>Severities</th><th>Non-root</th><th>Shell</th><th>Pkg mgr</th><th>Age</th><th>Verdict</th></tr></thead><tbody>
{{range .Rows}}{{if .Error}}<tr><td>{{.Ref}}</td><td>{{.Kind}}</td><td class="fail" colspan="14">failed: {{.Error}}</td></tr>{{else}}{{$t := total .Vulns}}<tr><td>{{.Ref}}</td><td>{{.Kind}}</td><td>{{.OS}}</td><td data-v="{{.SizeBytes}}">{{human .SizeBytes}}</td><td>{{.Packages}}</td>
<td>{{index .Vulns "CRITICAL"}}</td><td>{{index .Vulns "HIGH"}}</td><td>{{index .Vulns "MEDIUM"}}</td><td>{{index .Vulns "LOW"}}</td><td>{{total .Fixable}}</td>
<td><div class="bar" title="{{$t}} vulnerabilities"><span class="C" style="width:{{pct (index .Vulns "CRITICAL") $t}}%"></span><span class="H" style="width:{{pct (index .Vulns "HIGH") $t}}%"></span><span class="M" style="width:{{pct (index .Vulns "MEDIUM") $t}}%"></span><span class="L" style="width:{{pct (index .Vulns "LOW") $t}}%"></span></div></td>
<td>{{yesno .NonRoot}}</td><td>{{yesno .Shell}}</td><td>{{yesno .PackageMgr}}</td><td>{{.AgeDays}}</td><td>{{.Verdict}}</td></tr>{{end}}{{end}}</tbody></table>
<script>document.querySelectorAll("#images th").forEach((th,i)=>th.onclick=()=>{const tb=th.closest("table").tBodies[0];const rows=[...tb.rows];const dir=th.dataset.dir=th.dataset.dir==="asc"?"desc":"asc";
const key=r=>{const c=r.cells[i];if(!c)return "";const v=c.dataset.v??c.textContent;return isNaN(v)||v===""?v:Number(v)};rows.sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(dir==="asc"?1:-1)});rows.forEach(r=>tb.appendChild(r))});</script>
</body></html>
`))

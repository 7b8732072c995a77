package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestDashboardPages(t *testing.T) {
	sc := &fakeScanner{}
	up, p, vuln, _ := scanSetup(t, sc, nil)
	if err := pullAll(up.Name+"/team/clean:1", p); err != nil {
		t.Fatal(err)
	}
	get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)
	vd, _ := vuln.Digest()

	page := func(path string) string {
		resp, body := get(t, http.MethodGet, p.URL+path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	home := page("/ui/")
	for _, want := range []string{up.Name + "/team/clean", up.Name + "/team/vuln", `badge-denied">denied`, `badge-allowed">allowed`, `href="/ui/images/` + vd.String()} {
		if !strings.Contains(home, want) {
			t.Errorf("images page lacks %q", want)
		}
	}
	if denied := page("/ui/?denied=true"); strings.Contains(denied, up.Name+"/team/clean") || !strings.Contains(denied, up.Name+"/team/vuln") {
		t.Error("the denied filter does not filter")
	}
	img := page("/ui/images/" + vd.String())
	for _, want := range []string{"CVE-2023-5363", "https://avd.aquasec.com/nvd/cve-2023-5363", "libcrypto3", "Rule <code>vulnerabilities</code>", "Policy <strong>default</strong>", "?format=sarif"} {
		if !strings.Contains(img, want) {
			t.Errorf("image page lacks %q", want)
		}
	}
	if strings.Index(img, "CVE-2023-5363") > strings.Index(img, "CVE-2024-0727") {
		t.Error("findings are not worst first")
	}
	if db := page("/ui/db"); !strings.Contains(db, "Vulnerability DB") {
		t.Error("db page")
	}
	resp, css := get(t, http.MethodGet, p.URL+"/ui/static/style.css", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(css), ".badge-denied") {
		t.Fatalf("stylesheet: %d", resp.StatusCode)
	}
	if strings.Contains(home, "http://") || strings.Contains(home, "<script") {
		t.Error("the dashboard must load nothing from elsewhere")
	}
}

func TestDashboardIsBehindAuth(t *testing.T) {
	_, p := authSetup(t, nil)
	if resp, _ := get(t, http.MethodGet, p.URL+"/ui/", nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous dashboard: %d", resp.StatusCode)
	}
	if resp, _ := get(t, http.MethodGet, p.URL+"/ui/", map[string]string{"Authorization": "Basic " + basic("alice", "alice-pw")}); resp.StatusCode != 200 {
		t.Fatalf("logged-in dashboard: %d", resp.StatusCode)
	}
}

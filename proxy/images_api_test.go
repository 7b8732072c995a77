package proxy_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/goldproxy/goldproxy/proxy/admin"
	"github.com/goldproxy/goldproxy/proxy/gate"
)

func TestImagesAPIPagination(t *testing.T) {
	sc := &fakeScanner{}
	up, p, vuln, _ := scanSetup(t, sc, nil)
	up.Push(t, "team/third:1", randomImage(t, 1))
	for _, ref := range []string{"team/clean:1", "team/third:1"} {
		if err := pullAll(up.Name+"/"+ref, p); err != nil {
			t.Fatal(err)
		}
	}
	get(t, http.MethodGet, p.URL+"/v2/"+up.Name+"/team/vuln/manifests/1", nil)

	type listing struct {
		Images []admin.ImageSummary `json:"images"`
		Next   string               `json:"next"`
	}
	list := func(q string) (listing, *http.Response) {
		resp, body := get(t, http.MethodGet, p.URL+"/api/v1/images"+q, nil)
		var l listing
		if resp.StatusCode != 200 || json.Unmarshal(body, &l) != nil {
			t.Fatalf("%s: %d %s", q, resp.StatusCode, body)
		}
		return l, resp
	}
	first, resp := list("?limit=2")
	if len(first.Images) != 2 || first.Next == "" || resp.Header.Get("Link") == "" {
		t.Fatalf("first page: %+v", first)
	}
	second, _ := list("?limit=2&cursor=" + first.Next)
	if len(second.Images) != 1 || second.Next != "" {
		t.Fatalf("second page: %+v", second)
	}
	seen := map[string]bool{}
	for _, im := range append(first.Images, second.Images...) {
		seen[im.Repository] = true
		if im.Verdict == "none" || im.Tags[0] != "1" {
			t.Errorf("summary %+v", im)
		}
		if im.Repository != up.Name+"/team/vuln" && im.LastPulled.IsZero() {
			t.Errorf("%s was pulled but has no last-pulled time (buffered pulls must show)", im.Repository)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("pages overlap or miss images: %v", seen)
	}
	denied, _ := list("?denied=true")
	vd, _ := vuln.Digest()
	if len(denied.Images) != 1 || denied.Images[0].Digest != vd.String() || denied.Images[0].Rule != "vulnerabilities" || denied.Images[0].Counts["HIGH"] != 1 {
		t.Fatalf("denied filter: %+v", denied)
	}
	if l, _ := list("?severity=critical"); len(l.Images) != 1 {
		t.Fatalf("severity filter: %+v", l)
	}
	resp, body := get(t, http.MethodGet, p.URL+"/api/v1/images/"+vd.String(), nil)
	var det admin.ImageDetail
	if resp.StatusCode != 200 || json.Unmarshal(body, &det) != nil || det.Verdict == nil || len(det.Layers) != 2 || len(det.Repositories) != 1 {
		t.Fatalf("image detail: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, http.MethodGet, p.URL+"/api/v1/verdicts?state=denied&limit=1", nil)
	var vl struct {
		Verdicts []gate.Judgement `json:"verdicts"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &vl) != nil || len(vl.Verdicts) != 1 || vl.Verdicts[0].State != "denied" {
		t.Fatalf("verdicts: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, http.MethodGet, p.URL+"/api/v1/images?limit=0", nil); resp.StatusCode != 400 {
		t.Fatalf("limit=0: %d", resp.StatusCode)
	}
}

func TestAPIIsBehindAuth(t *testing.T) {
	_, p := authSetup(t, nil)
	if resp, _ := get(t, http.MethodGet, p.URL+"/api/v1/images", nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous API read: %d", resp.StatusCode)
	}
	if resp, _ := get(t, http.MethodGet, p.URL+"/api/v1/images", map[string]string{"Authorization": "Basic " + basic("bob", "bob-pw")}); resp.StatusCode != 200 {
		t.Fatalf("authenticated API read: %d", resp.StatusCode)
	}
	if resp, _ := get(t, http.MethodGet, p.URL+"/healthz", nil); resp.StatusCode != 200 {
		t.Fatalf("healthz needs no login: %d", resp.StatusCode)
	}
}

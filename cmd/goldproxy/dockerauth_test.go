package main

import (
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/proxy/proxytest"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
)

// requireBasicAuth makes up answer 401 with a Basic challenge, as a private registry
// does, unless a request carries user:pass.
func requireBasicAuth(up *proxytest.Upstream, user, pass string) {
	up.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
		return true
	})
}

// dockerConfig writes a docker config directory whose auths hold user:pass for host,
// as docker login leaves it.
func dockerConfig(t *testing.T, host, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	write(t, dir, "config.json", `{"auths": {"`+host+`": {"auth": "`+auth+`"}}}`)
	return dir
}

// TestDockerConfigCredentials pulls from an upstream that requires Basic auth: scan,
// baseline and warm fail without credentials and succeed with the ones docker login
// stored in $DOCKER_CONFIG/config.json.
func TestDockerConfigCredentials(t *testing.T) {
	up := proxytest.NewUpstream(t)
	up.Push(t, "myteam/api:v1", scannertest.AlpineImage(t, false))
	requireBasicAuth(up, "ci", "s3cret")
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	scannertest.BuildDB(t, db, time.Now())
	loggedIn := dockerConfig(t, up.Host, "ci", "s3cret")
	wrong := dockerConfig(t, up.Host, "ci", "wrong")
	empty := t.TempDir()

	list := write(t, dir, "images-private.txt", up.Host+"/myteam/api:v1\n")
	proxyList := write(t, dir, "images-private-proxy.txt", up.Name+"/myteam/api:v1\n")
	conf := write(t, dir, "goldproxy.yaml", "data_dir: "+filepath.Join(dir, "data")+"\ndb:\n  dir: "+db+
		"\nupstreams:\n  - name: "+up.Name+"\n    url: "+up.URL+"\n    auth: {keychain: true}\nallow:\n  repositories: [\"**\"]\n")
	commands := []struct {
		name string
		args func() []string
		ok   string // in the output on success
		fail string // in the output without valid credentials
	}{
		{"scan", func() []string {
			return []string{"scan", "--image", up.Host + "/myteam/api:v1", "--db-dir", db, "--output-dir", t.TempDir()}
		}, "ALLOWED", "UNAUTHORIZED: authentication required"},
		{"baseline", func() []string {
			return []string{"baseline", "--images", list, "--db-dir", db, "--output-dir", t.TempDir()}
		}, "1 images (0 failed)", "UNAUTHORIZED: authentication required"},
		{"warm", func() []string { return []string{"warm", "--config", conf, "--list", proxyList} }, "allowed", "credentials this proxy uses for"},
	}
	for _, c := range commands {
		for _, tc := range []struct {
			name, dockerConfig string
			code               int
		}{{"no credentials", empty, -1}, {"wrong password", wrong, -1}, {"docker login", loggedIn, 0}} {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				t.Setenv("DOCKER_CONFIG", tc.dockerConfig)
				out, code := runCLI(t, c.args()...)
				if tc.code == 0 {
					if code != 0 || !strings.Contains(out, c.ok) {
						t.Fatalf("with the docker config's credentials: exit %d\n%s", code, out)
					}
					return
				}
				if code == 0 || !strings.Contains(out, c.fail) {
					t.Fatalf("without valid credentials: exit %d, output lacks %q:\n%s", code, c.fail, out)
				}
			})
		}
	}
}

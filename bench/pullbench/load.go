package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// throttle serves a reverse proxy to target whose response bodies flow at most rate
// bytes per second each: a slow upstream link.
func throttle(args []string) error {
	fs := flag.NewFlagSet("throttle", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:5199", "address to listen on")
	target := fs.String("target", "", "upstream base URL")
	rate := fs.Int64("rate", 20_000_000, "bytes per second per response")
	_ = fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--target: %q is no URL", *target)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		resp.Body = &slowBody{rc: resp.Body, rate: *rate, start: time.Now()}
		return nil
	}
	return http.ListenAndServe(*listen, rp)
}

type slowBody struct {
	rc    io.ReadCloser
	rate  int64
	n     int64
	start time.Time
}

func (b *slowBody) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if due := time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second)); due > time.Since(b.start) {
		time.Sleep(due - time.Since(b.start))
	}
	return n, err
}

func (b *slowBody) Close() error { return b.rc.Close() }

type loadResult struct {
	Clients  int     `json:"clients"`
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	ReqPerS  float64 `json:"req_per_s"`
}

// load runs clients that pull an image (manifest, then every blob) through a mirror over
// and over for a while, or until the file --until names exists, and reports errors and
// latencies per request.
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	mirror := fs.String("mirror", "", "mirror base URL")
	ns := fs.String("ns", "", "upstream host sent as ?ns=")
	repo := fs.String("repo", "bench/small", "repository")
	tag := fs.String("tag", "1", "tag")
	clients := fs.Int("clients", 50, "concurrent clients")
	duration := fs.Duration("duration", 60*time.Second, "how long at most")
	until := fs.String("until", "", "stop once this file exists")
	_ = fs.Parse(args)
	q := ""
	if *ns != "" {
		q = "?ns=" + *ns
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *clients}
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	accept := string(types.DockerManifestSchema2) + "," + string(types.OCIManifestSchema1)
	get := func(path string, v any) error {
		req, _ := http.NewRequest(http.MethodGet, *mirror+"/v2/"+*repo+path+q, nil)
		req.Header.Set("Accept", accept)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		if v != nil {
			return json.NewDecoder(resp.Body).Decode(v)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var firstErr error
	stop := time.Now().Add(*duration)
	done := func() bool {
		if time.Now().After(stop) {
			return true
		}
		if *until != "" {
			if _, err := os.Stat(*until); err == nil {
				return true
			}
		}
		return false
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() {
				var m struct {
					Config struct{ Digest string }
					Layers []struct{ Digest string }
				}
				paths := []string{"/manifests/" + *tag}
				t := time.Now()
				err := get(paths[0], &m)
				record := func(t time.Time, err error) {
					mu.Lock()
					defer mu.Unlock()
					lat = append(lat, time.Since(t))
					if err != nil {
						errs++
						if firstErr == nil {
							firstErr = err
						}
					}
				}
				record(t, err)
				if err != nil {
					continue
				}
				for _, d := range append([]string{m.Config.Digest}, func() []string {
					var ds []string
					for _, l := range m.Layers {
						ds = append(ds, l.Digest)
					}
					return ds
				}()...) {
					t := time.Now()
					record(t, get("/blobs/"+d, nil))
				}
			}
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return fmt.Errorf("no request made")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	el := time.Since(start).Seconds()
	res := loadResult{Clients: *clients, Seconds: el, Requests: len(lat), Errors: errs,
		P50ms: float64(lat[len(lat)/2].Microseconds()) / 1000, P99ms: float64(lat[len(lat)*99/100].Microseconds()) / 1000,
		ReqPerS: float64(len(lat)) / el}
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "pullbench load: first error:", firstErr)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

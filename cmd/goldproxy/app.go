package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/storage"
)

// app is a wired goldproxy: store, scanner and DB, and the registry server.
type app struct {
	dbMu    sync.Mutex // one refresh at a time
	reg     *prometheus.Registry
	cfg     *config.Config
	log     *slog.Logger
	store   *storage.Store
	db      *scanner.DB
	scanner *scanner.Scanner
	srv     *proxy.Server
}

// newApp opens the store and the scanner and builds the server. The vulnerability DB is
// loaded by loadDB; until then every new image is denied and /readyz says why.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger) (*app, error) {
	store, err := storage.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	db := scanner.NewDB()
	sc, err := scanner.New(filepath.Join(cfg.DataDir, "trivy-cache"), db)
	if err != nil {
		store.Close()
		return nil, err
	}
	pol, err := cli.LoadPolicy(cfg)
	if err != nil {
		sc.Close()
		store.Close()
		return nil, err
	}
	a := &app{cfg: cfg, log: log, store: store, db: db, scanner: sc, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := proxy.New(cfg, store, proxy.WithLogger(log), proxy.WithScanner(trivyGate{sc}, pol), proxy.WithDBUpdater(a.updateDB), proxy.WithRegistry(a.reg))
	if err != nil {
		sc.Close()
		store.Close()
		return nil, err
	}
	a.srv = srv
	return a, nil
}

func (a *app) Close() {
	a.srv.Close()
	a.scanner.Close()
	a.db.Close()
	a.store.Close()
}

// dbRoot is where fetched DBs live: one directory per download; "current" names the
// one in use and the digest it was downloaded as.
func (a *app) dbRoot() string { return filepath.Join(a.cfg.DataDir, "trivy-db") }

func (a *app) readCurrent() (dir, digest string) { return cli.ReadPointer(a.dbRoot(), "current") }

// loadDB loads the vulnerability DB at start: the configured local directory
// (air-gapped), else the last downloaded one, else a fresh download.
func (a *app) loadDB(ctx context.Context) error {
	if a.cfg.DB.Dir != "" {
		_, err := a.refreshDB(ctx)
		a.loadJavaDB(ctx)
		return err
	}
	if dir, _ := a.readCurrent(); dir != "" {
		if info, err := a.db.Load(dir, a.cfg.DB.Repository); err == nil {
			a.log.Info("vulnerability DB loaded", "dir", dir, "updated_at", info.UpdatedAt)
			a.loadJavaDB(ctx)
			return nil
		}
	}
	_, err := a.refreshDB(ctx)
	a.loadJavaDB(ctx)
	return err
}

// loadJavaDB loads the Java DB (db.java_dir, the last download, or a fresh one). Without
// it JAR files are not analysed; that is logged, not fatal.
func (a *app) loadJavaDB(ctx context.Context) {
	if err := a.refreshJavaDB(ctx, false); err != nil {
		a.log.Warn("no Java DB: JAR files in images are not analysed", "err", err)
	}
}

// refreshJavaDB loads the Java DB; with check, it also looks for a newer one upstream.
func (a *app) refreshJavaDB(ctx context.Context, check bool) error {
	if a.cfg.DB.JavaDir != "" {
		return a.db.LoadJava(a.cfg.Resolve(a.cfg.DB.JavaDir))
	}
	curDir, curDigest := cli.ReadPointer(a.dbRoot(), "java-current")
	if curDir != "" && !check {
		if err := a.db.LoadJava(curDir); err == nil {
			return nil
		}
	}
	ref, err := name.ParseReference(a.cfg.DB.JavaRepository)
	if err != nil {
		return fmt.Errorf("db.java_repository: %w", err)
	}
	at, opts, err := a.srv.UpstreamRef(ref)
	if err != nil {
		return err
	}
	desc, err := remote.Head(at, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return fmt.Errorf("check %s: %w", ref, err)
	}
	if curDigest == desc.Digest.String() {
		return a.db.LoadJava(curDir)
	}
	dir, err := scanner.FetchJava(ctx, at.Context().Digest(desc.Digest.String()), a.dbRoot(), opts...)
	if err != nil {
		return err
	}
	if err := a.db.LoadJava(dir); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := cli.WritePointer(a.dbRoot(), "java-current", dir, desc.Digest.String()); err != nil {
		return err
	}
	if curDir != "" && curDir != dir {
		os.RemoveAll(curDir)
	}
	a.log.Info("Java DB downloaded", "repository", ref.String(), "digest", desc.Digest)
	return nil
}

// refreshDB checks the DB source and swaps in a newer DB if there is one (validated
// first: a broken download never replaces a good DB). It reports whether it swapped.
func (a *app) refreshDB(ctx context.Context) (bool, error) {
	a.dbMu.Lock()
	defer a.dbMu.Unlock()
	cur, curErr := a.db.Info()
	if a.cfg.DB.Dir != "" {
		// Air-gapped: the site updates db.dir; a newer metadata.json means a new DB. It is
		// copied into a directory of our own first, so the site may rewrite its files at any
		// time without touching the DB scans are using.
		src := a.cfg.Resolve(a.cfg.DB.Dir)
		next, err := scanner.ValidateDir(src)
		if err != nil {
			return false, err
		}
		if curErr == nil && !next.UpdatedAt.After(cur.UpdatedAt) {
			return false, nil
		}
		dir, err := copyDB(src, a.dbRoot())
		if err != nil {
			return false, err
		}
		info, err := a.db.Load(dir, "dir:"+src)
		if err != nil {
			os.RemoveAll(dir)
			return false, err
		}
		olds, _ := filepath.Glob(filepath.Join(a.dbRoot(), "local-*"))
		for _, o := range olds {
			if o != dir {
				os.RemoveAll(o)
			}
		}
		a.log.Info("vulnerability DB swapped", "from", src, "dir", dir, "updated_at", info.UpdatedAt)
		return true, nil
	}
	ref, err := name.ParseReference(a.cfg.DB.Repository)
	if err != nil {
		return false, fmt.Errorf("db.repository: %w", err)
	}
	at, opts, err := a.srv.UpstreamRef(ref)
	if err != nil {
		return false, err
	}
	desc, err := remote.Head(at, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", ref, err)
	}
	_, curDigest := a.readCurrent()
	if curErr == nil && curDigest == desc.Digest.String() {
		return false, nil
	}
	dir, err := scanner.Fetch(ctx, at.Context().Digest(desc.Digest.String()), a.dbRoot(), opts...)
	if err != nil {
		return false, err
	}
	info, err := a.db.Load(dir, ref.String())
	if err != nil {
		os.RemoveAll(dir)
		return false, err
	}
	if err := cli.WritePointer(a.dbRoot(), "current", dir, desc.Digest.String()); err != nil {
		return false, err
	}
	// The previous DBs are no longer open: only now are they removed.
	olds, _ := filepath.Glob(filepath.Join(a.dbRoot(), "db-*"))
	for _, o := range olds {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	a.log.Info("vulnerability DB downloaded and swapped", "repository", ref.String(), "digest", desc.Digest, "updated_at", info.UpdatedAt)
	return true, nil
}

// copyDB copies a DB directory (trivy.db, metadata.json) into a new directory under
// parent and validates the copy.
func copyDB(src, parent string) (string, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, "local-")
	if err != nil {
		return "", err
	}
	for _, f := range []string{"trivy.db", "metadata.json"} {
		if err := copyFile(filepath.Join(src, f), filepath.Join(dir, f)); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
	}
	if _, err := scanner.ValidateDir(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// updateDB refreshes the DB and brings every stored digest's facts to the loaded DB:
// after a swap, and also after a re-evaluation an earlier refresh or start did not
// finish (facts still name an older DB).
func (a *app) updateDB(ctx context.Context) (any, error) {
	swapped, err := a.refreshDB(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"swapped": swapped}
	if err := a.refreshJavaDB(ctx, true); err != nil {
		a.log.Warn("Java DB refresh failed; JAR analysis keeps the loaded one (if any)", "err", err)
	}
	st, err := a.srv.Reevaluate(ctx)
	if err != nil {
		return nil, err
	}
	out["reevaluation"] = st
	if info, err := a.db.Info(); err == nil {
		out["db"] = dbStatus(info)
	}
	return out, nil
}

// prefetchRefs reads the configured prefetch lists.
func (a *app) prefetchRefs() ([]string, error) {
	var refs []string
	for _, l := range a.cfg.Prefetch.Lists {
		f, err := os.Open(a.cfg.Resolve(l))
		if err != nil {
			return nil, err
		}
		rs, err := gate.ParseImageList(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		for _, r := range rs {
			refs = append(refs, r.Name())
		}
	}
	return refs, nil
}

// prefetchLoop warms the prefetch lists now and every prefetch.interval.
func (a *app) prefetchLoop(ctx context.Context) {
	if len(a.cfg.Prefetch.Lists) == 0 {
		return
	}
	t := time.NewTicker(a.cfg.Prefetch.Interval)
	defer t.Stop()
	for {
		refs, err := a.prefetchRefs()
		if err != nil {
			a.log.Error("prefetch lists", "err", err)
		} else {
			a.srv.WarmAll(ctx, refs)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshLoop checks for a newer DB every db.refresh.
func (a *app) refreshLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.DB.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := a.updateDB(ctx); err != nil {
				a.log.Error("vulnerability DB refresh failed; the loaded DB stays", "err", err)
			}
		}
	}
}

// metricsHandler serves /metrics (on the metrics listener).
func (a *app) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	return mux
}

// reloadPolicy validates the policy file again and, if it is good, swaps it in and
// re-evaluates every stored verdict. A bad file is rejected and the old policy stays.
func (a *app) reloadPolicy() error {
	pol, err := cli.LoadPolicy(a.cfg)
	if err != nil {
		a.log.Error("policy reload rejected: keeping the running policy", "err", err)
		return err
	}
	flipped, err := a.srv.SetPolicy(pol)
	if err != nil {
		return err
	}
	a.log.Info("policy reloaded", "file", a.cfg.Policy, "hash", pol.Hash(), "verdicts_flipped", flipped)
	return nil
}

// watchPolicy reloads the policy on SIGHUP and when the file's content changes.
func (a *app) watchPolicy(ctx context.Context, hup <-chan os.Signal, every time.Duration) {
	if a.cfg.Policy == "" {
		return
	}
	path := a.cfg.Resolve(a.cfg.Policy)
	last := fileStamp(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			last = fileStamp(path)
			_ = a.reloadPolicy()
		case <-t.C:
			if st := fileStamp(path); st != last {
				last = st
				_ = a.reloadPolicy()
			}
		}
	}
}

// fileStamp changes when a file is rewritten or replaced (editors, ConfigMap symlink swaps).
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fi.ModTime().String()
	}
	return fmt.Sprintf("%d-%x", fi.Size(), sha256.Sum256(b))
}

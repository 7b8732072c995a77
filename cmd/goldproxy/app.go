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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/proxy/config"
	"github.com/goldproxy/goldproxy/proxy/gate"
	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/fromconfig"
)

// app is a wired goldproxy: store, scanner and DB, and the registry server.
type app struct {
	reg     *prometheus.Registry
	cfg     *config.Config
	log     *slog.Logger
	store   *storage.Store
	db      *scanner.DB
	scanner *scanner.Scanner
	srv     *proxy.Server
	dbs     *scanner.Updater
}

// newApp opens the store and the scanner and builds the server. The vulnerability DB is
// loaded by a.dbs.Load; until then every new image is denied and /readyz says why.
func newApp(ctx context.Context, cfg *config.Config, log *slog.Logger) (*app, error) {
	store, err := fromconfig.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	db := scanner.NewDB()
	var scanOpts []scanner.Option
	if v, ok := store.Metadata().(scanner.Values); ok {
		// Replicas share the layer analyses: re-evaluation on any of them reads no layer.
		scanOpts = append(scanOpts, scanner.WithSharedLayerCache(v))
	}
	sc, err := scanner.New(filepath.Join(cfg.DataDir, "trivy-cache"), db, scanOpts...)
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
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), cli.BuildInfoCollector())
	srv, err := proxy.New(cfg, store, proxy.WithLogger(log), proxy.WithScanner(trivyGate{sc}, pol), proxy.WithDBUpdater(a.updateDB), proxy.WithRegistry(a.reg),
		proxy.WithVersion(cli.VersionHandler(db)), proxy.WithBackup(backupOf(store)))
	if err != nil {
		sc.Close()
		store.Close()
		return nil, err
	}
	a.srv = srv
	src := scanner.Source{Root: filepath.Join(cfg.DataDir, "trivy-db"), Repository: cfg.DB.Repository, JavaRepository: cfg.DB.JavaRepository,
		Upstream: srv.UpstreamRef, Log: log}
	if cfg.DB.Dir != "" {
		src.Dir = cfg.Resolve(cfg.DB.Dir)
	}
	if cfg.DB.JavaDir != "" {
		src.JavaDir = cfg.Resolve(cfg.DB.JavaDir)
	}
	a.dbs = scanner.NewUpdater(db, src)
	return a, nil
}

// backupOf writes a copy of the store's bbolt metadata; a store on PostgreSQL is backed
// up with PostgreSQL's own tools, and the endpoint says so.
func backupOf(store *storage.Store) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		db, err := store.DB()
		if err != nil {
			return 0, httpx.Unsupported("backup: %v", err)
		}
		return cli.WriteBackup(w, db)
	}
}

func (a *app) Close() {
	a.srv.Close()
	a.scanner.Close()
	a.db.Close()
	a.store.Close()
}

// updateDB refreshes the DB and brings every stored digest's facts to the loaded DB:
// after a swap, and also after a re-evaluation an earlier refresh or start did not
// finish (facts still name an older DB).
func (a *app) updateDB(ctx context.Context) (any, error) {
	swapped, err := a.dbs.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"swapped": swapped}
	if err := a.dbs.RefreshJava(ctx, true); err != nil {
		a.log.Warn("Java DB refresh failed; JAR analysis keeps the loaded one (if any)", "err", err)
	}
	if !a.srv.Leading() {
		// The shared facts are the leading replica's to re-evaluate.
		out["reevaluation"] = "left to the leading replica"
		return out, nil
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

package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/goldproxy/goldproxy/policy"
	"github.com/goldproxy/goldproxy/proxy"
	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/storage"
)

// app is a wired goldproxy: store, scanner and DB, and the registry server.
type app struct {
	cfg     *proxy.Config
	log     *slog.Logger
	store   *storage.Store
	db      *scanner.DB
	scanner *scanner.Scanner
	srv     *proxy.Server
}

// newApp opens the store and the scanner and builds the server. The vulnerability DB is
// loaded by loadDB; until then every new image is denied and /readyz says why.
func newApp(ctx context.Context, cfg *proxy.Config, log *slog.Logger) (*app, error) {
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
	pol, err := loadPolicy(cfg)
	if err != nil {
		sc.Close()
		store.Close()
		return nil, err
	}
	srv, err := proxy.New(cfg, store, proxy.WithLogger(log), proxy.WithScanner(trivyGate{sc}, pol))
	if err != nil {
		sc.Close()
		store.Close()
		return nil, err
	}
	return &app{cfg: cfg, log: log, store: store, db: db, scanner: sc, srv: srv}, nil
}

func (a *app) Close() {
	a.srv.Close()
	a.scanner.Close()
	a.db.Close()
	a.store.Close()
}

// dbRoot is where fetched DBs live: one directory per download, "current" names the one
// in use.
func (a *app) dbRoot() string { return filepath.Join(a.cfg.DataDir, "trivy-db") }

// loadDB loads the vulnerability DB: the configured local directory (air-gapped), else
// the last downloaded one, else a fresh download from db.repository through the
// matching upstream.
func (a *app) loadDB(ctx context.Context) error {
	if a.cfg.DB.Dir != "" {
		dir := a.cfg.Resolve(a.cfg.DB.Dir)
		info, err := a.db.Load(dir, "dir:"+dir)
		if err == nil {
			a.log.Info("vulnerability DB loaded", "dir", dir, "updated_at", info.UpdatedAt)
		}
		return err
	}
	if cur, err := os.ReadFile(filepath.Join(a.dbRoot(), "current")); err == nil {
		dir := filepath.Join(a.dbRoot(), strings.TrimSpace(string(cur)))
		if info, err := a.db.Load(dir, a.cfg.DB.Repository); err == nil {
			a.log.Info("vulnerability DB loaded", "dir", dir, "updated_at", info.UpdatedAt)
			return nil
		}
	}
	return a.fetchDB(ctx)
}

// fetchDB downloads the DB from db.repository, validates it and swaps it in.
func (a *app) fetchDB(ctx context.Context) error {
	ref, err := name.ParseReference(a.cfg.DB.Repository)
	if err != nil {
		return fmt.Errorf("db.repository: %w", err)
	}
	at, opts, err := a.srv.UpstreamRef(ref)
	if err != nil {
		return err
	}
	dir, err := scanner.Fetch(ctx, at, a.dbRoot(), opts...)
	if err != nil {
		return err
	}
	info, err := a.db.Load(dir, ref.String())
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := os.WriteFile(filepath.Join(a.dbRoot(), "current"), []byte(filepath.Base(dir)+"\n"), 0o644); err != nil {
		return err
	}
	a.log.Info("vulnerability DB downloaded", "repository", ref.String(), "dir", dir, "updated_at", info.UpdatedAt)
	return nil
}

var errDenied = errors.New("denied by policy")

// loadPolicy reads the configured policy file, or returns the built-in default.
func loadPolicy(cfg *proxy.Config) (*policy.Set, error) {
	if cfg.Policy == "" {
		return policy.DefaultSet(), nil
	}
	return policy.Load(cfg.Resolve(cfg.Policy))
}

// reloadPolicy validates the policy file again and, if it is good, swaps it in and
// re-evaluates every stored verdict. A bad file is rejected and the old policy stays.
func (a *app) reloadPolicy() error {
	pol, err := loadPolicy(a.cfg)
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

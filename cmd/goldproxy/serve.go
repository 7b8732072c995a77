package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldproxy/goldproxy/cmd/goldproxy/cli"
	"github.com/goldproxy/goldproxy/proxy/config"
)

func newServeCmd() *cobra.Command {
	var configPath, listen, dataDir string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the registry mirror",
		Long: `Run the registry mirror. Without --config it runs on the embedded default
(configs/goldproxy.yaml): listen on :5000, data under ./data, the public upstreams and
an allowlist of hardened images. --listen and --data-dir override the config's keys.

Example:
  goldproxy serve
  goldproxy serve --config /etc/goldproxy/goldproxy.yaml --listen 127.0.0.1:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cli.LoadConfig(configPath)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Listen = listen
			}
			if dataDir != "" {
				cfg.DataDir = dataDir
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file (default: the embedded configs/goldproxy.yaml)")
	cmd.Flags().StringVar(&listen, "listen", "", "address to listen on (config: listen)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (config: data_dir)")
	return cmd
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func serve(ctx context.Context, cfg *config.Config) error {
	if ctx == nil {
		ctx = context.Background()
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	dbLoaded := make(chan struct{})
	// Facts and judgements are shared by the replicas on one store: the leading one
	// brings them to the policy and the DB, and prefetches (a lone replica always leads).
	a.srv.Lead(func(ctx context.Context) {
		if _, err := a.srv.Rejudge(); err != nil {
			log.Error("judging recorded verdicts under the current policy", "err", err)
		}
		select {
		case <-dbLoaded:
		case <-ctx.Done():
			return
		}
		// Facts made with another DB (a swap the last run did not finish re-evaluating)
		// are brought up to this one; judgements made under another policy follow.
		if _, err := a.srv.Reevaluate(ctx); err != nil {
			log.Error("re-evaluation did not finish; the next refresh resumes it", "err", err)
		}
		a.prefetchLoop(ctx) // warm after the DB, so the warm-up is judged
	})
	go func() {
		// Without a DB every new image is denied: retry soon rather than at the next refresh.
		// Every replica loads one: each scans.
		for wait := 30 * time.Second; ; wait = min(2*wait, cfg.DB.Refresh) {
			err := a.dbs.Load(ctx)
			if err == nil {
				close(dbLoaded)
				return
			}
			log.Error("no vulnerability DB: every new image is denied until one loads", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
	srv := a.srv
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go a.watchPolicy(ctx, hup, 2*time.Second)
	go a.refreshLoop(ctx)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	tlsCfg, err := cfg.ServerTLS()
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsCfg}
	log.Info("goldproxy listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil, "auth", cfg.Auth.Htpasswd != "", "data_dir", cfg.DataDir, "blobs", cfg.Storage.Driver, "metadata", cfg.Storage.Metadata.Driver, "upstreams", len(cfg.Upstreams))
	if tlsCfg == nil {
		log.Warn("serving plain HTTP: docker needs this host in insecure-registries, containerd and podman need plain-http/insecure mirror entries")
	} else {
		ln = tls.NewListener(ln, tlsCfg)
	}
	if cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics listen: %w", err)
		}
		ms := &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(mln) }()
		defer ms.Close()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: letting in-flight pulls finish")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/goldproxy/goldproxy/storage/fromconfig"
)

// BackupPath is the running proxy's online backup endpoint: a consistent copy of the
// metadata DB (bbolt's Tx.WriteTo inside one read transaction, while pulls go on).
const BackupPath = "/api/v1/admin/backup"

// MetaDB is the bbolt metadata database's file name under data_dir.
const MetaDB = fromconfig.MetaDB

// WriteBackup copies db to w in one read transaction: a consistent snapshot taken while
// writers go on (bbolt readers never block the writer). It returns the bytes written.
func WriteBackup(w io.Writer, db *bolt.DB) (n int64, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// NewBackupCmd is `backup`: a copy of the metadata DB (verdicts, tags, links, robots)
// from a running proxy, or from a stopped one's data dir.
func NewBackupCmd() *cobra.Command {
	var configPath, proxyURL, output string
	cmd := &cobra.Command{
		Use:   "backup --output FILE [--proxy URL | --config FILE]",
		Short: "Write a consistent copy of goldproxy's metadata DB (online with --proxy)",
		Long: `Write a consistent copy of <data_dir>/meta.db, the bbolt database holding tags, links,
verdicts, scan facts and robot accounts. With --proxy the running goldproxy streams it
from one read transaction (GET ` + BackupPath + `, an admin endpoint: set
GOLDPROXY_USERNAME and GOLDPROXY_PASSWORD when auth is on) while it keeps serving;
without, the config's data dir is opened read-only, which works only while no goldproxy
holds it.

The blobs under <data_dir>/registry are content-addressed files that are never changed
once written: copy them with rsync or a volume snapshot after the metadata backup.
Restore: stop goldproxy, put the backup at <data_dir>/meta.db and the blobs back under
<data_dir>/registry, start it (docs/operating.md).

Example:
  goldproxy backup --proxy http://localhost:5000 --output /backup/meta-$(date +%F).db
  goldproxy backup --config /etc/goldproxy/goldproxy.yaml --output /backup/meta.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return &ExitError{Code: 2, Err: errors.New("--output is required")}
			}
			var n int64
			var err error
			if proxyURL != "" {
				n, err = backupFromProxy(cmd.Context(), proxyURL, output)
			} else {
				cfg, cerr := LoadConfig(configPath)
				if cerr != nil {
					return &ExitError{Code: 2, Err: cerr}
				}
				if cfg.Storage.Metadata.Driver != "bolt" {
					return &ExitError{Code: 2, Err: fmt.Errorf("the metadata is in PostgreSQL (storage.metadata.driver: %s): back it up with pg_dump", cfg.Storage.Metadata.Driver)}
				}
				n, err = BackupFile(filepath.Join(cfg.DataDir, MetaDB), output)
			}
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", output, n)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "config file whose data_dir holds meta.db (proxy stopped)")
	cmd.Flags().StringVar(&proxyURL, "proxy", "", "take the backup from this running goldproxy (e.g. http://localhost:5000)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write the backup to")
	return cmd
}

// BackupFile copies the bbolt DB at src to dst, opening it read-only. bbolt locks the
// file: while a goldproxy holds it this fails quickly and says to use --proxy.
func BackupFile(src, dst string) (int64, error) {
	if _, err := os.Stat(src); err != nil {
		return 0, err
	}
	db, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, fmt.Errorf("%s is in use by a running goldproxy: take the backup with --proxy", src)
	}
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return writeAtomically(dst, func(w io.Writer) (int64, error) { return WriteBackup(w, db) })
}

func backupFromProxy(ctx context.Context, base, dst string) (int64, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+BackupPath, nil)
	if err != nil {
		return 0, err
	}
	if u := os.Getenv("GOLDPROXY_USERNAME"); u != "" {
		req.SetBasicAuth(u, os.Getenv("GOLDPROXY_PASSWORD"))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("GET %s: %s: %s", BackupPath, resp.Status, strings.TrimSpace(string(b)))
	}
	n, err := writeAtomically(dst, func(w io.Writer) (int64, error) { return io.Copy(w, resp.Body) })
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("backup cut short: %d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}

// writeAtomically writes dst through a temp file renamed into place, so that a failed
// backup never leaves a truncated file that looks like one.
func writeAtomically(dst string, fn func(io.Writer) (int64, error)) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".backup-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := fn(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	return n, err
}

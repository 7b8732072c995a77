package scanner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Source says where the vulnerability DB and the Java DB come from: an air-gapped
// directory, or an OCI repository fetched through a configured upstream.
type Source struct {
	// Root holds the downloaded DBs, one directory each, and the pointer files naming the
	// ones in use (<data_dir>/trivy-db).
	Root string
	// Dir is an air-gapped DB directory (db.dir, resolved); empty: Repository.
	Dir        string
	Repository string
	// JavaDir is an air-gapped Java DB directory (holding java-db/); empty: JavaRepository.
	JavaDir        string
	JavaRepository string
	// Upstream maps a reference to where its upstream really is, with its transport and
	// credentials.
	Upstream func(name.Reference) (name.Reference, []remote.Option, error)
	Log      *slog.Logger
}

// Updater loads, checks and swaps the DBs of a Source into a DB: a newer DB is
// fetched (or copied) into a directory of its own, validated, and only then swapped in;
// a broken one never replaces a good one.
type Updater struct {
	db  *DB
	src Source
	mu  sync.Mutex // one refresh at a time
}

// NewUpdater returns an updater of db from src.
func NewUpdater(db *DB, src Source) *Updater { return &Updater{db: db, src: src} }

// Load loads the DBs at start: the air-gapped directory, else the last downloaded one,
// else a fresh download. Without a Java DB JAR files are not analysed; that is logged,
// not an error.
func (u *Updater) Load(ctx context.Context) error {
	defer u.loadJava(ctx)
	if u.src.Dir == "" {
		if dir, _ := ReadPointer(u.src.Root, "current"); dir != "" {
			if info, err := u.db.Load(dir, u.src.Repository); err == nil {
				u.src.Log.Info("vulnerability DB loaded", "dir", dir, "updated_at", info.UpdatedAt)
				return nil
			}
		}
	}
	_, err := u.Refresh(ctx)
	return err
}

func (u *Updater) loadJava(ctx context.Context) {
	if err := u.RefreshJava(ctx, false); err != nil {
		u.src.Log.Warn("no Java DB: JAR files in images are not analysed", "err", err)
	}
}

// RefreshJava loads the Java DB; with check, it also looks for a newer one upstream.
func (u *Updater) RefreshJava(ctx context.Context, check bool) error {
	if u.src.JavaDir != "" {
		return u.db.LoadJava(u.src.JavaDir)
	}
	curDir, curDigest := ReadPointer(u.src.Root, "java-current")
	if curDir != "" && !check {
		if err := u.db.LoadJava(curDir); err == nil {
			return nil
		}
	}
	at, opts, desc, err := u.head(ctx, u.src.JavaRepository, "db.java_repository")
	if err != nil {
		return err
	}
	if curDigest == desc {
		return u.db.LoadJava(curDir)
	}
	dir, err := FetchJava(ctx, at.Context().Digest(desc), u.src.Root, opts...)
	if err != nil {
		return err
	}
	if err := u.db.LoadJava(dir); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := WritePointer(u.src.Root, "java-current", dir, desc); err != nil {
		return err
	}
	if curDir != "" && curDir != dir {
		os.RemoveAll(curDir)
	}
	u.src.Log.Info("Java DB downloaded", "repository", u.src.JavaRepository, "digest", desc)
	return nil
}

// head resolves a DB repository to its upstream and current digest.
func (u *Updater) head(ctx context.Context, repository, key string) (name.Reference, []remote.Option, string, error) {
	ref, err := name.ParseReference(repository)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", key, err)
	}
	at, opts, err := u.src.Upstream(ref)
	if err != nil {
		return nil, nil, "", err
	}
	desc, err := remote.Head(at, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, nil, "", fmt.Errorf("check %s: %w", ref, err)
	}
	return at, opts, desc.Digest.String(), nil
}

// Refresh checks the DB source and swaps in a newer DB if there is one. It reports
// whether it swapped.
func (u *Updater) Refresh(ctx context.Context) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cur, curErr := u.db.Info()
	if u.src.Dir != "" {
		// Air-gapped: the site updates db.dir; a newer metadata.json means a new DB. It is
		// copied into a directory of our own first, so the site may rewrite its files at any
		// time without touching the DB scans are using.
		next, err := ValidateDir(u.src.Dir)
		if err != nil {
			return false, err
		}
		if curErr == nil && !next.UpdatedAt.After(cur.UpdatedAt) {
			return false, nil
		}
		dir, err := copyDB(u.src.Dir, u.src.Root)
		if err != nil {
			return false, err
		}
		info, err := u.db.Load(dir, "dir:"+u.src.Dir)
		if err != nil {
			os.RemoveAll(dir)
			return false, err
		}
		removeOthers(u.src.Root, "local-*", dir)
		u.src.Log.Info("vulnerability DB swapped", "from", u.src.Dir, "dir", dir, "updated_at", info.UpdatedAt)
		return true, nil
	}
	at, opts, desc, err := u.head(ctx, u.src.Repository, "db.repository")
	if err != nil {
		return false, err
	}
	if _, curDigest := ReadPointer(u.src.Root, "current"); curErr == nil && curDigest == desc {
		return false, nil
	}
	dir, err := Fetch(ctx, at.Context().Digest(desc), u.src.Root, opts...)
	if err != nil {
		return false, err
	}
	info, err := u.db.Load(dir, u.src.Repository)
	if err != nil {
		os.RemoveAll(dir)
		return false, err
	}
	if err := WritePointer(u.src.Root, "current", dir, desc); err != nil {
		return false, err
	}
	// The previous DBs are no longer open: only now are they removed.
	removeOthers(u.src.Root, "db-*", dir)
	u.src.Log.Info("vulnerability DB downloaded and swapped", "repository", u.src.Repository, "digest", desc, "updated_at", info.UpdatedAt)
	return true, nil
}

func removeOthers(root, pattern, keep string) {
	olds, _ := filepath.Glob(filepath.Join(root, pattern))
	for _, o := range olds {
		if o != keep {
			os.RemoveAll(o)
		}
	}
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
	if _, err := ValidateDir(dir); err != nil {
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

// ReadPointer reads a pointer file under root ("current", "java-current"): the directory
// in use and the digest it was downloaded as ("" when unknown).
func ReadPointer(root, name string) (dir, digest string) {
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		return "", ""
	}
	f := strings.Fields(string(b))
	if len(f) > 0 {
		dir = filepath.Join(root, f[0])
	}
	if len(f) > 1 && f[1] != "-" {
		digest = f[1]
	}
	return dir, digest
}

// WritePointer records dir (under root) as the one in use. The file is replaced
// atomically (written, synced, renamed): a crash leaves the old pointer or the new one,
// never a truncated one.
func WritePointer(root, name, dir, digest string) error {
	if digest == "" {
		digest = "-"
	}
	tmp, err := os.CreateTemp(root, "."+name+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(filepath.Base(dir) + " " + digest + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(root, name)); err != nil {
		return err
	}
	if d, err := os.Open(root); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

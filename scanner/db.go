package scanner

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	xos "github.com/aquasecurity/trivy/pkg/x/os"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	bolt "go.etcd.io/bbolt"
)

// dbLayerMediaType is the layer of the Trivy DB OCI artifact.
const dbLayerMediaType = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"

// ErrNoDB is returned by scans while no usable vulnerability DB is loaded.
var ErrNoDB = errors.New("no usable vulnerability DB is loaded")

// DBInfo describes a loaded vulnerability DB.
type DBInfo struct {
	Dir       string    `json:"dir"`
	Version   int       `json:"schemaVersion"`
	UpdatedAt time.Time `json:"updatedAt"`
	Source    string    `json:"source"`
	// Java reports whether a Java DB is loaded (JAR files are analysed).
	Java bool `json:"javaDB"`
}

// ID identifies the DB content a verdict was made with.
func (i DBInfo) ID() string {
	return fmt.Sprintf("v%d@%s", i.Version, i.UpdatedAt.UTC().Format(time.RFC3339))
}

// DB owns the process-wide Trivy DB (and Java DB): scans hold them shared, Load and
// LoadJava take them exclusively.
type DB struct {
	mu   sync.RWMutex // the vulnerability DB: held by detections, taken by a swap
	info *DBInfo
	err  error
	// javaMu guards the Java DB, which layer analysis (JAR identification) reads: a Java
	// DB swap waits for running analyses; a vulnerability DB swap does not.
	javaMu sync.RWMutex
	// java is the directory holding java-db/ while a Java DB is loaded; without one, JAR
	// files are not analysed (Trivy cannot identify them).
	java string
}

// NewDB returns a DB with nothing loaded: every scan fails with ErrNoDB until Load.
func NewDB() *DB { return &DB{err: ErrNoDB} }

// ValidateDir checks that dir holds a usable DB (schema version, metadata, opens) without
// touching the loaded one.
func ValidateDir(dir string) (DBInfo, error) {
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		return DBInfo{}, fmt.Errorf("vulnerability DB in %s: metadata: %w", dir, err)
	}
	if meta.Version != trivydb.SchemaVersion {
		return DBInfo{}, fmt.Errorf("vulnerability DB in %s: schema version %d, need %d", dir, meta.Version, trivydb.SchemaVersion)
	}
	path := trivydb.Path(dir)
	if _, err := os.Stat(path); err != nil {
		return DBInfo{}, fmt.Errorf("vulnerability DB: %w", err)
	}
	b, err := bolt.Open(path, 0o444, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return DBInfo{}, fmt.Errorf("vulnerability DB %s does not open: %w", path, err)
	}
	defer b.Close()
	if err := b.View(func(tx *bolt.Tx) error {
		n := 0
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { n++; return nil }); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("it has no buckets")
		}
		return nil
	}); err != nil {
		return DBInfo{}, fmt.Errorf("vulnerability DB %s is unreadable: %w", path, err)
	}
	return DBInfo{Dir: dir, Version: meta.Version, UpdatedAt: meta.UpdatedAt}, nil
}

// Load validates the DB in dir and swaps it in, waiting for running scans to finish
// first. A DB that does not validate is rejected and the loaded one stays.
func (d *DB) Load(dir, source string) (DBInfo, error) {
	info, err := ValidateDir(dir)
	if err != nil {
		d.mu.Lock()
		if d.info == nil {
			d.err = err
		}
		d.mu.Unlock()
		return DBInfo{}, err
	}
	info.Source = source
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.info != nil {
		if err := trivydb.Close(); err != nil {
			return DBInfo{}, err
		}
	}
	if err := trivydb.Init(dir, trivydb.WithBoltOptions(&bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})); err != nil {
		d.info, d.err = nil, fmt.Errorf("open vulnerability DB: %w", err)
		return DBInfo{}, d.err
	}
	d.info, d.err = &info, nil
	return info, nil
}

// Info describes the loaded DB, or says why none is.
func (d *DB) Info() (DBInfo, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.info == nil {
		return DBInfo{}, d.err
	}
	return *d.info, nil
}

// Ready reports why scans cannot run, or nil.
func (d *DB) Ready() error {
	_, err := d.Info()
	return err
}

// Close closes the loaded DB.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.info == nil {
		return nil
	}
	d.info, d.err = nil, ErrNoDB
	return trivydb.Close()
}

// JavaDBMediaType is the layer of the Trivy Java DB OCI artifact.
const JavaDBMediaType = "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip"

// ValidateJavaDir checks that dir holds a Java DB (dir/java-db/trivy-java.db and its
// metadata.json, schema version javadb expects).
func ValidateJavaDir(dir string) (time.Time, error) {
	meta, err := metadata.NewClient(filepath.Join(dir, "java-db")).Get()
	if err != nil {
		return time.Time{}, fmt.Errorf("java DB in %s: metadata: %w", dir, err)
	}
	if meta.Version != javadb.SchemaVersion {
		return time.Time{}, fmt.Errorf("java DB in %s: schema version %d, need %d", dir, meta.Version, javadb.SchemaVersion)
	}
	if fi, err := os.Stat(filepath.Join(dir, "java-db", "trivy-java.db")); err != nil || fi.Size() == 0 {
		return time.Time{}, fmt.Errorf("java DB in %s: trivy-java.db missing or empty", dir)
	}
	return meta.UpdatedAt, nil
}

// LoadJava validates the Java DB under dir and swaps it in; JAR files are analysed from
// then on. A DB that does not validate is rejected and the loaded one stays.
func (d *DB) LoadJava(dir string) error {
	if _, err := ValidateJavaDir(dir); err != nil {
		return err
	}
	d.javaMu.Lock()
	defer d.javaMu.Unlock()
	// skip=true: goldproxy downloads the Java DB itself, through its upstreams.
	javadb.Init(dir, nil, true, true, ftypes.RegistryOptions{})
	d.java = dir
	return nil
}

// acquireJava holds the Java DB for one analysis and reports whether one is loaded.
func (d *DB) acquireJava() (bool, func()) {
	d.javaMu.RLock()
	return d.java != "", d.javaMu.RUnlock
}

// acquire holds the DB for one scan.
func (d *DB) acquire() (DBInfo, func(), error) {
	d.mu.RLock()
	if d.info == nil {
		err := d.err
		d.mu.RUnlock()
		return DBInfo{}, nil, err
	}
	info := *d.info
	return info, d.mu.RUnlock, nil
}

// Fetch downloads the DB artifact ref (e.g. ghcr.io/aquasecurity/trivy-db:2) into a new
// directory under parent and validates it; it returns the directory. opts carry the
// upstream's transport and credentials. A broken download is removed, never returned.
func Fetch(ctx context.Context, ref name.Reference, parent string, opts ...remote.Option) (string, error) {
	return fetchArtifact(ctx, ref, parent, "db-", dbLayerMediaType, "", func(dir string) error { _, err := ValidateDir(dir); return err }, opts...)
}

// FetchJava downloads the Java DB artifact (e.g. ghcr.io/aquasecurity/trivy-java-db:1)
// into a new directory under parent, as dir/java-db/, and validates it.
func FetchJava(ctx context.Context, ref name.Reference, parent string, opts ...remote.Option) (string, error) {
	return fetchArtifact(ctx, ref, parent, "javadb-", JavaDBMediaType, "java-db", func(dir string) error { _, err := ValidateJavaDir(dir); return err }, opts...)
}

func fetchArtifact(ctx context.Context, ref name.Reference, parent, prefix, mediaType, sub string, validate func(string) error, opts ...remote.Option) (string, error) {
	img, err := remote.Image(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", ref, err)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil || string(mt) != mediaType {
			continue
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return "", err
		}
		target := filepath.Join(dir, sub)
		if err := os.MkdirAll(target, 0o755); err != nil {
			rc.Close()
			return "", err
		}
		err = untar(rc, target)
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("unpack %s: %w", ref, err)
		}
		if err := validate(dir); err != nil {
			return "", err
		}
		ok = true
		return dir, nil
	}
	return "", fmt.Errorf("%s has no %s layer", ref, mediaType)
}

// untar writes the regular files of a tar stream into dir (flat: the DB archive holds
// trivy.db and metadata.json).
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Base(filepath.Clean(h.Name))
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// CleanupTemp removes the temporary directory Trivy makes once per process
// (/tmp/trivy-NNN). Call it when the process ends: nothing may scan after it.
func CleanupTemp() error { return xos.Cleanup() }

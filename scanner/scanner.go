package scanner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	aimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	tlog "github.com/aquasecurity/trivy/pkg/log"
	"github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"
)

// Scanner scans images with the embedded Trivy.
type Scanner struct {
	db    *DB
	cache cache.Cache
	facts *bolt.DB // per-layer bin directory entries
	// walks counts layers decompressed for their entries alone (not teed from
	// Trivy's analysis): tests check a scan decompresses each layer once.
	walks atomic.Int64
}

// New returns a Scanner whose layer analysis cache (Trivy's bbolt FS cache, unless
// WithSharedLayerCache) lives in cacheDir, scanning against db.
func New(cacheDir string, db *DB, opts ...Option) (*Scanner, error) {
	tlog.InitLogger(false, true) // Trivy's own logger: quiet; goldproxy logs each scan
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	c, err := cache.NewFSCache(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("scanner: layer cache: %w", err)
	}
	facts, err := bolt.Open(filepath.Join(cacheDir, "goldproxy-layers.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("scanner: layer facts cache: %w", err)
	}
	if err := facts.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEntriesV1) != nil {
			if err := tx.DeleteBucket(bucketEntriesV1); err != nil {
				return err
			}
		}
		_, err := tx.CreateBucketIfNotExists(bucketEntries)
		return err
	}); err != nil {
		c.Close()
		facts.Close()
		return nil, err
	}
	s := &Scanner{db: db, cache: c, facts: facts}
	for _, o := range opts {
		if err := o(s); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the layer caches.
func (s *Scanner) Close() error { return errors.Join(s.cache.Close(), s.facts.Close()) }

// DB is the scanner's vulnerability DB.
func (s *Scanner) DB() *DB { return s.db }

// Ready reports why the scanner cannot scan, or nil.
func (s *Scanner) Ready() error { return s.db.Ready() }

// Result is a scan's report, the image's executables and the DB it was made with.
type Result struct {
	Report types.Report
	// Executables are the entries of the image's bin directories ("usr/bin/apk").
	Executables []string
	// UnanalysedJARs is the number of JAR (WAR, EAR, PAR) files in the image that were
	// not analysed because no Java DB was loaded: whatever they hold is not in Report.
	// Zero when a Java DB was used. Redetect leaves it zero: it reads no layer.
	UnanalysedJARs int
	DB             DBInfo
	// Key finds the image's layer analysis in the cache, for Redetect.
	Key Key
}

// Key names an image's analysis in the layer cache.
type Key struct {
	ArtifactID string   `json:"artifactID"`
	BlobIDs    []string `json:"blobIDs"`
	// Analysis identifies the analyzers that made it (analysisID); empty in keys made
	// before goldproxy recorded it.
	Analysis string `json:"analysis,omitempty"`
}

// analysisID fingerprints what an analysis with option is made with: every
// analyzer that runs, at its version, and the post handlers. It changes with the
// analyzer selection, a Trivy upgrade that changes an analyzer, and the Java DB's
// coming or going (JAR files analysed or not).
func analysisID(o artifact.Option) string {
	var parts []string
	g, err := analyzer.NewAnalyzerGroup(analyzer.AnalyzerOptions{DisabledAnalyzers: o.DisabledAnalyzers})
	if err != nil {
		return "error:" + err.Error()
	}
	cg, err := analyzer.NewConfigAnalyzerGroup(analyzer.ConfigAnalyzerOptions{DisabledAnalyzers: o.DisabledAnalyzers})
	if err != nil {
		return "error:" + err.Error()
	}
	v, cv := g.AnalyzerVersions(), cg.AnalyzerVersions()
	for prefix, m := range map[string]map[string]int{"a:": v.Analyzers, "p:": v.PostAnalyzers, "c:": cv.Analyzers, "cp:": cv.PostAnalyzers} {
		for name, version := range m {
			parts = append(parts, fmt.Sprintf("%s%s@%d", prefix, name, version))
		}
	}
	for _, h := range o.DisabledHandlers {
		parts = append(parts, "no-handler:"+string(h))
	}
	slices.Sort(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return "v1:" + hex.EncodeToString(sum[:8])
}

// NeedsAnalysis reports whether the analysis key names was made with other analyzers
// than a scan would use now (another selection, Trivy version or Java DB state, or a
// key older than the record of it). Redetect on such a key still works, from the old
// analysis: to find what `trivy image` finds now, scan the image again instead.
func (s *Scanner) NeedsAnalysis(key Key) bool {
	java, release := s.db.acquireJava()
	defer release()
	return key.Analysis != analysisID(artifactOption(java))
}

func (s *Scanner) backend() local.Service {
	return local.NewService(applier.NewApplier(s.cache), ospkg.NewScanner(), langpkg.NewScanner(), vulnerability.NewClient(trivydb.Config{}))
}

func scanOptions() types.ScanOptions {
	return types.ScanOptions{
		PkgTypes:         []string{types.PkgTypeOS, types.PkgTypeLibrary},
		PkgRelationships: ftypes.Relationships,
		Scanners:         types.Scanners{types.VulnerabilityScanner},
		// As Trivy's CLI does: the data source's own severity, else NVD's, else the DB's.
		VulnSeveritySources: []dbTypes.SourceID{"auto"},
	}
}

// Redetect detects vulnerabilities again with the loaded DB from an image's cached
// layer analysis: no layer is read. old is the image's previous report; the new one
// keeps its metadata and carries the new findings.
func (s *Scanner) Redetect(ctx context.Context, key Key, old types.Report) (*Result, error) {
	info, release, err := s.db.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := s.backend().Scan(ctx, old.ArtifactName, key.ArtifactID, key.BlobIDs, scanOptions())
	if err != nil {
		return nil, fmt.Errorf("scanner: redetect: %w", err)
	}
	r := old
	r.Results = resp.Results
	r.CreatedAt = time.Now()
	if resp.OS.Detected() {
		osCopy := resp.OS
		r.Metadata.OS = &osCopy
	}
	return &Result{Report: r, DB: info, Key: key}, nil
}

// disabledAnalyzers is what Trivy's CLI disables for `trivy image --scanners vuln` with
// the default package types (os, library), no image config scanners, no Rekor SBOM
// source and no TRIVY_EXPERIMENTAL_RPM_ARCHIVE: ScanImage and disabledAnalyzers in
// trivy's pkg/commands/artifact/run.go, in that order. The gate must find what
// `trivy image` finds, so this follows run.go rather than a list of our own; a Trivy
// upgrade that changes run.go must change this too (TestAnalyzerSelection pins it).
// Without a Java DB, JAR files are also left out (java false): the CLI would download
// one, the gate cannot identify a JAR without it, and the result counts them instead.
func disabledAnalyzers(java bool) []analyzer.Type {
	var d []analyzer.Type
	d = append(d, analyzer.TypeLockfiles...)      // ScanImage: no lock file scanning in images
	d = append(d, analyzer.TypeApkCommand)        // !ScanRemovedPkgs
	d = append(d, analyzer.TypeSecret)            // no secret scanner
	d = append(d, analyzer.TypeConfigFiles...)    // no misconfig or rbac scanner
	d = append(d, analyzer.TypeLicenseFile)       // no license scanner with --license-full
	d = append(d, analyzer.TypeHistoryDockerfile) // no image config misconfig scanner
	d = append(d, analyzer.TypeExecutable)        // Rekor is no SBOM source
	d = append(d, analyzer.TypeRpmArchive)        // TRIVY_EXPERIMENTAL_RPM_ARCHIVE unset
	if !java {
		d = append(d, analyzer.TypeJar)
	}
	return d
}

// disabledHandlers are the post handlers the gate turns off. The CLI turns off none at
// the default (precise) detection priority, so the system file filter stays on as
// there. The unpackaged handler looks up the digests the executable analyzer records in
// Rekor; with that analyzer off (as in the CLI) it has nothing to look up, and turning
// it off too keeps the Rekor client out of the gate, which makes no network call.
func disabledHandlers() []ftypes.HandlerType {
	return []ftypes.HandlerType{ftypes.UnpackagedPostHandler}
}

// artifactOption is the CLI's image scan analysis (disabledAnalyzers), offline: it
// reads only the image it is given.
func artifactOption(java bool) artifact.Option {
	return artifact.Option{
		Offline:           true,
		Parallel:          2,
		DisabledAnalyzers: disabledAnalyzers(java),
		DisabledHandlers:  disabledHandlers(),
	}
}

// Scan analyses img (cached by layer) and detects vulnerabilities in its OS and language
// packages. ref names the image in the report. The analysis, which reads the layers and
// takes as long as they are big, runs without holding the vulnerability DB: a DB swap
// waits only for detections, which are short, so it never holds new scans behind a long
// one.
func (s *Scanner) Scan(ctx context.Context, img v1.Image, ref string) (*Result, error) {
	return s.scan(ctx, img, ref, artifactOption)
}

func (s *Scanner) scan(ctx context.Context, img v1.Image, ref string, option func(java bool) artifact.Option) (*Result, error) {
	java, releaseJava := s.db.acquireJava()
	defer releaseJava()
	// The bin directory and JAR facts are read from the stream Trivy's analysis
	// decompresses (teed), so each layer is decompressed once.
	teed := s.tee(img)
	defer teed.close()
	opt := option(java)
	ov := newOverlay(s.cache)
	inner, err := aimage.NewArtifact(&namedImage{Image: teed, ref: ref}, ov, opt)
	if err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	inspected, err := inner.Inspect(ctx)
	if err != nil {
		return nil, fmt.Errorf("scanner: failed analysis: %w", err)
	}
	// Layers may have been analysed as they arrived: what was made of them is kept (and
	// detected on) only once their bytes are checked against their digests.
	if err := verifyLayers(img); err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	teed.commit()
	if err := ov.commit(ctx); err != nil {
		return nil, fmt.Errorf("scanner: layer cache: %w", err)
	}
	facts, err := s.walkLayers(img, teed)
	if err != nil {
		return nil, fmt.Errorf("scanner: layer walk: %w", err)
	}
	res, err := s.detect(ctx, inner, inspected, java, opt)
	if err != nil {
		return nil, fmt.Errorf("scanner: %w", err)
	}
	res.Executables = facts.Executables
	if !java {
		res.UnanalysedJARs = len(facts.JARs)
	}
	return res, nil
}

// detect detects vulnerabilities in an analysed artifact, holding the DB only now: the
// analysis before it ran without the DB, so a swap never waits for a long one.
func (s *Scanner) detect(ctx context.Context, inner artifact.Artifact, inspected artifact.Reference, java bool, opt artifact.Option) (*Result, error) {
	info, release, err := s.db.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	info.Java = java
	report, err := scan.NewService(s.backend(), analysed{Artifact: inner, ref: inspected}).ScanArtifact(ctx, scanOptions())
	if err != nil {
		return nil, err
	}
	return &Result{Report: report, DB: info, Key: Key{ArtifactID: inspected.ID, BlobIDs: inspected.BlobIDs, Analysis: analysisID(opt)}}, nil
}

// analysed is an artifact whose analysis is done: Trivy's scan service asks it again
// and gets the result at once.
type analysed struct {
	artifact.Artifact
	ref artifact.Reference
}

func (a analysed) Inspect(context.Context) (artifact.Reference, error) { return a.ref, nil }

// namedImage gives a v1.Image the names Trivy's image artifact asks for.
type namedImage struct {
	v1.Image
	ref string
}

func (i *namedImage) Name() string { return i.ref }

func (i *namedImage) ID() (string, error) {
	h, err := i.ConfigName()
	return h.String(), err
}

// RepoTags and RepoDigests name the image only when ref is a registry reference: a file
// path (scan --input) is no repository, and Trivy's SBOM writers reject it as one.
func (i *namedImage) RepoTags() []string {
	if strings.Contains(i.ref, "@") || !isReference(i.ref) {
		return nil
	}
	return []string{i.ref}
}

func isReference(s string) bool {
	_, err := name.ParseReference(s)
	return err == nil && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, ".")
}

func (i *namedImage) RepoDigests() []string {
	d, err := i.Digest()
	if err != nil {
		return nil
	}
	repo := i.ref
	if at := strings.Index(repo, "@"); at >= 0 {
		repo = repo[:at]
	} else if c := strings.LastIndex(repo, ":"); c > strings.LastIndex(repo, "/") {
		repo = repo[:c]
	}
	if !isReference(repo + "@" + d.String()) {
		return nil
	}
	return []string{repo + "@" + d.String()}
}

// Forget drops the cached analysis of images that are no longer stored: the layer
// entries of every key in gone that no key in kept still uses.
func (s *Scanner) Forget(ctx context.Context, gone, kept []Key) error {
	keep := map[string]bool{}
	for _, k := range kept {
		for _, b := range k.BlobIDs {
			keep[b] = true
		}
	}
	var drop []string
	for _, k := range gone {
		for _, b := range k.BlobIDs {
			if !keep[b] {
				drop = append(drop, b)
				keep[b] = true // once
			}
		}
	}
	if len(drop) == 0 {
		return nil
	}
	return s.cache.DeleteBlobs(ctx, drop)
}

// ForgetLayers drops the cached bin directory entries of layers no longer stored.
func (s *Scanner) ForgetLayers(digests []string) error {
	return s.facts.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for _, d := range digests {
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return nil
	})
}

package scanner_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aquasecurity/trivy/pkg/types"

	"github.com/goldproxy/goldproxy/scanner"
	"github.com/goldproxy/goldproxy/scanner/scannertest"
	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
)

func reportFindings(r types.Report) string {
	var out []string
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			out = append(out, v.VulnerabilityID+" "+v.PkgName)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// TestSharedLayerCache: two replicas' scanners keep Trivy's layer cache in one
// PostgreSQL database: an image scanned on one is re-detected on the other, which never
// analysed it and reads no layer to do so; a scanner with a cache of its own cannot.
func TestSharedLayerCache(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	dbDir := filepath.Join(t.TempDir(), "db")
	scannertest.BuildDB(t, dbDir, time.Now())
	db := scanner.NewDB()
	if _, err := db.Load(dbDir, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	open := func(opts ...scanner.Option) *scanner.Scanner {
		s, err := scanner.New(filepath.Join(t.TempDir(), "cache"), db, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	shared := func() *scanner.Scanner {
		pg, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		return open(scanner.WithSharedLayerCache(pg))
	}
	a, b, alone := shared(), shared(), open()
	res, err := a.Scan(ctx, scannertest.AlpineImage(t, true), "r.test/app:1")
	if err != nil {
		t.Fatal(err)
	}
	want := reportFindings(res.Report)
	if want == "" {
		t.Fatal("the vulnerable image has no findings")
	}
	again, err := b.Redetect(ctx, res.Key, res.Report)
	if err != nil {
		t.Fatalf("re-detection on the other replica: %v", err)
	}
	if got := reportFindings(again.Report); got != want {
		t.Fatalf("re-detection on the other replica found %q, want %q", got, want)
	}
	if _, err := alone.Redetect(ctx, res.Key, res.Report); err == nil {
		t.Fatal("a scanner with a layer cache of its own re-detected an image it never analysed")
	}
}

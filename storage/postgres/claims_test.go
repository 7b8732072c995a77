package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
)

// TestClaims: a claim is one replica's until it releases it or lets it lapse; only its
// holder renews or releases it.
func TestClaims(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	must := func(ok bool, err error) bool {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	const key = "scan/sha256:1"
	if !must(a.Claim(ctx, key, time.Minute)) {
		t.Fatal("A could not claim a free key")
	}
	if must(b.Claim(ctx, key, time.Minute)) {
		t.Fatal("B claimed a key A holds")
	}
	if must(a.Claim(ctx, key, time.Minute)) {
		t.Fatal("A claimed a key it already holds: two scans in one process")
	}
	if must(b.Renew(ctx, key, time.Minute)) {
		t.Fatal("B renewed A's claim")
	}
	if err := b.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if must(b.Claim(ctx, key, time.Minute)) {
		t.Fatal("B's release freed A's claim")
	}
	if !must(a.Renew(ctx, key, 300*time.Millisecond)) {
		t.Fatal("A could not renew its claim")
	}
	time.Sleep(400 * time.Millisecond) // the lease runs on the database's clock
	if !must(b.Claim(ctx, key, time.Minute)) {
		t.Fatal("B could not take over a lapsed claim")
	}
	if must(a.Renew(ctx, key, time.Minute)) {
		t.Fatal("A renewed a claim B took over")
	}
	if err := b.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if !must(a.Claim(ctx, key, time.Minute)) {
		t.Fatal("A could not claim a released key")
	}
}

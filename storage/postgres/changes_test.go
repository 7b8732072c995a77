package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goldproxy/goldproxy/storage"
	"github.com/goldproxy/goldproxy/storage/postgres"
	"github.com/goldproxy/goldproxy/storage/postgres/pgtest"
)

// TestChanges: what one Store notifies, another listening receives (not the sender
// itself); shared values are read back by another Store.
func TestChanges(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() *postgres.Store {
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	type note struct{ topic, payload string }
	got := map[*postgres.Store]chan note{a: make(chan note, 10), b: make(chan note, 10)}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for s, ch := range got {
		go func() { done <- s.Listen(lctx, func(topic, payload string) { ch <- note{topic, payload} }) }()
	}
	for s, ch := range got {
		if n := <-ch; n != (note{"", "connected"}) {
			t.Fatalf("first call of %p: %+v, want the connected mark", s, n)
		}
	}
	if err := a.Notify(ctx, "facts", "sha256:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got[b]:
		if n != (note{"facts", "sha256:1"}) {
			t.Fatalf("B got %+v", n)
		}
	case <-ctx.Done():
		t.Fatal("B was not told")
	}
	// A's own change is not echoed to A: B's next one is the first A hears.
	if err := b.Notify(ctx, "robots", ""); err != nil {
		t.Fatal(err)
	}
	if n := <-got[a]; n != (note{"robots", ""}) {
		t.Fatalf("A got %+v, want B's change only", n)
	}
	stop()
	for range 2 {
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Listen ended with %v", err)
		}
	}

	if _, err := b.Value(ctx, "policy", "current"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unset value: %v", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := a.PutValue(ctx, "policy", "current", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Value(ctx, "policy", "current"); err != nil || string(got) != v {
			t.Fatalf("value: %q %v, want %q", got, err, v)
		}
	}
	if err := b.DeleteValues(ctx, "policy", "current", "absent"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Value(ctx, "policy", "current"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted value: %v", err)
	}
}

package storagetest

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// holds: a holder's publish replaces its set, sets expire at their Until, holders do not
// see each other's sets replaced, and long-expired sets are removed by a later publish.
func holds(t *testing.T, m storage.Metadata) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	want := func(at time.Time, sets map[string][]digest.Digest) {
		t.Helper()
		got, err := m.Holds(at)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(sets))) {
			t.Fatalf("holders at %s: %v, want %v", at, got, sets)
		}
		for h, ds := range sets {
			if !slices.Equal(got[h].Digests, slices.Sorted(slices.Values(ds))) {
				t.Fatalf("holder %s at %s: %v, want %v", h, at, got[h].Digests, ds)
			}
		}
	}
	if got, err := m.Holds(now); err != nil || len(got) != 0 {
		t.Fatalf("holds of an empty store: %v %v", got, err)
	}
	// Given unsorted and twice, listed sorted once.
	if err := m.PublishHolds("r1", []digest.Digest{c, a, c}, now.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := m.PublishHolds("r2", []digest.Digest{b}, now.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	want(now, map[string][]digest.Digest{"r1": {a, c}, "r2": {b}})
	got, _ := m.Holds(now)
	if !got["r1"].Until.Equal(now.Add(10 * time.Second)) {
		t.Fatalf("until: %s, want %s", got["r1"].Until, now.Add(10*time.Second))
	}
	// r2 expires at its Until (not after it); r1 still holds.
	want(now.Add(5*time.Second), map[string][]digest.Digest{"r1": {a, c}})
	want(now.Add(5*time.Second-time.Microsecond), map[string][]digest.Digest{"r1": {a, c}, "r2": {b}})
	// A publish replaces the holder's set, Until included; an empty one holds nothing but
	// is listed (the holder is alive).
	if err := m.PublishHolds("r1", []digest.Digest{b}, now.Add(20*time.Second)); err != nil {
		t.Fatal(err)
	}
	want(now.Add(15*time.Second), map[string][]digest.Digest{"r1": {b}})
	if err := m.PublishHolds("r2", nil, now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	want(now.Add(25*time.Second), map[string][]digest.Digest{"r2": nil})
	// Expired long enough ago, r1's set is removed by r2's next publish: asked about a
	// time before it expired, it is gone.
	later := now.Add(20*time.Second + storage.HoldsKept + time.Second)
	if err := m.PublishHolds("r2", []digest.Digest{a}, later); err != nil {
		t.Fatal(err)
	}
	want(now, map[string][]digest.Digest{"r2": {a}})
	// Refused: no holder, not a digest.
	if err := m.PublishHolds("", []digest.Digest{a}, later); err == nil {
		t.Fatal("a publish without a holder was accepted")
	}
	if err := m.PublishHolds("r3", []digest.Digest{"nope"}, later); err == nil {
		t.Fatal("a publish of something that is not a digest was accepted")
	}
	want(now, map[string][]digest.Digest{"r2": {a}})
}

package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

func deleteDetails(t *testing.T, m storage.Metadata) {
	gone, goneRaw := manifest("deleted")
	stays, staysRaw := manifest("stays")
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	for _, repo := range []string{"r.test/app", "r.test/other"} {
		if err := m.PutTaggedManifest(repo, "old", at, gone, goneRaw); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SetTag("r.test/app", "also-old", gone.Digest, at); err != nil {
		t.Fatal(err)
	}
	if err := m.PutTaggedManifest("r.test/app", "new", at, stays, staysRaw); err != nil {
		t.Fatal(err)
	}
	if err := m.MarkPulled(map[string]time.Time{storage.PullKey("r.test/app", gone.Digest): at, storage.PullKey("r.test/other", gone.Digest): at}); err != nil {
		t.Fatal(err)
	}
	if orphaned, err := m.DeleteManifest("r.test/app", gone.Digest); err != nil || orphaned {
		t.Fatalf("delete: orphaned %v, %v", orphaned, err)
	}
	if _, ok := m.HasManifest("r.test/app", gone.Digest); ok {
		t.Fatal("the record survived")
	}
	if _, _, err := m.Manifest("r.test/app", gone.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the manifest survived: %v", err)
	}
	if m.Linked("r.test/app", gone.Digest) {
		t.Fatal("the link survived")
	}
	if ts, _ := m.Tags("r.test/app"); !slices.Equal(ts, []string{"new"}) {
		t.Fatalf("tags after delete: %v (both tags of the digest go, the other stays)", ts)
	}
	if _, b, err := m.Manifest("r.test/other", gone.Digest); err != nil || string(b) != string(goneRaw) {
		t.Fatalf("another repository lost the manifest: %v", err)
	}
	if tr, err := m.Tag("r.test/other", "old"); err != nil || tr.Digest != gone.Digest {
		t.Fatalf("another repository lost its tag: %+v %v", tr, err)
	}
	imgs, _ := m.Images()
	for _, img := range imgs {
		if img.Repository == "r.test/app" && img.Digest == gone.Digest {
			t.Fatal("the image is still listed")
		}
		if img.Repository == "r.test/other" && !img.LastPulled.Equal(at) {
			t.Fatalf("another repository lost its last pull: %+v", img)
		}
	}
	// Stored again, it has no last pull: the old one went with it.
	if err := m.PutManifest("r.test/app", gone, goneRaw); err != nil {
		t.Fatal(err)
	}
	imgs, _ = m.Images()
	for _, img := range imgs {
		if img.Repository == "r.test/app" && img.Digest == gone.Digest && !img.LastPulled.IsZero() {
			t.Fatalf("the last pull survived the delete: %s", img.LastPulled)
		}
	}
	// Deleting what is not there is not an error.
	if _, err := m.DeleteManifest("r.test/app", digest.FromString("never stored")); err != nil {
		t.Fatalf("delete of an unknown manifest: %v", err)
	}
	if _, err := m.DeleteManifest("r.test/none", stays.Digest); err != nil {
		t.Fatalf("delete from a repository without it: %v", err)
	}
	if _, ok := m.HasManifest("r.test/app", stays.Digest); !ok {
		t.Fatal("deleting from another repository removed the manifest")
	}
	// The last holder gone, the report goes with the bytes.
	if err := m.PutVerdictAndReport(stays.Digest, []byte(`{}`), []byte(`{"r":1}`)); err != nil {
		t.Fatal(err)
	}
	if orphaned, err := m.DeleteManifest("r.test/app", stays.Digest); err != nil || !orphaned {
		t.Fatalf("delete of the last holder: orphaned %v, %v", orphaned, err)
	}
	if _, err := m.Report(stays.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the report of an orphaned digest survived: %v", err)
	}
}

func iterationErrors(t *testing.T, m storage.Metadata) {
	stop := errors.New("stop")
	for i := range 3 {
		d := digest.FromString(fmt.Sprint("it ", i))
		if err := m.PutVerdict(d, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := m.PutJudgement("r.test/app", d, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := m.Verdicts(func(digest.Digest, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("verdicts: %v after %d calls, want stop after 1", err, n)
	}
	n = 0
	if err := m.Judgements(func(string, digest.Digest, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("judgements: %v after %d calls, want stop after 1", err, n)
	}
}

func badPullKeys(t *testing.T, m storage.Metadata) {
	d := digest.FromString("pk")
	good := storage.PullKey("r.test/app", d)
	for _, bad := range []string{"r.test/app", "r.test/app\x00not-a-digest", "\x00" + d.String()} {
		if err := m.PutJudgements(map[string][]byte{good: []byte(`{}`), bad: []byte(`{}`)}); err == nil {
			t.Errorf("PutJudgements took key %q", bad)
		}
		if err := m.MarkPulled(map[string]time.Time{good: time.Now(), bad: time.Now()}); err == nil {
			t.Errorf("MarkPulled took key %q", bad)
		}
	}
	if _, err := m.Judgement("r.test/app", d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a refused batch was partly written: %v", err)
	}
	repo, got, err := storage.SplitPullKey(good)
	if err != nil || repo != "r.test/app" || got != d {
		t.Fatalf("SplitPullKey: %q %s %v", repo, got, err)
	}
}

func exactBytes(t *testing.T, m storage.Metadata) {
	d := digest.FromString("exact")
	// Not canonical JSON, not even JSON: the store keeps what the gate wrote.
	for _, rec := range [][]byte{[]byte("{ \"b\":1,  \"a\":2 }"), {0, 1, 2, 255}, {}} {
		if err := m.PutVerdictAndReport(d, rec, rec); err != nil {
			t.Fatal(err)
		}
		if b, err := m.Verdict(d); err != nil || string(b) != string(rec) {
			t.Fatalf("facts %q back as %q, %v", rec, b, err)
		}
		if b, err := m.Report(d); err != nil || string(b) != string(rec) {
			t.Fatalf("report %q back as %q, %v", rec, b, err)
		}
		if err := m.PutJudgement("r.test/app", d, rec); err != nil {
			t.Fatal(err)
		}
		if b, err := m.Judgement("r.test/app", d); err != nil || string(b) != string(rec) {
			t.Fatalf("judgement %q back as %q, %v", rec, b, err)
		}
	}
	if _, err := m.Report(digest.FromString("no report")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown report: %v", err)
	}
	if _, err := m.Judgement("r.test/other", d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a judgement leaks to another repository: %v", err)
	}
}

func robotDetails(t *testing.T, m storage.Metadata) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"zeta", "Alpha", "beta"} {
		if err := m.PutRobot(storage.Robot{Name: name, Hash: "h-" + name, Created: created}); err != nil {
			t.Fatal(err)
		}
	}
	exp := created.Add(30 * 24 * time.Hour)
	if err := m.PutRobot(storage.Robot{Name: "beta", Hash: "rotated", Scopes: []string{"a/**", "b/*"}, Created: created, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	rs, err := m.Robots()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"Alpha", "beta", "zeta"}) {
		t.Fatalf("robots: %v", names)
	}
	b, err := m.Robot("beta")
	if err != nil || b.Hash != "rotated" || !slices.Equal(b.Scopes, []string{"a/**", "b/*"}) || !b.Expires.Equal(exp) || !b.Created.Equal(created) {
		t.Fatalf("replaced robot: %+v %v", b, err)
	}
	if a, _ := m.Robot("Alpha"); !a.Expires.IsZero() {
		t.Fatalf("a robot without expiry got one: %s", a.Expires)
	}
	if err := m.DeleteRobot("nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleting an unknown robot: %v", err)
	}
	if _, err := m.Robot("alpha"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("robot names are case-sensitive: %v", err)
	}
}

func baselineOrder(t *testing.T, m storage.Metadata) {
	if _, _, err := m.LatestBaseline(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no baseline yet: %v", err)
	}
	sec := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	half := sec.Add(500 * time.Millisecond)
	if err := m.PutBaseline(half, []byte("half")); err != nil {
		t.Fatal(err)
	}
	if err := m.PutBaseline(sec, []byte("whole")); err != nil {
		t.Fatal(err)
	}
	at, b, err := m.LatestBaseline()
	if err != nil || string(b) != "half" || !at.Equal(half) {
		t.Fatalf("latest: %s %q %v, want the one at %s", at, b, err, half)
	}
	if err := m.PutBaseline(half, []byte("half again")); err != nil {
		t.Fatal(err)
	}
	if _, b, _ := m.LatestBaseline(); string(b) != "half again" {
		t.Fatalf("a baseline at the same time replaces it: %q", b)
	}
	local := half.Add(time.Hour).In(time.FixedZone("UTC+2", 2*3600))
	if err := m.PutBaseline(local, []byte("later, in another zone")); err != nil {
		t.Fatal(err)
	}
	if at, _, _ := m.LatestBaseline(); !at.Equal(local) {
		t.Fatalf("latest: %s, want %s", at, local)
	}
}

func timePrecision(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("micro")
	at := time.Date(2026, 7, 8, 9, 10, 11, 123456000, time.UTC)
	if err := m.PutTaggedManifest("r.test/app", "t", at, rec, raw); err != nil {
		t.Fatal(err)
	}
	if tr, _ := m.Tag("r.test/app", "t"); !tr.FetchedAt.Equal(at) {
		t.Fatalf("fetched at %s, back %s", at, tr.FetchedAt)
	}
	if err := m.MarkPulled(map[string]time.Time{storage.PullKey("r.test/app", rec.Digest): at}); err != nil {
		t.Fatal(err)
	}
	later := at.Add(time.Minute)
	if err := m.MarkPulled(map[string]time.Time{storage.PullKey("r.test/app", rec.Digest): later}); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := m.Images(); len(imgs) != 1 || !imgs[0].LastPulled.Equal(later) || imgs[0].StoredAt.IsZero() {
		t.Fatalf("images: %+v (the last MarkPulled wins)", imgs)
	}
	// Nanoseconds may be rounded to the microsecond, no further.
	ns := at.Add(789 * time.Nanosecond)
	if err := m.SetTag("r.test/app", "ns", rec.Digest, ns); err != nil {
		t.Fatal(err)
	}
	if tr, _ := m.Tag("r.test/app", "ns"); tr.FetchedAt.Sub(ns).Abs() >= time.Microsecond {
		t.Fatalf("fetched at %s, back %s", ns, tr.FetchedAt)
	}
}

func concurrentWriters(t *testing.T, m storage.Metadata) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	shared := digest.FromString("shared by all")
	for i := range n {
		wg.Go(func() {
			rec, raw := image(digest.FromString(fmt.Sprint("cfg ", i)), shared)
			if err := m.PutTaggedManifest("r.test/app", fmt.Sprint("t", i), time.Now(), rec, raw, shared); err != nil {
				errs <- err
				return
			}
			if err := m.MarkPulled(map[string]time.Time{storage.PullKey("r.test/app", rec.Digest): time.Now()}); err != nil {
				errs <- err
				return
			}
			errs <- m.PutJudgement("r.test/app", rec.Digest, []byte(`{}`))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if imgs, _ := m.Images(); len(imgs) != n {
		t.Fatalf("%d images, want %d", len(imgs), n)
	}
	if os, _ := m.Owners("r.test/app", shared); len(os) != n {
		t.Fatalf("%d owners of the shared layer, want %d", len(os), n)
	}
	if ts, _ := m.Tags("r.test/app"); len(ts) != n {
		t.Fatalf("%d tags, want %d", len(ts), n)
	}
}

// manyJudgements is more than one page of any paged implementation.
func manyJudgements(t *testing.T, m storage.Metadata) {
	const n = 1234
	batch := map[string][]byte{}
	var want []string
	for i := range n {
		repo := fmt.Sprintf("r.test/app-%d", i%7)
		d := digest.FromString(fmt.Sprint("many ", i))
		batch[storage.PullKey(repo, d)] = []byte(fmt.Sprint(i))
		want = append(want, storage.PullKey(repo, d))
	}
	if err := m.PutJudgements(batch); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	var got []string
	err := m.Judgements(func(repo string, d digest.Digest, b []byte) error {
		k := storage.PullKey(repo, d)
		if string(b) != string(batch[k]) {
			t.Errorf("%s: %q, want %q", k, b, batch[k])
		}
		got = append(got, k)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("judgements: %d listed (%v), want %d in (repository, digest) order", len(got), err, n)
	}
}

func robotAdds(t *testing.T, m storage.Metadata) {
	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- m.AddRobot(storage.Robot{Name: "ci", Hash: fmt.Sprintf("h%d", i), Created: time.Now().UTC()})
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("add of a taken name: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent adds of one robot succeeded, want 1", won, n)
	}
	if err := m.AddRobot(storage.Robot{Name: "ci"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("add after the add: %v", err)
	}
	if err := m.DeleteRobot("ci"); err != nil {
		t.Fatal(err)
	}
	if err := m.AddRobot(storage.Robot{Name: "ci", Hash: "again"}); err != nil {
		t.Fatalf("add after a revoke: %v", err)
	}
}

// Package storagetest is the conformance suite of storage.Metadata (Conformance) and of
// the store's blobs over a storage driver (Blobs): every implementation (bbolt embedded,
// PostgreSQL; the filesystem, S3) must pass it, so the gate and the mirror behave the
// same on each. The suite pins behaviour, not implementation: listings in byte order,
// one transaction per manifest, exact record bytes, microsecond times.
//
// It never skips a case for one implementation: what one store does, all do.
package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/storage"
)

// Conformance runs the suite against fresh metadata stores made by open.
func Conformance(t *testing.T, open func(t *testing.T) storage.Metadata) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, m storage.Metadata)
	}{
		{"manifests and links", manifests},
		{"tags", tags},
		{"referrers", referrers},
		{"blob owners", owners},
		{"facts and judgements", factsAndJudgements},
		{"delete manifest", deleteManifest},
		{"robots", robots},
		{"baselines keep the newest ten", baselines},
		{"last pulls", lastPulls},
		{"a refused manifest leaves nothing", refusedManifest},
		{"manifest records round-trip", manifestRecords},
		{"listings come in byte order", byteOrder},
		{"a tag moves", tagMoves},
		{"referrers are per subject and go with their manifest", referrerLifecycle},
		{"owners of a shared blob", sharedOwners},
		{"unlink forgets every repository's link", unlink},
		{"delete manifest forgets everything of its repository", deleteDetails},
		{"iterations stop at the first error", iterationErrors},
		{"keys that are not pull keys are refused", badPullKeys},
		{"records keep their exact bytes", exactBytes},
		{"robots are listed by name and replaced", robotDetails},
		{"of concurrent adds of one robot exactly one succeeds", robotAdds},
		{"baselines: the newest by time, even within a second", baselineOrder},
		{"times keep microseconds", timePrecision},
		{"concurrent writers", concurrentWriters},
		{"many judgements: one batch, each listed once in order", manyJudgements},
		{"holds: replaced per holder, expire at their time", holds},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func manifest(body string) (storage.ManifestRecord, []byte) {
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","x":"` + body + `"}`)
	return storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(raw)}}, raw
}

func manifests(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("a")
	layer := digest.FromString("layer")
	if err := m.PutManifest("r.test/app", rec, raw, layer); err != nil {
		t.Fatal(err)
	}
	got, b, err := m.Manifest("r.test/app", rec.Digest)
	if err != nil || string(b) != string(raw) || got.Size != int64(len(raw)) || got.MediaType != rec.MediaType {
		t.Fatalf("manifest back: %+v %q %v", got, b, err)
	}
	if _, _, err := m.Manifest("r.test/other", rec.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("another repository sees the manifest: %v", err)
	}
	if !m.Linked("r.test/app", layer) || !m.Linked("r.test/app", rec.Digest) || m.Linked("r.test/other", layer) {
		t.Fatal("links: the manifest's blobs are linked to its repository, and only there")
	}
	if err := m.Link("r.test/other", layer); err != nil || !m.Linked("r.test/other", layer) {
		t.Fatalf("link: %v", err)
	}
	bad := rec
	bad.Digest = digest.FromString("something else")
	if err := m.PutManifest("r.test/app", bad, raw); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("a manifest that does not match its digest was stored: %v", err)
	}
	if _, ok := m.HasManifest("r.test/app", rec.Digest); !ok {
		t.Fatal("HasManifest")
	}
}

func owners(t *testing.T, m storage.Metadata) {
	cfg, layer := digest.FromString("config"), digest.FromString("layer")
	raw := []byte(`{"schemaVersion":2,"config":{"digest":"` + cfg.String() + `"},"layers":[{"digest":"` + layer.String() + `"}]}`)
	rec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(raw)}}
	if err := m.PutManifest("r.test/app", rec, raw, cfg, layer); err != nil {
		t.Fatal(err)
	}
	for _, b := range []digest.Digest{cfg, layer} {
		if os, err := m.Owners("r.test/app", b); err != nil || len(os) != 1 || os[0] != rec.Digest {
			t.Fatalf("owners of %s: %v %v", b, os, err)
		}
		if os, _ := m.Owners("r.test/other", b); len(os) != 0 {
			t.Fatalf("owners leak to another repository: %v", os)
		}
	}
	if _, err := m.DeleteManifest("r.test/app", rec.Digest); err != nil {
		t.Fatal(err)
	}
	if os, _ := m.Owners("r.test/app", layer); len(os) != 0 {
		t.Fatalf("owners after delete: %v", os)
	}
}

func tags(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("t")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := m.PutTaggedManifest("r.test/app", "1", at, rec, raw); err != nil {
		t.Fatal(err)
	}
	tr, err := m.Tag("r.test/app", "1")
	if err != nil || tr.Digest != rec.Digest || !tr.FetchedAt.Equal(at) {
		t.Fatalf("tag: %+v %v", tr, err)
	}
	if err := m.SetTag("r.test/app", "latest", rec.Digest, at); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTag("r.test/app-worker", "1", rec.Digest, at); err != nil {
		t.Fatal(err)
	}
	if ts, _ := m.Tags("r.test/app"); !slices.Equal(ts, []string{"1", "latest"}) {
		t.Fatalf("tags of r.test/app: %v (a repository whose name extends it is another)", ts)
	}
	if ts, _ := m.TagsOf("r.test/app", rec.Digest); len(ts) != 2 {
		t.Fatalf("tags of the digest: %v", ts)
	}
	if _, err := m.Tag("r.test/app", "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown tag: %v", err)
	}
}

func referrers(t *testing.T, m storage.Metadata) {
	subj, subjRaw := manifest("subject")
	if err := m.PutManifest("r.test/app", subj, subjRaw); err != nil {
		t.Fatal(err)
	}
	sig, sigRaw := manifest("sig")
	sig.Subject, sig.ArtifactType = subj.Digest, "application/vnd.dev.cosign.artifact.sig.v1+json"
	if err := m.PutManifest("r.test/app", sig, sigRaw); err != nil {
		t.Fatal(err)
	}
	rs, err := m.Referrers("r.test/app", subj.Digest)
	if err != nil || len(rs) != 1 || rs[0].Digest != sig.Digest || rs[0].ArtifactType != sig.ArtifactType {
		t.Fatalf("referrers: %+v %v", rs, err)
	}
	if rs, _ := m.Referrers("r.test/other", subj.Digest); len(rs) != 0 {
		t.Fatalf("referrers leak to another repository: %+v", rs)
	}
}

func factsAndJudgements(t *testing.T, m storage.Metadata) {
	d := digest.FromString("image")
	if _, err := m.Verdict(d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("no facts yet: %v", err)
	}
	if err := m.PutVerdictAndReport(d, []byte(`{"state":"scanned"}`), []byte(`{"SchemaVersion":2}`)); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Verdict(d); string(b) != `{"state":"scanned"}` {
		t.Fatalf("facts: %s", b)
	}
	if b, _ := m.Report(d); string(b) != `{"SchemaVersion":2}` {
		t.Fatalf("report: %s", b)
	}
	if err := m.PutVerdict(d, []byte(`{"state":"error"}`)); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = m.Verdicts(func(got digest.Digest, b []byte) error {
		n++
		if got != d || string(b) != `{"state":"error"}` {
			t.Errorf("verdicts: %s %s", got, b)
		}
		return nil
	})
	if n != 1 {
		t.Fatalf("%d facts records, want 1", n)
	}
	if err := m.PutJudgement("r.test/a", d, []byte(`{"state":"allowed"}`)); err != nil {
		t.Fatal(err)
	}
	if err := m.PutJudgements(map[string][]byte{storage.PullKey("r.test/b", d): []byte(`{"state":"denied"}`)}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	_ = m.Judgements(func(repo string, gd digest.Digest, b []byte) error {
		got[repo+"@"+gd.String()] = string(b)
		return nil
	})
	if len(got) != 2 || got["r.test/a@"+d.String()] != `{"state":"allowed"}` || got["r.test/b@"+d.String()] != `{"state":"denied"}` {
		t.Fatalf("judgements: %v", got)
	}
	if b, err := m.Judgement("r.test/b", d); err != nil || string(b) != `{"state":"denied"}` {
		t.Fatalf("judgement of b: %s %v", b, err)
	}
}

func deleteManifest(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("shared")
	for _, repo := range []string{"r.test/a", "r.test/b"} {
		if err := m.PutTaggedManifest(repo, "1", time.Now(), rec, raw); err != nil {
			t.Fatal(err)
		}
		if err := m.PutJudgement(repo, rec.Digest, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.PutVerdictAndReport(rec.Digest, []byte(`{}`), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	orphaned, err := m.DeleteManifest("r.test/a", rec.Digest)
	if err != nil || orphaned {
		t.Fatalf("delete from a: orphaned %v, %v (b still holds it)", orphaned, err)
	}
	if _, err := m.Judgement("r.test/a", rec.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a's judgement survived: %v", err)
	}
	if _, err := m.Tag("r.test/a", "1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a's tag survived: %v", err)
	}
	if _, err := m.Verdict(rec.Digest); err != nil {
		t.Fatalf("facts went while b holds the digest: %v", err)
	}
	if orphaned, err := m.DeleteManifest("r.test/b", rec.Digest); err != nil || !orphaned {
		t.Fatalf("delete from b: orphaned %v, %v", orphaned, err)
	}
	if _, err := m.Verdict(rec.Digest); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("facts of an orphaned digest survived: %v", err)
	}
}

func robots(t *testing.T, m storage.Metadata) {
	r := storage.Robot{Name: "ci", Hash: "abc", Scopes: []string{"r.test/**"}, Created: time.Now().UTC().Truncate(time.Second)}
	if err := m.PutRobot(r); err != nil {
		t.Fatal(err)
	}
	got, err := m.Robot("ci")
	if err != nil || got.Hash != "abc" || !slices.Equal(got.Scopes, r.Scopes) {
		t.Fatalf("robot: %+v %v", got, err)
	}
	if rs, _ := m.Robots(); len(rs) != 1 {
		t.Fatalf("robots: %v", rs)
	}
	if err := m.DeleteRobot("ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Robot("ci"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted robot: %v", err)
	}
}

func baselines(t *testing.T, m storage.Metadata) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 12 {
		if err := m.PutBaseline(base.Add(time.Duration(i)*time.Hour), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	at, b, err := m.LatestBaseline()
	if err != nil || string(b) != `{"n":11}` || !at.Equal(base.Add(11*time.Hour)) {
		t.Fatalf("latest baseline: %s %s %v", at, b, err)
	}
}

func lastPulls(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("pulled")
	if err := m.PutManifest("r.test/app", rec, raw); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := m.MarkPulled(map[string]time.Time{storage.PullKey("r.test/app", rec.Digest): at}); err != nil {
		t.Fatal(err)
	}
	imgs, err := m.Images()
	if err != nil || len(imgs) != 1 || !imgs[0].LastPulled.Equal(at) || string(imgs[0].Raw) != string(raw) {
		t.Fatalf("images: %+v %v", imgs, err)
	}
}

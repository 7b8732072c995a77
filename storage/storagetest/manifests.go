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

// image is an image manifest referencing a config and layers, and its record.
func image(cfg digest.Digest, layers ...digest.Digest) (storage.ManifestRecord, []byte) {
	raw := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"` + cfg.String() + `"},"layers":[`
	for i, l := range layers {
		if i > 0 {
			raw += ","
		}
		raw += `{"digest":"` + l.String() + `"}`
	}
	raw += "]}"
	return storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromString(raw)}}, []byte(raw)
}

func refusedManifest(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("refused")
	layer := digest.FromString("refused layer")
	bad := rec
	bad.Digest = digest.FromString("not these bytes")
	if err := m.PutTaggedManifest("r.test/app", "1", time.Now(), bad, raw, layer); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	invalid := rec
	invalid.Digest = "sha256:short"
	if err := m.PutTaggedManifest("r.test/app", "2", time.Now(), invalid, raw, layer); err == nil {
		t.Fatal("an invalid digest was accepted")
	}
	if _, err := m.Tag("r.test/app", "1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the tag of a refused manifest was recorded: %v", err)
	}
	if m.Linked("r.test/app", layer) || m.Linked("r.test/app", bad.Digest) {
		t.Fatal("the links of a refused manifest were recorded")
	}
	if _, ok := m.HasManifest("r.test/app", bad.Digest); ok {
		t.Fatal("a refused manifest is stored")
	}
	if imgs, err := m.Images(); err != nil || len(imgs) != 0 {
		t.Fatalf("images after refusals: %+v %v", imgs, err)
	}
}

func manifestRecords(t *testing.T, m storage.Metadata) {
	subj, subjRaw := manifest("the subject")
	rec, raw := manifest("annotated")
	rec.Size = 1 // the store counts the bytes itself
	rec.ArtifactType = "application/vnd.example+json"
	rec.Annotations = map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
	rec.Subject = subj.Digest
	rec.StoredAt = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := m.PutManifest("r.test/app", subj, subjRaw); err != nil {
		t.Fatal(err)
	}
	if err := m.PutManifest("r.test/app", rec, raw); err != nil {
		t.Fatal(err)
	}
	got, b, err := m.Manifest("r.test/app", rec.Digest)
	if err != nil || string(b) != string(raw) {
		t.Fatalf("manifest: %q %v", b, err)
	}
	if got.Size != int64(len(raw)) || got.ArtifactType != rec.ArtifactType || got.Subject != subj.Digest ||
		got.Annotations["org.opencontainers.image.created"] != "2026-01-01T00:00:00Z" || !got.StoredAt.Equal(rec.StoredAt) {
		t.Fatalf("record back: %+v", got)
	}
	has, ok := m.HasManifest("r.test/app", rec.Digest)
	if !ok || has.Subject != subj.Digest || has.Size != int64(len(raw)) {
		t.Fatalf("HasManifest: %+v %v", has, ok)
	}
	before := time.Now().Add(-time.Second)
	if got, _, _ := m.Manifest("r.test/app", subj.Digest); got.StoredAt.Before(before) || got.StoredAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("a record without StoredAt gets the time it was stored: %s", got.StoredAt)
	}
	if _, ok := m.HasManifest("r.test/app", digest.FromString("never")); ok {
		t.Fatal("HasManifest of a digest never stored")
	}
}

func byteOrder(t *testing.T, m storage.Metadata) {
	rec, raw := manifest("order")
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tag := range []string{"a", "B", "9", "10", "latest", "_x"} {
		if err := m.PutTaggedManifest("r.test/app", tag, at, rec, raw); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"10", "9", "B", "_x", "a", "latest"}
	if ts, err := m.Tags("r.test/app"); err != nil || !slices.Equal(ts, want) {
		t.Fatalf("tags: %v %v, want %v (byte order, not a locale's)", ts, err, want)
	}
	if ts, _ := m.TagsOf("r.test/app", rec.Digest); !slices.Equal(ts, want) {
		t.Fatalf("tags of the digest: %v, want %v", ts, want)
	}
	// Images and judgements come by repository, then digest; a repository whose name
	// extends another's comes after it.
	var ds []digest.Digest
	for _, repo := range []string{"r.test/a-b", "r.test/a", "r.test/B"} {
		r, b := manifest("order " + repo)
		ds = append(ds, r.Digest)
		if err := m.PutManifest(repo, r, b); err != nil {
			t.Fatal(err)
		}
		if err := m.PutJudgement(repo, r.Digest, []byte(repo)); err != nil {
			t.Fatal(err)
		}
		if err := m.PutVerdict(r.Digest, []byte(repo)); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := m.Images()
	if err != nil {
		t.Fatal(err)
	}
	var repos []string
	for _, img := range imgs {
		repos = append(repos, img.Repository)
	}
	if !slices.Equal(repos, []string{"r.test/B", "r.test/a", "r.test/a-b", "r.test/app"}) {
		t.Fatalf("images by repository: %v", repos)
	}
	var jr []string
	_ = m.Judgements(func(repo string, _ digest.Digest, _ []byte) error { jr = append(jr, repo); return nil })
	if !slices.Equal(jr, []string{"r.test/B", "r.test/a", "r.test/a-b"}) {
		t.Fatalf("judgements by repository: %v", jr)
	}
	var vd []digest.Digest
	_ = m.Verdicts(func(d digest.Digest, _ []byte) error { vd = append(vd, d); return nil })
	slices.Sort(ds)
	if !slices.Equal(vd, ds) {
		t.Fatalf("verdicts by digest: %v, want %v", vd, ds)
	}
}

func tagMoves(t *testing.T, m storage.Metadata) {
	one, oneRaw := manifest("one")
	two, twoRaw := manifest("two")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := m.PutTaggedManifest("r.test/app", "latest", t0, one, oneRaw); err != nil {
		t.Fatal(err)
	}
	if err := m.PutTaggedManifest("r.test/app", "latest", t0.Add(time.Hour), two, twoRaw); err != nil {
		t.Fatal(err)
	}
	tr, err := m.Tag("r.test/app", "latest")
	if err != nil || tr.Digest != two.Digest || !tr.FetchedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("moved tag: %+v %v", tr, err)
	}
	if ts, _ := m.TagsOf("r.test/app", one.Digest); len(ts) != 0 {
		t.Fatalf("the old digest keeps the tag: %v", ts)
	}
	if err := m.SetTag("r.test/app", "latest", one.Digest, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tr, _ := m.Tag("r.test/app", "latest"); tr.Digest != one.Digest {
		t.Fatalf("SetTag did not move the tag: %+v", tr)
	}
	if ts, _ := m.Tags("r.test/app"); !slices.Equal(ts, []string{"latest"}) {
		t.Fatalf("tags: %v", ts)
	}
	if ts, err := m.Tags("r.test/none"); err != nil || len(ts) != 0 {
		t.Fatalf("tags of an unknown repository: %v %v", ts, err)
	}
}

func referrerLifecycle(t *testing.T, m storage.Metadata) {
	subj, subjRaw := manifest("subj")
	other, otherRaw := manifest("other subject")
	for _, r := range []struct {
		rec storage.ManifestRecord
		raw []byte
	}{{subj, subjRaw}, {other, otherRaw}} {
		if err := m.PutManifest("r.test/app", r.rec, r.raw); err != nil {
			t.Fatal(err)
		}
	}
	var want []digest.Digest
	for i := range 3 {
		r, raw := manifest(fmt.Sprintf("referrer %d", i))
		r.Subject = subj.Digest
		r.ArtifactType = "application/vnd.example.sbom"
		if err := m.PutManifest("r.test/app", r, raw); err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Digest)
	}
	o, oRaw := manifest("refers to the other")
	o.Subject = other.Digest
	if err := m.PutManifest("r.test/app", o, oRaw); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	rs, err := m.Referrers("r.test/app", subj.Digest)
	if err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	for _, r := range rs {
		got = append(got, r.Digest)
		if r.ArtifactType != "application/vnd.example.sbom" || r.Size == 0 || r.MediaType == "" {
			t.Errorf("referrer descriptor: %+v", r)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("referrers: %v, want %v (by digest)", got, want)
	}
	if _, err := m.DeleteManifest("r.test/app", want[1]); err != nil {
		t.Fatal(err)
	}
	if rs, _ := m.Referrers("r.test/app", subj.Digest); len(rs) != 2 || rs[0].Digest != want[0] || rs[1].Digest != want[2] {
		t.Fatalf("referrers after deleting one: %+v", rs)
	}
	if rs, _ := m.Referrers("r.test/app", other.Digest); len(rs) != 1 || rs[0].Digest != o.Digest {
		t.Fatalf("referrers of the other subject: %+v", rs)
	}
	if rs, err := m.Referrers("r.test/app", digest.FromString("no such subject")); err != nil || len(rs) != 0 {
		t.Fatalf("referrers of an unknown subject: %+v %v", rs, err)
	}
}

func sharedOwners(t *testing.T, m storage.Metadata) {
	cfgA, cfgB, shared := digest.FromString("config a"), digest.FromString("config b"), digest.FromString("shared layer")
	a, aRaw := image(cfgA, shared)
	b, bRaw := image(cfgB, shared, digest.FromString("own layer"))
	for _, repo := range []string{"r.test/app", "r.test/other"} {
		if err := m.PutManifest(repo, a, aRaw); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.PutManifest("r.test/app", b, bRaw); err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{a.Digest, b.Digest}
	slices.Sort(want)
	if os, err := m.Owners("r.test/app", shared); err != nil || !slices.Equal(os, want) {
		t.Fatalf("owners of the shared layer: %v %v, want %v", os, err, want)
	}
	if os, _ := m.Owners("r.test/app", cfgB); !slices.Equal(os, []digest.Digest{b.Digest}) {
		t.Fatalf("owners of b's config: %v", os)
	}
	if _, err := m.DeleteManifest("r.test/app", a.Digest); err != nil {
		t.Fatal(err)
	}
	if os, _ := m.Owners("r.test/app", shared); !slices.Equal(os, []digest.Digest{b.Digest}) {
		t.Fatalf("owners after a went from r.test/app: %v", os)
	}
	if os, _ := m.Owners("r.test/other", shared); !slices.Equal(os, []digest.Digest{a.Digest}) {
		t.Fatalf("another repository's owners went too: %v", os)
	}
	// An index references manifests, not blobs: it owns none.
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"` + a.Digest.String() + `"}]}`)
	irec := storage.ManifestRecord{Descriptor: storage.Descriptor{MediaType: "application/vnd.oci.image.index.v1+json", Digest: digest.FromBytes(idx)}}
	if err := m.PutManifest("r.test/other", irec, idx, a.Digest); err != nil {
		t.Fatal(err)
	}
	if os, _ := m.Owners("r.test/other", a.Digest); len(os) != 0 {
		t.Fatalf("an index owns %v", os)
	}
	if !m.Linked("r.test/other", a.Digest) {
		t.Fatal("the index's manifests are linked to its repository")
	}
}

func unlink(t *testing.T, m storage.Metadata) {
	layer, kept := digest.FromString("gone"), digest.FromString("kept")
	for _, repo := range []string{"r.test/a", "r.test/b"} {
		for _, d := range []digest.Digest{layer, kept} {
			if err := m.Link(repo, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Link("r.test/a", layer); err != nil {
		t.Fatalf("linking twice: %v", err)
	}
	if err := m.Unlink(layer); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"r.test/a", "r.test/b"} {
		if m.Linked(repo, layer) || !m.Linked(repo, kept) {
			t.Fatalf("%s after unlink: the unlinked digest is still linked, or another went", repo)
		}
	}
	if err := m.Unlink(digest.FromString("never linked")); err != nil {
		t.Fatalf("unlinking a digest never linked: %v", err)
	}
}

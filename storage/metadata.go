package storage

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Metadata is everything the store keeps beside blob content: manifests and their
// exact bytes, tags with fetch times, links (which repository may see which digest),
// referrers, scan facts and reports by digest, judgements by repository and digest,
// last pulls, robots, baselines and the digests each replica holds in use. bbolt
// implements it embedded (the default), the storage/postgres package on a shared
// database; each must pass storagetest.Conformance.
//
// Keys given to PutJudgements and MarkPulled are PullKey(repository, digest). Times are
// kept to the microsecond at least. Listings come in byte order of their keys.
type Metadata interface {
	Tag(repo, tag string) (TagRecord, error)
	SetTag(repo, tag string, dgst digest.Digest, fetchedAt time.Time) error
	Tags(repo string) ([]string, error)
	TagsOf(repo string, dgst digest.Digest) ([]string, error)

	Link(repo string, dgst digest.Digest) error
	Linked(repo string, dgst digest.Digest) bool
	// Unlink forgets every repository's link to dgst: its content is gone.
	Unlink(dgst digest.Digest) error

	PutManifest(repo string, rec ManifestRecord, raw []byte, refs ...digest.Digest) error
	PutTaggedManifest(repo, tag string, fetchedAt time.Time, rec ManifestRecord, raw []byte, refs ...digest.Digest) error
	Manifest(repo string, dgst digest.Digest) (ManifestRecord, []byte, error)
	HasManifest(repo string, dgst digest.Digest) (ManifestRecord, bool)
	Referrers(repo string, subject digest.Digest) ([]Descriptor, error)
	Owners(repo string, blob digest.Digest) ([]digest.Digest, error)
	DeleteManifest(repo string, dgst digest.Digest) (orphaned bool, err error)
	Images() ([]Image, error)
	MarkPulled(pulls map[string]time.Time) error

	PutVerdict(dgst digest.Digest, rec []byte) error
	PutVerdictAndReport(dgst digest.Digest, rec, report []byte) error
	Verdict(dgst digest.Digest) ([]byte, error)
	Report(dgst digest.Digest) ([]byte, error)
	Verdicts(fn func(dgst digest.Digest, rec []byte) error) error

	PutJudgement(repo string, dgst digest.Digest, rec []byte) error
	PutJudgements(recs map[string][]byte) error
	Judgement(repo string, dgst digest.Digest) ([]byte, error)
	Judgements(fn func(repo string, dgst digest.Digest, rec []byte) error) error

	PutRobot(r Robot) error
	// AddRobot creates a robot whose name is not taken, or returns ErrExists: of
	// concurrent adds of one name (from any replica) exactly one succeeds.
	AddRobot(r Robot) error
	Robot(name string) (Robot, error)
	Robots() ([]Robot, error)
	DeleteRobot(name string) error

	PutBaseline(at time.Time, b []byte) error
	LatestBaseline() (time.Time, []byte, error)

	// PublishHolds replaces holder's set of digests in use with ds, held until until; a
	// collection on any replica spares what Holds lists.
	PublishHolds(holder string, ds []digest.Digest, until time.Time) error
	// Holds are the sets of every holder not expired at now, by holder.
	Holds(now time.Time) (map[string]HoldSet, error)

	// Writable checks that the metadata accepts writes (readiness).
	Writable() error
	Close() error
}

var _ Metadata = (*Store)(nil)

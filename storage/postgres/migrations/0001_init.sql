-- goldproxy metadata, as storage.Metadata describes it. Keys are text in the C collation:
-- listings come in byte order, as bbolt's do. Records the gate writes (scan facts,
-- reports, judgements, baselines) are bytea: the store keeps their exact bytes.

CREATE TABLE manifest_content (
	digest text COLLATE "C" PRIMARY KEY,
	raw    bytea NOT NULL
);

CREATE TABLE manifests (
	repo   text COLLATE "C" NOT NULL,
	digest text COLLATE "C" NOT NULL,
	record jsonb NOT NULL, -- storage.ManifestRecord
	PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_digest ON manifests (digest);

CREATE TABLE tags (
	repo       text COLLATE "C" NOT NULL,
	tag        text COLLATE "C" NOT NULL,
	digest     text COLLATE "C" NOT NULL,
	fetched_at timestamptz NOT NULL,
	PRIMARY KEY (repo, tag)
);
CREATE INDEX tags_digest ON tags (repo, digest);

CREATE TABLE links (
	repo   text COLLATE "C" NOT NULL,
	digest text COLLATE "C" NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX links_digest ON links (digest);

CREATE TABLE referrers (
	repo       text COLLATE "C" NOT NULL,
	subject    text COLLATE "C" NOT NULL,
	referrer   text COLLATE "C" NOT NULL,
	descriptor jsonb NOT NULL, -- storage.Descriptor
	PRIMARY KEY (repo, subject, referrer)
);

CREATE TABLE blob_owners (
	repo     text COLLATE "C" NOT NULL,
	blob     text COLLATE "C" NOT NULL,
	manifest text COLLATE "C" NOT NULL,
	PRIMARY KEY (repo, blob, manifest)
);

CREATE TABLE verdicts (
	digest text COLLATE "C" PRIMARY KEY,
	record bytea NOT NULL
);

CREATE TABLE reports (
	digest text COLLATE "C" PRIMARY KEY,
	report bytea NOT NULL
);

CREATE TABLE judgements (
	repo   text COLLATE "C" NOT NULL,
	digest text COLLATE "C" NOT NULL,
	record bytea NOT NULL,
	PRIMARY KEY (repo, digest)
);

CREATE TABLE last_pulled (
	repo   text COLLATE "C" NOT NULL,
	digest text COLLATE "C" NOT NULL,
	at     timestamptz NOT NULL,
	PRIMARY KEY (repo, digest)
);

CREATE TABLE robots (
	name   text COLLATE "C" PRIMARY KEY,
	record jsonb NOT NULL -- storage.Robot
);

CREATE TABLE baselines (
	at   timestamptz PRIMARY KEY,
	body bytea NOT NULL
);

-- Holds: the digests each replica is using (serving, ingesting, scanning, or pulled and
-- not yet in last_pulled), published every few seconds with an expiry, so that garbage
-- collection on the leader spares what the other replicas use. One row per replica
-- (holder); a row past its expiry holds nothing.

CREATE TABLE holds (
	holder  text COLLATE "C" PRIMARY KEY,
	until   timestamptz NOT NULL,
	digests text[] COLLATE "C" NOT NULL
);

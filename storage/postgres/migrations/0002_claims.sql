-- Claims: leases on work that must run once across replicas (a digest's scan). A claim
-- belongs to one replica (owner) until it expires; its holder renews it while the work
-- runs, so a replica that dies mid-work loses it within one lease and another takes over.

CREATE TABLE claims (
	key     text COLLATE "C" PRIMARY KEY,
	owner   text NOT NULL,
	expires timestamptz NOT NULL
);

-- Values: small records replicas share by name that are not storage.Metadata — the
-- policy in force, the scanner's layer analyses — each under a namespace.

CREATE TABLE shared_values (
	namespace text COLLATE "C" NOT NULL,
	key       text COLLATE "C" NOT NULL,
	value     bytea NOT NULL,
	PRIMARY KEY (namespace, key)
);

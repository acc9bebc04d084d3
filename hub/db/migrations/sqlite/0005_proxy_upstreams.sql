-- Pull-through cache, part 2: upstreams managed through the admin API, and cache bounds.
-- Upstreams from the config file are not stored here; the running set is the union.
-- Lists are JSON arrays. The password is stored as given (it must be sent upstream, so a
-- hash would not do); the admin API never returns it and nothing logs it.
CREATE TABLE proxy_upstreams (
    name                        TEXT PRIMARY KEY,
    url                         TEXT NOT NULL,
    aliases                     TEXT NOT NULL DEFAULT '[]',
    username                    TEXT NOT NULL DEFAULT '',
    password                    TEXT NOT NULL DEFAULT '',
    manifest_revalidate_seconds INTEGER NOT NULL,
    tenants                     TEXT NOT NULL DEFAULT '[]',
    anonymous_pull              INTEGER NOT NULL DEFAULT 0,
    max_size_bytes              INTEGER,
    ttl_days                    REAL,
    created_at                  REAL NOT NULL,
    updated_at                  REAL NOT NULL
) WITHOUT ROWID;

-- One row, bumped in the same transaction as every upstream change: replicas compare it
-- (a cheap primary-key read) to know when to reload the upstream set. No row means 0, so a
-- freshly migrated database stays empty for `daohub transfer`.
CREATE TABLE proxy_upstreams_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

-- When each cached manifest was last pulled, for least-recently-pulled eviction and the
-- TTL. Written at most once per few minutes per row, not on every pull. Goes with its
-- manifest.
CREATE TABLE proxy_pulls (
    repository_id INTEGER NOT NULL,
    digest        TEXT NOT NULL,
    pulled_at     REAL NOT NULL,
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX proxy_pulls_by_time ON proxy_pulls(pulled_at);

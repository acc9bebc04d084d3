-- Pull-through cache: when each cached tag was last confirmed upstream, so a tag is
-- revalidated (one HEAD) only after its upstream's interval, across restarts and replicas.
-- Cached manifests, tags and blob links themselves are ordinary rows of their repository.
CREATE TABLE proxy_tags (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag           TEXT NOT NULL,
    checked_at    REAL NOT NULL,
    PRIMARY KEY (repository_id, tag)
) WITHOUT ROWID;

-- App store catalog index: one row per tag that points at an app artifact (artifactType
-- application/vnd.docker.compose.project), written by the registry's push path. A row goes
-- with its tag and with its manifest (cascades), so every way a tag disappears (an OCI
-- delete, the admin API, a repository delete) unlists that version at once. Queries also
-- join the tag and compare digests, so a tag moved to another manifest never shows a stale row.
-- `document` is the JSON the catalog serves (metadata and compose files), so listing and
-- rendering read no blob storage; categories are '|a|b|' so one LIKE filters them.
CREATE TABLE app_versions (
    repository_id   INTEGER NOT NULL,
    tag             TEXT NOT NULL,
    digest          TEXT NOT NULL,
    app_key         TEXT NOT NULL,
    title           TEXT NOT NULL,
    summary         TEXT NOT NULL,
    categories      TEXT NOT NULL,
    version         TEXT NOT NULL,
    deprecated      INTEGER NOT NULL DEFAULT 0,
    document        TEXT NOT NULL,
    icon_digest     TEXT,
    icon_media_type TEXT,
    indexed_at      REAL NOT NULL,
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, tag) REFERENCES tags(repository_id, name) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX app_versions_by_digest ON app_versions(repository_id, digest);

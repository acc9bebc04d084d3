-- Repositories, content-addressed blobs, per-repository blob links (the tenant and
-- quota boundary), manifests with their exact bytes, tags, references and uploads.
CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL
);

CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    created_at    REAL NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    size          INTEGER NOT NULL,
    content       BLOB NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    created_at    REAL NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

CREATE TABLE manifest_references (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest    TEXT NOT NULL,
    child_kind      TEXT NOT NULL CHECK (child_kind IN ('blob', 'manifest')),
    PRIMARY KEY (repository_id, manifest_digest, child_kind, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_references_by_child ON manifest_references(repository_id, child_digest);

CREATE TABLE tags (
    repository_id INTEGER NOT NULL,
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    updated_at    REAL NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags(repository_id, digest);

CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    size          INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_by_updated ON uploads(updated_at);

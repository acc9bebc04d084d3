-- PostgreSQL twin of sqlite/0006_appstore.sql: the app store's catalog index.
CREATE TABLE app_versions (
    repository_id   bigint NOT NULL,
    tag             text COLLATE "C" NOT NULL,
    digest          text COLLATE "C" NOT NULL,
    app_key         text NOT NULL,
    title           text NOT NULL,
    summary         text NOT NULL,
    categories      text NOT NULL,
    version         text NOT NULL,
    deprecated      integer NOT NULL DEFAULT 0,
    document        text NOT NULL,
    icon_digest     text,
    icon_media_type text,
    indexed_at      double precision NOT NULL,
    PRIMARY KEY (repository_id, tag),
    FOREIGN KEY (repository_id, tag) REFERENCES tags(repository_id, name) ON DELETE CASCADE,
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX app_versions_by_digest ON app_versions(repository_id, digest);

-- PostgreSQL twin of sqlite/0005_proxy_upstreams.sql: upstreams managed through the admin
-- API, their change counter, and when each cached manifest was last pulled.
CREATE TABLE proxy_upstreams (
    name                        text COLLATE "C" PRIMARY KEY,
    url                         text NOT NULL,
    aliases                     text NOT NULL DEFAULT '[]',
    username                    text NOT NULL DEFAULT '',
    password                    text NOT NULL DEFAULT '',
    manifest_revalidate_seconds bigint NOT NULL,
    tenants                     text NOT NULL DEFAULT '[]',
    anonymous_pull              smallint NOT NULL DEFAULT 0,
    max_size_bytes              bigint,
    ttl_days                    double precision,
    created_at                  double precision NOT NULL,
    updated_at                  double precision NOT NULL
);

CREATE TABLE proxy_upstreams_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);

CREATE TABLE proxy_pulls (
    repository_id bigint NOT NULL,
    digest        text COLLATE "C" NOT NULL,
    pulled_at     double precision NOT NULL,
    PRIMARY KEY (repository_id, digest),
    FOREIGN KEY (repository_id, digest) REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX proxy_pulls_by_time ON proxy_pulls(pulled_at);

-- PostgreSQL twin of sqlite/0004_proxy.sql: when each cached tag was last confirmed upstream.
CREATE TABLE proxy_tags (
    repository_id bigint NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag           text COLLATE "C" NOT NULL,
    checked_at    double precision NOT NULL,
    PRIMARY KEY (repository_id, tag)
);

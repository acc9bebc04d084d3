-- PostgreSQL twin of sqlite/0008_server_state.sql: what the server decided once for this
-- registry (e.g. whether its first start published the seed app catalog).
CREATE TABLE server_state (
    name       text COLLATE "C" PRIMARY KEY,
    value      text NOT NULL,
    updated_at double precision NOT NULL
);

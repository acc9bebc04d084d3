-- What the server itself decided once for this registry and must remember across restarts and
-- replicas, by name: e.g. `appstore.first_start_seed` (whether the first start published the seed
-- app catalog). Not configuration, and not registry content.
CREATE TABLE server_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

-- Tenants, users, memberships, robots, signing keys, revoked refresh tokens, login
-- throttling and the audit log; repositories gain a visibility flag.
CREATE TABLE tenants (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL DEFAULT '',
    quota_bytes  INTEGER,
    created_at   REAL NOT NULL
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    is_admin            INTEGER NOT NULL DEFAULT 0,
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_at          REAL NOT NULL,
    password_changed_at REAL NOT NULL
);

CREATE TABLE memberships (
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
) WITHOUT ROWID;
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE robots (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    repositories TEXT NOT NULL,
    actions      TEXT NOT NULL,
    expires_at   REAL,
    revoked      INTEGER NOT NULL DEFAULT 0,
    created_at   REAL NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at  REAL NOT NULL,
    retired_at  REAL
) WITHOUT ROWID;

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE login_failures (
    key          TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    failures     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     REAL NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT
);

ALTER TABLE repositories ADD COLUMN public INTEGER NOT NULL DEFAULT 0;

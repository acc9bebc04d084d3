-- Sign-in with OpenID Connect (docs/sign-in.md): what a provider said of each account it
-- provisioned, personal CLI secrets, the pending browser sign-ins, and the identity providers
-- made through the admin API.

-- One row per account a provider vouches for, written at each sign-in: the provider's subject
-- (OIDC `sub`, never reused for another DaoHub name), and the display name, email and groups it
-- gave then. Tokens of OIDC users are granted from these groups (JSON array).
CREATE TABLE provider_accounts (
    username     TEXT PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    email        TEXT NOT NULL DEFAULT '',
    groups       TEXT NOT NULL DEFAULT '[]',
    signed_in_at REAL NOT NULL,
    UNIQUE (provider, subject)
) WITHOUT ROWID;

-- Personal CLI secrets (for docker login where the account has no password): the SHA-256 of the
-- generated secret (sha256:<hex>), never the secret. The id is the secret's public prefix.
CREATE TABLE cli_secrets (
    id           TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    last_used_at REAL
) WITHOUT ROWID;
CREATE INDEX cli_secrets_by_user ON cli_secrets(username, id);

-- A browser sign-in between the redirect to the provider and its callback: keyed by the SHA-256
-- of the `state`, bound to the browser's session nonce (hashed), taken (deleted) at the callback.
CREATE TABLE oidc_login_states (
    state_hash    TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    binding       TEXT NOT NULL,
    next_path     TEXT NOT NULL,
    expires_at    REAL NOT NULL
) WITHOUT ROWID;

-- Identity providers made through the admin API (those of the config file are not stored).
-- `settings` is the provider as JSON without its secret; `secret` is the client secret or bind
-- password as given (it must be sent to the provider, so a hash would not do): the API never
-- returns it and nothing logs it.
CREATE TABLE identity_providers (
    name       TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    settings   TEXT NOT NULL,
    secret     TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

-- Bumped with every change above: replicas reload the providers when it moves.
CREATE TABLE identity_providers_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

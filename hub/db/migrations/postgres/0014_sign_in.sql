-- PostgreSQL twin of sqlite/0014_sign_in.sql.
CREATE TABLE provider_accounts (
    username     text COLLATE "C" PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,
    provider     text COLLATE "C" NOT NULL,
    subject      text COLLATE "C" NOT NULL,
    display_name text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    groups       text NOT NULL DEFAULT '[]',
    signed_in_at double precision NOT NULL,
    UNIQUE (provider, subject)
);

CREATE TABLE cli_secrets (
    id           text COLLATE "C" PRIMARY KEY,
    username     text COLLATE "C" NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    last_used_at double precision
);
CREATE INDEX cli_secrets_by_user ON cli_secrets(username, id);

CREATE TABLE oidc_login_states (
    state_hash    text PRIMARY KEY,
    provider      text NOT NULL,
    nonce         text NOT NULL,
    code_verifier text NOT NULL,
    binding       text NOT NULL,
    next_path     text NOT NULL,
    expires_at    double precision NOT NULL
);

CREATE TABLE identity_providers (
    name       text COLLATE "C" PRIMARY KEY,
    type       text NOT NULL,
    settings   text NOT NULL,
    secret     text NOT NULL DEFAULT '',
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);

CREATE TABLE identity_providers_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);

-- PostgreSQL twin of sqlite/0007_revocable_credentials.sql.
CREATE TABLE refresh_tokens (
    jti          text COLLATE "C" PRIMARY KEY,
    subject      text COLLATE "C" NOT NULL,
    client_id    text NOT NULL,
    user_agent   text NOT NULL DEFAULT '',
    issued_at    double precision NOT NULL,
    expires_at   double precision NOT NULL,
    last_used_at double precision,
    revoked_at   double precision
);
CREATE INDEX refresh_tokens_by_subject ON refresh_tokens(subject, jti);

CREATE TABLE web_sessions (
    id_hash    text PRIMARY KEY,
    username   text COLLATE "C" NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    revoked_at double precision
);
CREATE INDEX web_sessions_by_user ON web_sessions(username);

-- Credentials that can be taken back: every refresh token issued (redeemed only while its row
-- says it is live) and every signed-in web session (the cookie names its row by a random id,
-- stored here hashed). A password change, disabling or deleting a user revokes both kinds for
-- that user; deleting or revoking a robot revokes its refresh tokens. `subject` is the token's
-- `sub`: a username or robot$<tenant>+<name>.
CREATE TABLE refresh_tokens (
    jti          TEXT PRIMARY KEY,
    subject      TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_agent   TEXT NOT NULL DEFAULT '',
    issued_at    REAL NOT NULL,
    expires_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_by_subject ON refresh_tokens(subject, jti);

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
) WITHOUT ROWID;
CREATE INDEX web_sessions_by_user ON web_sessions(username);


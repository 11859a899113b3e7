-- Single sign-on through upstream OpenID Connect providers; sign-ins that
-- can be listed, idle out and be revoked; a first password that must be
-- changed (SQLite). Kept in lockstep with migrations/postgres.

CREATE TABLE sso_providers (
    id                   TEXT PRIMARY KEY,
    -- JSON: display name, issuer, client id, scopes, claims, role mapping.
    settings             TEXT NOT NULL,
    -- The client secret sealed under the data key; NULL for none.
    sealed_client_secret TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- Which user an upstream account (issuer's subject) signs in as. Matching
-- is by subject, never by a name the provider lets its users choose.
CREATE TABLE sso_identities (
    provider_id TEXT NOT NULL REFERENCES sso_providers (id) ON DELETE CASCADE,
    subject     TEXT NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (provider_id, subject)
);
-- One upstream account per user: a second one never becomes another way in.
CREATE UNIQUE INDEX sso_identities_user ON sso_identities (user_id);

-- Answers already used, so that a pending sign-in's cookie serves once
-- (HMAC of its state; kept until the sign-in would have expired anyway).
CREATE TABLE sso_spent_states (
    state_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);

ALTER TABLE user_sessions ADD COLUMN last_seen_at INTEGER;
ALTER TABLE user_sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE user_sessions ADD COLUMN client_addr TEXT;
CREATE INDEX user_sessions_user ON user_sessions (user_id);

ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;

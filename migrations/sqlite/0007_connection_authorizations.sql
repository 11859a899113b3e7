-- Pending authorizations of connections at their providers (SQLite). Kept
-- in lockstep with migrations/postgres.

CREATE TABLE connection_authorizations (
    -- HMAC of the state parameter.
    state_hash    TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- PKCE verifier, AES-256-GCM under the data key; NULL without PKCE.
    code_verifier TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);

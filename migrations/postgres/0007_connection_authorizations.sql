-- Pending authorizations of connections at their providers (PostgreSQL). Kept
-- in lockstep with migrations/sqlite.

CREATE TABLE connection_authorizations (
    -- HMAC of the state parameter.
    state_hash    TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- PKCE verifier, AES-256-GCM under the data key; NULL without PKCE.
    code_verifier TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);

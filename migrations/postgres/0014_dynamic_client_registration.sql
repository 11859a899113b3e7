-- Dynamic client registration (RFC 7591/7592) and initial access tokens
-- (postgres; kept in lockstep with the other dialect).

-- 'admin' (registered through /oauth/v1/register/) or 'dynamic' (RFC 7591).
ALTER TABLE oauth_clients ADD COLUMN registration TEXT NOT NULL DEFAULT 'admin';
-- The client metadata as registered (JSON object), answered by RFC 7592 reads.
ALTER TABLE oauth_clients ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
-- HMAC-SHA-256 of the RFC 7592 registration access token (dynamic clients).
ALTER TABLE oauth_clients ADD COLUMN registration_token_hash TEXT;
-- When a user first approved the client (unix microseconds): dynamic
-- clients never approved are capped in number and expire.
ALTER TABLE oauth_clients ADD COLUMN first_authorized_at BIGINT;
CREATE INDEX oauth_clients_pending ON oauth_clients (registration, first_authorized_at);

-- Admin-issued tokens that allow a dynamic registration (RFC 7591 §3) when
-- keyward.oauth.dynamic_registration is initial_access_token.
CREATE TABLE initial_access_tokens (
    token_hash TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    uses_left  BIGINT NOT NULL
);

-- Credentials for agents (PostgreSQL; kept in lockstep with migrations/sqlite).
-- An M2M client an admin allowed to exchange a user's access token for the
-- user's connection tokens (RFC 8693).
ALTER TABLE m2m_clients ADD COLUMN token_exchange BIGINT NOT NULL DEFAULT 0;
-- When a connection's refresh token dies (unix milliseconds), from the
-- outbound client's refresh_token_lifetime_ms; NULL: never, or unknown.
ALTER TABLE connections ADD COLUMN refresh_expires_at BIGINT;
-- The agent (M2M client id) a connect link was made for, which the owner
-- is shown and must confirm; NULL when the owner started it.
ALTER TABLE connection_authorizations ADD COLUMN requested_by TEXT;
-- Access tokens of a user issued before this (unix seconds) are
-- refused: set when the user's credentials end (disabled, new password),
-- so tokens that belong to no grant (ID-JAG) end with them too.
ALTER TABLE users ADD COLUMN tokens_not_before BIGINT;

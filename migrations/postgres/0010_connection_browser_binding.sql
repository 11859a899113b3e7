-- A connection's authorization is bound to the browser that starts it (PostgreSQL).
-- Kept in lockstep with migrations/sqlite.

ALTER TABLE connection_authorizations ADD COLUMN provider_url TEXT;
ALTER TABLE connection_authorizations ADD COLUMN browser_hash TEXT;

-- Connections: a user's link to another system through an outbound client
-- (PostgreSQL). Kept in lockstep with migrations/sqlite.

CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    outbound_client_id TEXT NOT NULL REFERENCES outbound_clients (id) ON DELETE CASCADE,
    user_id            BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    status             TEXT NOT NULL,
    -- The provider's error when a refresh failed for good.
    status_detail      TEXT,
    -- Both tokens AES-256-GCM under the data key, associated data
    -- "connection:<id>:access_token" / ":refresh_token".
    access_token       TEXT,
    refresh_token      TEXT,
    -- Unix milliseconds.
    obtained_at        BIGINT,
    access_expires_at  BIGINT,
    -- Only the holder of an unexpired lease talks to the provider: a refresh
    -- happens once however many callers or nodes ask.
    lease_until        BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX connections_user ON connections (user_id);

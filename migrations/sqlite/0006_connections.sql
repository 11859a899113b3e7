-- Connections: a user's link to another system through an outbound client
-- (SQLite). Kept in lockstep with migrations/postgres.

CREATE TABLE connections (
    id                 TEXT PRIMARY KEY,
    outbound_client_id TEXT NOT NULL REFERENCES outbound_clients (id) ON DELETE CASCADE,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    status             TEXT NOT NULL,
    -- The provider's error when a refresh failed for good.
    status_detail      TEXT,
    -- Both tokens AES-256-GCM under the data key, associated data
    -- "connection:<id>:access_token" / ":refresh_token".
    access_token       TEXT,
    refresh_token      TEXT,
    -- Unix milliseconds.
    obtained_at        INTEGER,
    access_expires_at  INTEGER,
    -- Only the holder of an unexpired lease talks to the provider: a refresh
    -- happens once however many callers or nodes ask.
    lease_until        INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX connections_user ON connections (user_id);

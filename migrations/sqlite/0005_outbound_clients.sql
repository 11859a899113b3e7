-- Outbound OAuth clients: other systems' OAuth apps (SQLite). Kept in
-- lockstep with migrations/postgres.

CREATE TABLE outbound_clients (
    id            TEXT PRIMARY KEY,
    -- Everything but the secret, as JSON (the API's settings object).
    settings      TEXT NOT NULL,
    -- AES-256-GCM under the data key, associated data
    -- "outbound_client:<id>:client_secret"; NULL when none was given.
    client_secret TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

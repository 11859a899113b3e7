-- Data products and their data-warehouse credentials (SQLite). Kept in
-- lockstep with migrations/postgres.

CREATE TABLE data_products (
    dp_id      TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    -- The warehouse as JSON: {"kind": "postgresql", "host", "port", "database"}; never credentials.
    warehouse  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE warehouse_credentials (
    -- "user:<id>" or "client:<client_id>": whose credentials.
    principal  TEXT NOT NULL,
    dp_id      TEXT NOT NULL REFERENCES data_products (dp_id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    username   TEXT NOT NULL,
    -- AES-256-GCM under the data key, associated data
    -- "warehouse_credential:<principal>:<dp_id>".
    password   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (principal, dp_id)
);

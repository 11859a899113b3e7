-- Machine-to-machine clients, JWT signing keys, revoked JWT ids (SQLite).
-- Kept in lockstep with migrations/postgres.

CREATE TABLE m2m_clients (
    client_id                  TEXT PRIMARY KEY,
    name                       TEXT NOT NULL,
    role                       TEXT NOT NULL,
    access_token_duration      INTEGER NOT NULL,
    -- HMAC-SHA-256 of the secret; the previous one verifies until its expiry.
    secret_hash                TEXT NOT NULL,
    previous_secret_hash       TEXT,
    previous_secret_expires_at INTEGER,
    secret_rotated_at          INTEGER,
    disabled_at                INTEGER,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    -- PKCS#8, AES-256-GCM under the master key, associated data "signing_key:<kid>".
    private_key  TEXT NOT NULL,
    -- 1 for the one key that signs, NULL for the others (UNIQUE admits many NULLs).
    active       INTEGER UNIQUE CHECK (active = 1),
    created_at   INTEGER NOT NULL,
    -- Published and trusted until then; NULL while active.
    retire_after INTEGER
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

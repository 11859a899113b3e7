-- Machine-to-machine clients, JWT signing keys, revoked JWT ids (PostgreSQL).
-- Kept in lockstep with migrations/sqlite.

CREATE TABLE m2m_clients (
    client_id                  TEXT PRIMARY KEY,
    name                       TEXT NOT NULL,
    role                       TEXT NOT NULL,
    access_token_duration      BIGINT NOT NULL,
    -- HMAC-SHA-256 of the secret; the previous one verifies until its expiry.
    secret_hash                TEXT NOT NULL,
    previous_secret_hash       TEXT,
    previous_secret_expires_at BIGINT,
    secret_rotated_at          BIGINT,
    disabled_at                BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    -- PKCS#8, AES-256-GCM under the master key, associated data "signing_key:<kid>".
    private_key  TEXT NOT NULL,
    -- 1 for the one key that signs, NULL for the others (UNIQUE admits many NULLs).
    active       BIGINT UNIQUE CHECK (active = 1),
    created_at   BIGINT NOT NULL,
    -- Published and trusted until then; NULL while active.
    retire_after BIGINT
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

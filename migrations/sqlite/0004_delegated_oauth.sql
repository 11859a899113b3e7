-- Delegated OAuth: clients, browser sessions, consents, authorization codes,
-- grants (token families) and their refresh tokens (SQLite). Kept in
-- lockstep with migrations/postgres.

CREATE TABLE oauth_clients (
    client_id              TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    -- JSON array of strings.
    redirect_uris          TEXT NOT NULL,
    client_type            TEXT NOT NULL CHECK (client_type IN ('confidential', 'public')),
    -- HMAC-SHA-256 of the secret; NULL for public clients.
    secret_hash            TEXT,
    refresh_token_lifetime INTEGER NOT NULL,
    access_token_lifetime  INTEGER NOT NULL,
    pkce_enabled           INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

CREATE TABLE user_sessions (
    -- HMAC of the session cookie's value.
    id_hash    TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE oauth_consents (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    -- The granted scopes, sorted and space-separated.
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, scope)
);

-- A family: every token that descends from one authorization code.
CREATE TABLE oauth_grants (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    -- JSON array of resource indicators (the tokens' audience).
    resources  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE oauth_authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    resources      TEXT NOT NULL,
    code_challenge TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    grant_id       INTEGER REFERENCES oauth_grants (id) ON DELETE CASCADE
);

CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   INTEGER NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    -- The response that replaced this token, AES-256-GCM under the master
    -- key, kept only for the grace window (a concurrent duplicate refresh
    -- gets the same pair).
    successor  TEXT,
    revoked_at INTEGER
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens (grant_id);

-- JWT ids issued within a grant, so that revoking the grant revokes them.
CREATE TABLE oauth_grant_jtis (
    jti        TEXT PRIMARY KEY,
    grant_id   INTEGER NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX oauth_grant_jtis_grant ON oauth_grant_jtis (grant_id);

-- Protected resources an admin declares (RFC 8707 resource indicators with
-- the scopes they understand; with an upstream URL, served by keyward's
-- gateway), and the resources a remembered consent was given for
-- (postgres; kept in lockstep with the other dialect).

CREATE TABLE protected_resources (
    name            TEXT PRIMARY KEY,
    -- The resource indicator (RFC 8707), normalized; tokens' aud.
    resource        TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    -- JSON array of {"name", "description"}.
    scopes          TEXT NOT NULL,
    -- JSON array of scope names every gateway request needs.
    required_scopes TEXT NOT NULL,
    -- Where the gateway sends requests; NULL when keyward does not serve it.
    upstream_url    TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- JSON array of the resource indicators the consent covers, sorted.
ALTER TABLE oauth_consents ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';

-- 'on_request' (a refresh token only when the app asks for offline_access)
-- or 'always' (the client was registered for refresh tokens: offline_access
-- is added to its requests, and the consent page shows it).
ALTER TABLE oauth_clients ADD COLUMN offline_access TEXT NOT NULL DEFAULT 'on_request';

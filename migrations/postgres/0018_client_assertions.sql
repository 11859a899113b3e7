-- private_key_jwt client assertions (RFC 7523) authenticate once: their
-- jti is kept, per client, until the assertion expires.
CREATE TABLE spent_client_assertions (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX spent_client_assertions_expires ON spent_client_assertions (expires_at);

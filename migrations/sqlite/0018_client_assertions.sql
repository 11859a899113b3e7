-- private_key_jwt client assertions (RFC 7523) authenticate once: a keyed
-- hash of (client, jti) is kept until the assertion can no longer be
-- accepted. Rows are of fixed size, and counted per document host, so
-- that whoever hosts documents cannot fill the database.
CREATE TABLE spent_client_assertions (
    assertion_hash TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX spent_client_assertions_host ON spent_client_assertions (host, expires_at);
CREATE INDEX spent_client_assertions_expires ON spent_client_assertions (expires_at);

-- Retention: the purge job deletes audit records, and refresh and access
-- tokens, older than the retention settings; these indexes find them.
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX api_access_tokens_expires ON api_access_tokens (expires_at);
CREATE INDEX oauth_refresh_tokens_expires ON oauth_refresh_tokens (expires_at);

-- M2M clients a server admin marks as services (PostgreSQL). Kept in lockstep
-- with migrations/sqlite. Services may read connection tokens and
-- stored credentials for the platform's tools.

ALTER TABLE m2m_clients ADD COLUMN is_service BIGINT NOT NULL DEFAULT 0;

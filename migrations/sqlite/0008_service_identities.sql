-- M2M clients a server admin marks as services (SQLite). Kept in lockstep
-- with migrations/postgres. Services may read connection tokens and
-- stored credentials for the platform's tools.

ALTER TABLE m2m_clients ADD COLUMN is_service INTEGER NOT NULL DEFAULT 0;

-- Disabling an M2M client ends the tokens it holds for good: tokens issued
-- at or before this time (unix seconds) are refused even after the client
-- is enabled again (postgres; kept in lockstep with the other dialect).

ALTER TABLE m2m_clients ADD COLUMN tokens_not_before BIGINT;

-- When an outbound client last changed where its secret and its
-- connections' tokens go (endpoints or secret; unix microseconds): a token
-- fetched under an older version is not stored, and a lease is taken only
-- under the current one (sqlite; kept in lockstep with the other dialect).

ALTER TABLE outbound_clients ADD COLUMN endpoints_version BIGINT NOT NULL DEFAULT 0;

-- A pending connection authorization keeps only the HMAC of its state: the
-- provider URL (which carried the state itself) is built when the owner's
-- browser leaves, and never stored (sqlite; kept in lockstep with the other
-- dialect).

ALTER TABLE connection_authorizations DROP COLUMN provider_url;

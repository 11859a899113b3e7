-- Networks an account signed in from with its password (SQLite; kept in
-- lockstep with migrations/postgres). A network that did, recently, passes the
-- account-wide sign-in lock, so guesses spread over many addresses cannot
-- lock the owner out where they usually sign in. Keys as login_throttle's:
-- account "user:<name>", network "<IPv4 address>" or "<IPv6 /64>".
CREATE TABLE known_sign_in_networks (
    account     TEXT NOT NULL,
    network     TEXT NOT NULL,
    -- µs; the row is forgotten (and purged) after this.
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (account, network)
);
CREATE INDEX known_sign_in_networks_expiry ON known_sign_in_networks (expires_at);

-- Failed-login counters shared by every node (PostgreSQL). Kept in lockstep
-- with migrations/sqlite. Keys: "addr:<ip>", "user:<name>",
-- "pair:<name>|<ip>".

CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,
    failures        BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until    BIGINT NOT NULL
);

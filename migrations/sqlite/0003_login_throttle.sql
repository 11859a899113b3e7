-- Failed-login counters shared by every node (SQLite). Kept in lockstep
-- with migrations/postgres. Keys: "addr:<ip>", "user:<name>",
-- "pair:<name>|<ip>".

CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL
);

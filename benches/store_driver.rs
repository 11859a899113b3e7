//! Does sqlx's `Any` driver cost keyward anything on its hot paths? The two
//! statements the token and introspection endpoints send (the revocation
//! lookup of a JWT id, and one audit row), timed through an `AnyPool` and
//! through the typed `SqlitePool` / `PgPool` on the same database.
//!
//!     cargo bench --bench store_driver                 # SQLite only
//!     KEYWARD_TEST_POSTGRES_URL=postgres://… cargo bench --bench store_driver
//!
//! Prints one line per driver and statement: statements per second on one
//! connection, sequentially (the latency a request pays), best of 3 runs.

use sqlx::{Any, AnyPool, Executor, Pool, Postgres, Sqlite};
use std::time::Instant;

const N: usize = 20_000;

/// Runs both statements `N` times on `$pool`, best of 3, and prints the rates.
macro_rules! measure {
    ($label:expr, $db:ty, $pool:expr, $lookup:expr, $insert:expr) => {
        for (what, sql) in [("revocation lookup", $lookup), ("audit insert", $insert)] {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let started = Instant::now();
                for i in 0..N {
                    let q = sqlx::query::<$db>(sql).bind(format!("jti-{i}"));
                    let q = if sql.contains("$2") { q.bind(i as i64) } else { q };
                    q.execute($pool).await.expect("statement runs");
                }
                best = best.min(started.elapsed().as_secs_f64());
            }
            println!("{:<22} {:<18} {:>8.0} statements/s", $label, what, N as f64 / best);
        }
    };
}

async fn setup(url: &str) {
    let pool = AnyPool::connect(url).await.expect("connect");
    for sql in [
        "DROP TABLE IF EXISTS bench_revoked",
        "DROP TABLE IF EXISTS bench_audit",
        "CREATE TABLE bench_revoked (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)",
        "CREATE TABLE bench_audit (action TEXT NOT NULL, at BIGINT NOT NULL)",
    ] {
        pool.execute(sql).await.expect("setup");
    }
    pool.close().await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    sqlx::any::install_default_drivers();
    let lookup = "SELECT 1 FROM bench_revoked WHERE jti = $1";
    let insert = "INSERT INTO bench_audit (action, at) VALUES ($1, $2)";
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    setup(&sqlite).await;
    let any: Pool<Any> = sqlx::pool::PoolOptions::new().max_connections(1).connect(&sqlite).await.unwrap();
    measure!("sqlite via Any", Any, &any, lookup, insert);
    any.close().await;
    let typed: Pool<Sqlite> =
        sqlx::pool::PoolOptions::new().max_connections(1).connect(&sqlite).await.unwrap();
    measure!("sqlite typed", Sqlite, &typed, lookup, insert);
    typed.close().await;
    if let Ok(pg) = std::env::var("KEYWARD_TEST_POSTGRES_URL") {
        setup(&pg).await;
        let any: Pool<Any> = sqlx::pool::PoolOptions::new().max_connections(1).connect(&pg).await.unwrap();
        measure!("postgres via Any", Any, &any, lookup, insert);
        any.close().await;
        let typed: Pool<Postgres> =
            sqlx::pool::PoolOptions::new().max_connections(1).connect(&pg).await.unwrap();
        measure!("postgres typed", Postgres, &typed, lookup, insert);
        typed.close().await;
        let cleanup = AnyPool::connect(&pg).await.unwrap();
        cleanup.execute("DROP TABLE bench_revoked; DROP TABLE bench_audit").await.unwrap();
    }
}

//! Storage: one interface ([`Store`]) over SQLite and PostgreSQL, kept per
//! aggregate: each file below holds one concept's records and its SQL
//! (`users.rs`, `api_tokens.rs`, `m2m_clients.rs`, `delegated.rs`, `grants.rs`,
//! `keys.rs`, `settings.rs`, `audit.rs`, `connections.rs`, `vault.rs`,
//! `throttle.rs`, `registration.rs`, `resources.rs`, `sessions.rs`, `sso.rs`),
//! all of them inherent methods of the one [`Store`]; `invalidation.rs` says
//! what a write announces to the other nodes.
//!
//! The store keeps what the domain decides; it never decides anything itself
//! (no validation, no policy), except the integrity rules that must be atomic
//! with a write (uniqueness, "never remove the last server admin").
//! Every write that is security-relevant takes its [`AuditEvent`] and commits
//! both in one transaction, so no change exists without its audit record.

/// The values a statement binds, in order (`$1`, `$2`, …), like rusqlite's
/// `params!`: `exec(conn, SQL, params![id, now])`, or `params![…]?` where a
/// query takes the arguments themselves.
macro_rules! params {
    ($($value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut args = sqlx::any::AnyArguments::default();
        let added: Result<(), sqlx::error::BoxDynError> = (|| {
            $(sqlx::Arguments::add(&mut args, $value)?;)*
            Ok(())
        })();
        added.map(|()| args).map_err(sqlx::Error::Encode)
    }};
}

/// Says which table a row type is read from, and with which columns.
macro_rules! table {
    ($row:ty, $table:literal, $columns:expr) => {
        impl super::Table for $row {
            const TABLE: &str = $table;
            const COLUMNS: &str = $columns;
        }
    };
}

mod api_tokens;
mod audit;
mod connections;
mod delegated;
mod grants;
mod invalidation;
mod keys;
mod m2m_clients;
mod registration;
mod resources;
mod sessions;
mod settings;
mod sso;
mod throttle;
mod users;
mod vault;

pub use api_tokens::*;
pub use audit::*;
pub use connections::*;
pub use delegated::*;
pub use grants::*;
pub use invalidation::*;
pub use keys::*;
pub use m2m_clients::*;
pub use sessions::*;
pub use sso::*;
pub use users::*;
pub use vault::*;

use crate::domain::audit::AuditEvent;
use crate::domain::{now, to_micros};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("this would leave no active server_admin")]
    LastServerAdmin,
    #[error("at most {0} may be active at once; revoke some first")]
    LimitReached(i64),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// PostgreSQL SQLSTATEs of a database that cannot serve now but may soon:
/// lost or refused connections, shutdown, crash, recovery, too many
/// connections, a failover's read-only standby, a cancelled statement,
/// serialization and deadlock failures. (Not 08P01 or 57P04, which a bug
/// or a dropped database also raise.)
const OUTAGE_CODES: &[&str] = &[
    "08000", "08001", "08003", "08004", "08006", "57P01", "57P02", "57P03", "57P05", "53300", "53400",
    "25006", "57014", "40001", "40P01",
];

impl StoreError {
    /// Whether the database could not be reached or used at all (a lost
    /// connection, no connection within the pool's deadline, a server
    /// shutting down): the request may succeed later, and says nothing
    /// about what it asked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    OUTAGE_CODES.contains(&c.as_ref()) || {
                        // SQLite: busy, locked, I/O, full, cannot open (the
                        // primary result code is the low byte).
                        c.parse::<i32>().is_ok_and(|n| [5, 6, 10, 13, 14].contains(&(n & 0xff)))
                    }
                }),
                _ => false,
            },
            _ => false,
        }
    }
}

/// For rows read as they are stored (`TryFrom<T> for T` cannot fail).
impl From<std::convert::Infallible> for StoreError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Per-connection SQLite settings: WAL for concurrent readers, FULL sync so a
/// commit survives power loss (a token is handed out only after it), foreign
/// keys on, and a busy timeout instead of immediate SQLITE_BUSY.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Where the change listener's own connection goes (PostgreSQL).
    notify_url: String,
    /// Where this node's heartbeats go: the database its writes go to.
    url: String,
    /// Told of this node's own announced changes as soon as they commit
    /// (other nodes hear them through the listener, a moment later).
    local_changes: std::sync::OnceLock<InvalidationSink>,
}

/// The PostgreSQL notification channel of cache invalidations.
const INVALIDATION_CHANNEL: &str = "keyward_invalidations";

/// What every node sends on the channel every `HEARTBEAT_INTERVAL` (with
/// its own mark after the colon), so that a listener that hears nothing for
/// `HEARTBEAT_DEADLINE` knows its connection stopped delivering, even when
/// its socket looks open (a NAT or firewall that forgot it drops packets
/// without a word). Caches are trusted only once the listener heard this
/// node's own heartbeat: proof that it hears the database the node writes.
const HEARTBEAT: &str = "heartbeat:";
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(6);

/// Tells this node's caches of an announced change when dropped.
struct TellOnDrop<'a> {
    sink: Option<&'a InvalidationSink>,
    what: Option<&'a str>,
}

impl Drop for TellOnDrop<'_> {
    fn drop(&mut self) {
        if let (Some(sink), Some(what)) = (self.sink, self.what) {
            sink(Invalidation::of(what));
        }
    }
}

/// What [`params!`] makes.
type Params = Result<sqlx::any::AnyArguments, sqlx::Error>;

/// Runs one statement; how many rows it touched.
async fn exec<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    sql: impl sqlx::SqlSafeStr,
    params: Params,
) -> StoreResult<u64> {
    Ok(sqlx::query_with(sql, params?).execute(executor).await?.rows_affected())
}

/// Runs one statement that must touch a row: `NotFound` when it touched none.
async fn exec_one<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    sql: impl sqlx::SqlSafeStr,
    params: Params,
) -> StoreResult<()> {
    if exec(executor, sql, params).await? == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// A type a statement's rows are read as (`#[derive(FromRow)]`, a tuple).
trait Row: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin {}
impl<R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin> Row for R {}

/// What a row of type `R` becomes for the layers above (or `R` itself).
trait Record<R>: TryFrom<R, Error: Into<StoreError>> {}
impl<R, T: TryFrom<R, Error: Into<StoreError>>> Record<R> for T {}

/// Every row `sql` finds, as records.
async fn find_all<'c, R: Row, T: Record<R>>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    sql: impl sqlx::SqlSafeStr,
    params: Params,
) -> StoreResult<Vec<T>> {
    let rows: Vec<R> = sqlx::query_as_with(sql, params?).fetch_all(executor).await?;
    rows.into_iter().map(|row| T::try_from(row).map_err(Into::into)).collect()
}

/// The row `sql` finds by a unique key (or a write's `RETURNING`), if any.
async fn find<'c, R: Row, T: Record<R>>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    sql: impl sqlx::SqlSafeStr,
    params: Params,
) -> StoreResult<Option<T>> {
    Ok(find_all::<R, T>(executor, sql, params).await?.into_iter().next())
}

/// A row type read whole from one table, so that a reader writes only its
/// condition: `select::<UserRow, _>(pool, "WHERE id = $1", params![id])`.
trait Table: Row {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
}

/// The rows of `R`'s table that `clause` (`WHERE …`, `ORDER BY …`) picks, as
/// records.
async fn select<'c, R: Table, T: Record<R>>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    clause: &str,
    params: Params,
) -> StoreResult<Vec<T>> {
    let sql = format!("SELECT {} FROM {} {clause}", R::COLUMNS, R::TABLE);
    find_all::<R, T>(executor, sqlx::AssertSqlSafe(sql), params).await
}

/// The row of `R`'s table that `clause` picks by a unique key, if any.
async fn select_one<'c, R: Table, T: Record<R>>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    clause: &str,
    params: Params,
) -> StoreResult<Option<T>> {
    Ok(select::<R, T>(executor, clause, params).await?.into_iter().next())
}

/// `Conflict(what)` for a unique violation, any other error as it is.
fn conflict<E: Into<StoreError>>(what: &'static str) -> impl Fn(E) -> StoreError {
    move |e| match e.into() {
        StoreError::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            StoreError::Conflict(what)
        }
        other => other,
    }
}

/// The stored form of an event's detail: a JSON object, `{}` when empty.
fn detail_text(event: &AuditEvent) -> String {
    if event.detail.is_null() { "{}".to_string() } else { event.detail.to_string() }
}

async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> StoreResult<()> {
    let detail = detail_text(event);
    exec(
        &mut *conn,
        "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![
            to_micros(now()),
            event.actor.to_string(),
            event.action,
            event.target.clone(),
            event.outcome.as_str(),
            event.client_addr.clone(),
            detail,
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Connects, configures and migrates. `url` is `sqlite://PATH?mode=rwc` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "database URL must start with sqlite:, postgres:// or postgresql://".into(),
            )));
        };
        let max = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            // A SQLite connection is a file handle that cannot go stale:
            // pinging it before each use was one more hand-off to its
            // thread per query. A PostgreSQL one can (a restarted server,
            // a dropped socket), so it is still tested.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            notify_url: url.to_string(),
            url: url.to_string(),
            local_changes: std::sync::OnceLock::new(),
        })
    }

    /// A write transaction. SQLite's must take the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred one that reads and then writes fails
    /// with SQLITE_BUSY when another writer got there first.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// A write of one statement (see [`Store::write`]); how many rows it
    /// touched.
    async fn write_statement(
        &self,
        event: AuditEvent,
        announce: Option<&str>,
        sql: impl sqlx::SqlSafeStr,
        params: Params,
    ) -> StoreResult<u64> {
        self.write(event, announce, async |tx, _| exec(&mut *tx, sql, params).await).await
    }

    /// A write of one statement that must touch a row: `NotFound` when it
    /// touched none.
    async fn write_one(
        &self,
        event: AuditEvent,
        announce: Option<&str>,
        sql: impl sqlx::SqlSafeStr,
        params: Params,
    ) -> StoreResult<()> {
        self.write(event, announce, async |tx, _| exec_one(&mut *tx, sql, params).await).await
    }

    /// The one shape of a write: in a write transaction, `change` runs (and
    /// may complete the event, say with the id it created), then `announce`
    /// (if any) goes to every node's cache, then `event` is recorded, and all
    /// of it commits together. A write cannot forget its audit record or its
    /// invalidation.
    async fn write<T>(
        &self,
        event: AuditEvent,
        announce: Option<&str>,
        change: impl AsyncFnOnce(&mut AnyConnection, &mut AuditEvent) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.write_if(event, announce, async |tx, event| Ok(Some(change(tx, event).await?)))
            .await?
            .ok_or_else(|| StoreError::Corrupt("a write that always changes changed nothing".into()))
    }

    /// [`Store::write`] for a change that may find nothing to do: `None`
    /// rolls the transaction back, and nothing is announced or recorded.
    async fn write_if<T>(
        &self,
        mut event: AuditEvent,
        announce: Option<&str>,
        change: impl AsyncFnOnce(&mut AnyConnection, &mut AuditEvent) -> StoreResult<Option<T>>,
    ) -> StoreResult<Option<T>> {
        let mut tx = self.begin_write().await?;
        let Some(done) = change(&mut tx, &mut event).await? else {
            return Ok(None);
        };
        if let Some(what) = announce {
            self.announce(&mut tx, what).await?;
        }
        insert_audit(&mut tx, &event).await?;
        // Armed before the commit: this node's caches hear of the change even
        // if the request is dropped while committing, or the commit reports
        // an error after it happened (forgetting too much is harmless).
        let _tell = TellOnDrop { sink: self.local_changes.get(), what: announce };
        tx.commit().await?;
        Ok(Some(done))
    }

    /// Where this node's own announced changes go when they commit (once).
    pub fn on_local_change(&self, sink: InvalidationSink) {
        let _ = self.local_changes.set(sink);
    }

    /// Announces `what` to every node's cache when `tx` commits.
    async fn announce(&self, tx: &mut AnyConnection, what: &str) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            exec(&mut *tx, "SELECT pg_notify($1, $2)", params![INVALIDATION_CHANNEL, what]).await?;
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Closes the connections once requests in flight are done.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether other processes may change the store behind this node's back
    /// (PostgreSQL with several nodes); if not, local eviction suffices.
    pub fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Hears other nodes' changes through `url` rather than the database
    /// URL (which may pass through a pooler that does not carry `LISTEN`).
    pub fn hear_changes_through(&mut self, url: &str) {
        self.notify_url = url.to_string();
    }

    /// Reports every change any node commits that caches must forget, until
    /// the task running it is dropped. Changes are announced inside the
    /// writing transaction, so they are delivered exactly when they commit.
    /// `All` comes once the listener heard this node's own heartbeat; a
    /// listener that hears nothing, not even a heartbeat, within
    /// `HEARTBEAT_DEADLINE` reports `Lost` and connects again.
    pub async fn watch_invalidations(&self, sink: InvalidationSink) {
        if self.backend != Backend::Postgres {
            return;
        }
        let mark = format!("{HEARTBEAT}{}", crate::crypto::random_string::<12>());
        // Both run for as long as the watch: neither loop ends.
        tokio::join!(self.send_heartbeats(&mark), self.listen_for_invalidations(&sink, &mark));
    }

    /// Sends `mark` every `HEARTBEAT_INTERVAL` on a connection of its own,
    /// so that a busy pool cannot delay it into a false alarm.
    async fn send_heartbeats(&self, mark: &str) -> std::convert::Infallible {
        use sqlx::Connection;
        let mut every = tokio::time::interval(HEARTBEAT_INTERVAL);
        let mut connection: Option<sqlx::postgres::PgConnection> = None;
        loop {
            every.tick().await;
            // A beat that cannot be sent is a beat not heard: the
            // listener's deadline decides.
            let sent = tokio::time::timeout(HEARTBEAT_INTERVAL, async {
                if connection.is_none() {
                    connection = Some(sqlx::postgres::PgConnection::connect(&self.url).await?);
                }
                let Some(conn) = connection.as_mut() else { return Ok(()) };
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(INVALIDATION_CHANNEL)
                    .bind(mark)
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                connection = None;
            }
        }
    }

    async fn listen_for_invalidations(
        &self,
        sink: &InvalidationSink,
        mark: &str,
    ) -> std::convert::Infallible {
        loop {
            match sqlx::postgres::PgListener::connect(&self.notify_url).await {
                Ok(mut listener) => match {
                    // A lost connection ends the watch at once (and the caches
                    // stop answering), instead of reconnecting inside try_recv.
                    listener.eager_reconnect(false);
                    listener.listen(INVALIDATION_CHANNEL).await
                } {
                    Ok(()) => {
                        let mut trusted = false;
                        // `None`, an error or silence: the connection is
                        // gone, and with it any notification sent meanwhile.
                        while let Ok(Ok(Some(n))) =
                            tokio::time::timeout(HEARTBEAT_DEADLINE, listener.try_recv()).await
                        {
                            if n.payload() == mark && !trusted {
                                trusted = true;
                                sink(Invalidation::All);
                            } else if !n.payload().starts_with(HEARTBEAT) {
                                sink(Invalidation::of(n.payload()));
                            }
                        }
                        sink(Invalidation::Lost);
                        tracing::warn!(
                            "the cache invalidation listener lost its connection (or never heard this node); caches are off until it is back"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for cache invalidations"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot connect the cache invalidation listener"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

pub type DynStore = Arc<Store>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A write's caches are told even when it never gets past its commit.
    #[test]
    fn the_announcement_is_made_when_the_guard_goes() {
        let told = Arc::new(AtomicUsize::new(0));
        let counter = told.clone();
        let sink: InvalidationSink = Box::new(move |i| {
            assert_eq!(i, Invalidation::Revocations);
            counter.fetch_add(1, Ordering::SeqCst);
        });
        drop(TellOnDrop { sink: Some(&sink), what: Some(REVOCATIONS) });
        drop(TellOnDrop { sink: Some(&sink), what: None });
        assert_eq!(told.load(Ordering::SeqCst), 1);
    }

    /// The two migration directories are one sequence in two dialects.
    #[test]
    fn migrations_are_in_lockstep() {
        let versions = |m: &sqlx::migrate::Migrator| {
            m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>()
        };
        let sqlite = versions(&super::SQLITE_MIGRATIONS);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, versions(&super::POSTGRES_MIGRATIONS));
    }
}

//! Browser sessions (sign-ins): created at sign-in, found by the HMAC of
//! their cookie, idling out, listed and ended by their user.

use super::users::{USER_COLUMNS, UserRow};
use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{User, UserId};
use sqlx::FromRow;

/// A sign-in as stored (never the cookie itself).
#[derive(Debug, Clone, FromRow)]
pub struct SessionRecord {
    /// HMAC of the cookie: the key a user names a sign-in by to end it.
    pub id_hash: String,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    /// When the session was last seen (to the minute); `created_at` at first.
    pub last_seen_at: i64,
    /// `password`, or `sso:<provider id>`.
    pub method: String,
    pub client_addr: Option<String>,
}

/// What a session cookie finds: its user and what the session asks of them.
pub struct SessionFound {
    pub user: User,
    pub must_change_password: bool,
    pub last_seen_at: i64,
}

#[derive(FromRow)]
struct SessionUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    must_change_password: i64,
    last_seen_at: i64,
}

impl TryFrom<SessionUserRow> for SessionFound {
    type Error = StoreError;
    fn try_from(r: SessionUserRow) -> StoreResult<Self> {
        Ok(SessionFound {
            user: r.user.try_into()?,
            must_change_password: r.must_change_password != 0,
            last_seen_at: r.last_seen_at,
        })
    }
}

const SESSION_COLUMNS: &str = "id_hash, user_id, created_at, expires_at, COALESCE(last_seen_at, created_at) AS last_seen_at, method, client_addr";

table!(SessionRecord, "user_sessions", SESSION_COLUMNS);

impl Store {
    pub async fn create_session(&self, s: &SessionRecord) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO user_sessions (id_hash, user_id, created_at, expires_at, last_seen_at, method, client_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![&s.id_hash, s.user_id, s.created_at, s.expires_at, s.last_seen_at, &s.method, s.client_addr.clone()],
        )
        .await?;
        Ok(())
    }

    /// Ends a browser session (signing out).
    pub async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        exec(&self.pool, "DELETE FROM user_sessions WHERE id_hash = $1", params![id_hash]).await?;
        Ok(())
    }

    /// The active user of a session that has neither expired (`now`) nor
    /// idled out (unseen since `idle_since`).
    pub async fn session_user(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> StoreResult<Option<SessionFound>> {
        let user_columns = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {user_columns}, u.must_change_password, COALESCE(s.last_seen_at, s.created_at) AS last_seen_at \
             FROM user_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND COALESCE(s.last_seen_at, s.created_at) > $3 \
             AND u.disabled_at IS NULL"
        );
        find::<SessionUserRow, _>(&self.pool, sqlx::AssertSqlSafe(sql), params![id_hash, now, idle_since])
            .await
    }

    /// Records that a session was seen at `now`.
    pub async fn touch_session(&self, id_hash: &str, now: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "UPDATE user_sessions SET last_seen_at = $2 WHERE id_hash = $1",
            params![id_hash, now],
        )
        .await?;
        Ok(())
    }

    /// A user's sign-ins that have not expired, newest first.
    pub async fn sessions_of(&self, user_id: UserId, now: i64) -> StoreResult<Vec<SessionRecord>> {
        select::<SessionRecord, _>(
            &self.pool,
            "WHERE user_id = $1 AND expires_at > $2 \
             ORDER BY created_at DESC LIMIT 100",
            params![user_id, now],
        )
        .await
    }

    /// Ends one of `user_id`'s sign-ins; `NotFound` when it has no such one.
    pub async fn end_session_of(&self, user_id: UserId, id_hash: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "DELETE FROM user_sessions WHERE id_hash = $1 AND user_id = $2",
            params![id_hash, user_id],
        )
        .await
    }
}

//! Users (their sign-ins are in `sessions.rs`).

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::user::username_key;
use crate::domain::{AuthSource, Role, User, UserId, from_micros, now, to_micros};
use sqlx::{AnyConnection, FromRow};

pub struct NewUser {
    pub username: String,
    /// argon2id PHC string; `None` for SSO-only users.
    pub password_hash: Option<String>,
    pub role: Role,
}

#[derive(Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
    /// End the user's sessions, tokens and grants in the same transaction.
    pub end_credentials: bool,
    /// Only while the stored password hash is still this one (a change
    /// checked against the current password): `NotFound` otherwise.
    pub replaces_password_hash: Option<String>,
}

pub(super) const USER_COLUMNS: &str =
    "id, username, role, auth_source, disabled_at, created_at, tokens_not_before";

table!(UserRow, "users", USER_COLUMNS);

#[derive(FromRow)]
pub(super) struct UserRow {
    id: i64,
    username: String,
    role: String,
    auth_source: String,
    disabled_at: Option<i64>,
    created_at: i64,
    tokens_not_before: Option<i64>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> StoreResult<User> {
        let role = r
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("user {} has role {:?}", r.id, r.role)))?;
        let auth_source = match r.auth_source.as_str() {
            "password" => AuthSource::Password,
            "sso" => AuthSource::Sso,
            other => return Err(StoreError::Corrupt(format!("user {} has auth source {other:?}", r.id))),
        };
        Ok(User {
            id: r.id,
            username: r.username,
            role,
            auth_source,
            disabled: r.disabled_at.is_some(),
            created_at: from_micros(r.created_at),
            tokens_not_before: r.tokens_not_before,
        })
    }
}

#[derive(FromRow)]
pub(super) struct UserCredentialRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: Option<String>,
}

impl TryFrom<UserCredentialRow> for (User, Option<String>) {
    type Error = StoreError;
    fn try_from(r: UserCredentialRow) -> StoreResult<Self> {
        Ok((r.user.try_into()?, r.password_hash))
    }
}

/// Ends everything a user is signed in with: browser sessions, refresh and
/// API access tokens, delegated grants (with their access tokens) and
/// authorization codes not redeemed yet.
pub(super) async fn end_user_credentials_in(
    conn: &mut AnyConnection,
    user_id: UserId,
    now: i64,
) -> StoreResult<()> {
    exec(&mut *conn, "DELETE FROM user_sessions WHERE user_id = $1", params![user_id]).await?;
    // Access tokens no grant holds (ID-JAG) end here too.
    exec(
        &mut *conn,
        "UPDATE users SET tokens_not_before = $2 WHERE id = $1",
        params![user_id, now / 1_000_000],
    )
    .await?;
    // Codes not redeemed yet would start new grants after this.
    exec(
        &mut *conn,
        "DELETE FROM oauth_authorization_codes WHERE user_id = $1 AND used_at IS NULL",
        params![user_id],
    )
    .await?;
    for table in ["refresh_tokens", "api_access_tokens"] {
        let sql = format!("UPDATE {table} SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL");
        exec(&mut *conn, sqlx::AssertSqlSafe(sql), params![user_id, now]).await?;
    }
    revoke_grants_in(
        conn,
        "SELECT id FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL",
        params![user_id],
        now,
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_user(conn: &mut AnyConnection, user: &NewUser) -> StoreResult<User> {
    let at = to_micros(now());
    let source = if user.password_hash.is_some() { "password" } else { "sso" };
    let sql = format!(
        "INSERT INTO users (username, username_key, password_hash, auth_source, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {USER_COLUMNS}"
    );
    let row: UserRow = sqlx::query_as_with(
        sqlx::AssertSqlSafe(sql),
        params![
            &user.username,
            username_key(&user.username),
            user.password_hash.clone(),
            source,
            user.role.as_str(),
            at,
        ]?,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(conflict("a user with this username"))?;
    row.try_into()
}

impl Store {
    /// Creates the first admin exactly once in the store's life; `None` when
    /// that already happened (on this node or another).
    /// `must_change_password`: the password was generated and printed, so the
    /// first sign-in replaces it.
    pub async fn bootstrap_admin(
        &self,
        admin: NewUser,
        must_change_password: bool,
        event: AuditEvent,
    ) -> StoreResult<Option<User>> {
        self.write_if(event, None, async |tx, _| {
            let claimed = exec(
                &mut *tx,
                "INSERT INTO meta (name, value) VALUES ('bootstrapped', 'admin') ON CONFLICT (name) DO NOTHING",
                params![],
            )
            .await?;
            if claimed == 0 {
                return Ok(None);
            }
            let user = insert_user(tx, &admin).await?;
            if must_change_password {
                exec(&mut *tx, "UPDATE users SET must_change_password = 1 WHERE id = $1", params![user.id]).await?;
            }
            Ok(Some(user))
        })
        .await
    }

    pub async fn create_user(&self, user: NewUser, event: AuditEvent) -> StoreResult<User> {
        self.write(event, None, async |tx, event| {
            let created = insert_user(tx, &user).await?;
            event.target = Some(format!("user:{}", created.id));
            Ok(created)
        })
        .await
    }

    pub async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        select_one::<UserRow, _>(&self.pool, "WHERE id = $1", params![id]).await
    }

    /// A user by (case-insensitive) username, with the password hash.
    pub async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username_key = $1");
        find::<UserCredentialRow, _>(&self.pool, sqlx::AssertSqlSafe(sql), params![username_key(username)])
            .await
    }

    pub async fn list_users(&self, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        select::<UserRow, _>(&self.pool, "ORDER BY id LIMIT $1 OFFSET $2", params![limit, offset]).await
    }

    pub async fn update_user(&self, id: UserId, update: UserUpdate, event: AuditEvent) -> StoreResult<User> {
        // Nodes remember API access tokens with their user: any change of
        // the user (role, password, disabled) makes them look again.
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let admins = self.lock_active_admins(tx).await?;
            let current: User =
                select_one::<UserRow, _>(&mut *tx, "WHERE id = $1", params![id]).await?.ok_or(StoreError::NotFound)?;
            let stays_active_admin = update.role.unwrap_or(current.role) == Role::ServerAdmin
                && !update.disabled.unwrap_or(current.disabled);
            if admins == [id] && !stays_active_admin {
                return Err(StoreError::LastServerAdmin);
            }
            let at = to_micros(now());
            let sql = format!(
                "UPDATE users SET role = COALESCE($2, role), password_hash = COALESCE($3, password_hash), \
                 auth_source = CASE WHEN $3 IS NULL THEN auth_source ELSE 'password' END, \
                 must_change_password = CASE WHEN $3 IS NULL THEN must_change_password ELSE 0 END, \
                 disabled_at = CASE WHEN $4 = 1 THEN COALESCE(disabled_at, $5) WHEN $4 = 0 THEN NULL ELSE disabled_at END, \
                 updated_at = $5 WHERE id = $1 AND ($6 IS NULL OR password_hash = $6) RETURNING {USER_COLUMNS}"
            );
            let params = params![
                id,
                update.role.map(Role::as_str),
                update.password_hash,
                update.disabled.map(i64::from),
                at,
                update.replaces_password_hash,
            ];
            let updated: User =
                find::<UserRow, _>(&mut *tx, sqlx::AssertSqlSafe(sql), params).await?.ok_or(StoreError::NotFound)?;
            if update.end_credentials {
                end_user_credentials_in(tx, id, at).await?;
            }
            Ok(updated)
        })
        .await
    }

    pub async fn delete_user(&self, id: UserId, principal: &str, event: AuditEvent) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let admins = self.lock_active_admins(tx).await?;
            if admins == [id] {
                return Err(StoreError::LastServerAdmin);
            }
            exec_one(&mut *tx, "DELETE FROM users WHERE id = $1", params![id]).await?;
            delete_principal_credentials_in(tx, principal).await
        })
        .await
    }

    /// The ids of the active server admins, locked until `tx` ends, so that two
    /// concurrent demotions cannot each see the other as the remaining admin.
    /// (SQLite's write transactions are exclusive already; PostgreSQL needs
    /// the row locks.)
    async fn lock_active_admins(&self, tx: &mut AnyConnection) -> StoreResult<Vec<i64>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!(
            "SELECT id FROM users WHERE role = 'server_admin' AND disabled_at IS NULL ORDER BY id{lock}"
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?)
    }
}

//! Failed-attempt counting (logins, warehouse verification) and the purge of expired rows.

use super::*;
use crate::domain::throttle::LockPolicy;

impl Store {
    /// Counts one login attempt against each key, in order, before its
    /// password is checked, as one atomic step (across nodes): if a key is
    /// locked at `now`, nothing is counted and the end of the lock is the
    /// answer. Otherwise each count grows by one (starting over when the
    /// last failure is older than `window_start`) and the key is locked
    /// for `lock_for(count) * unit`.
    pub async fn reserve_attempt(
        &self,
        keys: &[(String, LockPolicy<'_>)],
        now: i64,
        window_start: i64,
        unit: i64,
    ) -> StoreResult<Option<i64>> {
        // SQLite: the write transaction serializes attempts. PostgreSQL: the
        // upsert locks the row and sees the latest lock, which this
        // transaction sets before it commits.
        let mut tx = self.begin_write().await?;
        for (key, lock_for) in keys {
            let counted: Option<(i64,)> = sqlx::query_as_with(
                "INSERT INTO login_throttle (key, failures, last_failure_at, locked_until) VALUES ($1, 1, $2, 0) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
                 last_failure_at = $2 WHERE login_throttle.locked_until <= $2 RETURNING failures",
                params![key, now, window_start]?,
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((failures,)) = counted else {
                let (until,): (i64,) = sqlx::query_as_with(
                    "SELECT locked_until FROM login_throttle WHERE key = $1",
                    params![key]?,
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.rollback().await?;
                return Ok(Some(until));
            };
            let lock = lock_for(failures);
            if lock > 0 {
                exec(
                    &mut *tx,
                    "UPDATE login_throttle SET locked_until = $2 WHERE key = $1",
                    params![key, now + lock * unit],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    /// Deletes rows nothing needs any more: sessions, forgotten sign-in
    /// networks, revoked JWT ids and
    /// grant JWT ids past their expiry (`now`, µs), pending connection
    /// authorizations past theirs (`now_ms`), authorization codes that
    /// expired before `codes_before` (kept a while to catch replays), and
    /// unlocked throttle counts last touched before `throttle_before`. How
    /// many rows went.
    pub async fn purge_expired(
        &self,
        now: i64,
        now_ms: i64,
        codes_before: i64,
        throttle_before: i64,
    ) -> StoreResult<u64> {
        let statements: [(&str, i64); 9] = [
            ("DELETE FROM user_sessions WHERE expires_at < $1", now),
            ("DELETE FROM known_sign_in_networks WHERE expires_at < $1", now),
            ("DELETE FROM spent_client_assertions WHERE expires_at < $1", now),
            ("DELETE FROM sso_spent_states WHERE expires_at < $1", now),
            ("DELETE FROM revoked_tokens WHERE expires_at < $1", now),
            ("DELETE FROM oauth_grant_jtis WHERE expires_at < $1", now),
            ("DELETE FROM connection_authorizations WHERE expires_at < $1", now_ms),
            ("DELETE FROM oauth_authorization_codes WHERE expires_at < $1", codes_before),
            ("DELETE FROM login_throttle WHERE last_failure_at < $1 AND locked_until < $2", throttle_before),
        ];
        let mut purged = 0;
        for (sql, before) in statements {
            let mut query = sqlx::query_with(sql, params![before]?);
            if sql.contains("$2") {
                query = query.bind(now);
            }
            purged += query.execute(&self.pool).await?.rows_affected();
        }
        Ok(purged)
    }

    /// Deletes audit records from before `audit_before` and tokens that
    /// ended (expired or revoked) before `tokens_before` (µs): refresh
    /// tokens only once none of their API access tokens is still good. How
    /// many rows went.
    pub async fn purge_retained(&self, audit_before: i64, tokens_before: i64) -> StoreResult<u64> {
        let statements: [(&str, i64); 4] = [
            ("DELETE FROM audit_events WHERE at < $1", audit_before),
            ("DELETE FROM api_access_tokens WHERE expires_at < $1 OR revoked_at < $1", tokens_before),
            (
                "DELETE FROM refresh_tokens WHERE (expires_at < $1 OR revoked_at < $1) AND NOT EXISTS \
                 (SELECT 1 FROM api_access_tokens a WHERE a.refresh_token_id = refresh_tokens.id)",
                tokens_before,
            ),
            ("DELETE FROM oauth_refresh_tokens WHERE expires_at < $1", tokens_before),
        ];
        let mut purged = 0;
        for (sql, before) in statements {
            purged += exec(&self.pool, sql, params![before]).await?;
        }
        Ok(purged)
    }

    /// Gives back the slot an attempt that succeeded had reserved.
    pub async fn release_attempt(&self, key: &str, lock_for: LockPolicy<'_>) -> StoreResult<()> {
        let left: Option<(i64,)> = sqlx::query_as_with(
            "UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0 RETURNING failures",
            params![key]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        // The lock this attempt's reservation set, if the count no longer
        // earns one, goes too.
        if let Some((failures,)) = left.filter(|(n,)| lock_for(*n) == 0) {
            exec(
                &self.pool,
                "UPDATE login_throttle SET locked_until = 0 WHERE key = $1 AND failures = $2",
                params![key, failures],
            )
            .await?;
        }
        Ok(())
    }

    /// Remembers that `account` signed in from `network`, until `until` (µs).
    pub async fn remember_sign_in_network(
        &self,
        account: &str,
        network: &str,
        until: i64,
    ) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO known_sign_in_networks (account, network, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account, network) DO UPDATE SET expires_at = $3",
            params![account, network, until],
        )
        .await
        .map(drop)
    }

    /// Whether `account` signed in from `network` recently enough to be
    /// remembered at `now` (µs).
    pub async fn knows_sign_in_network(&self, account: &str, network: &str, now: i64) -> StoreResult<bool> {
        let found: Option<(i64,)> = sqlx::query_as_with(
            "SELECT expires_at FROM known_sign_in_networks WHERE account = $1 AND network = $2 AND expires_at >= $3",
            params![account, network, now]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Forgets every network `account` signed in from.
    pub async fn forget_sign_in_networks(&self, account: &str) -> StoreResult<()> {
        exec(&self.pool, "DELETE FROM known_sign_in_networks WHERE account = $1", params![account])
            .await
            .map(drop)
    }

    pub async fn clear_attempts(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            exec(&self.pool, "DELETE FROM login_throttle WHERE key = $1", params![key]).await?;
        }
        Ok(())
    }
}

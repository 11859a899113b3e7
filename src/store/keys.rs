//! Key material in `meta`, signing keys, and revoked JWT ids.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{now, to_micros};
use sqlx::FromRow;

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    /// Sealed PKCS#8, base64.
    pub private_key: String,
    pub active: bool,
    pub created_at: i64,
    pub retire_after: Option<i64>,
}

#[derive(FromRow)]
pub(super) struct SigningKeyRow {
    kid: String,
    alg: String,
    private_key: String,
    active: Option<i64>,
    created_at: i64,
    retire_after: Option<i64>,
}

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(r: SigningKeyRow) -> Self {
        StoredSigningKey {
            kid: r.kid,
            alg: r.alg,
            private_key: r.private_key,
            active: r.active == Some(1),
            created_at: r.created_at,
            retire_after: r.retire_after,
        }
    }
}

impl Store {
    /// Returns the value stored under `name`, storing `value` first if there
    /// is none. Concurrent first starts agree on one value.
    pub async fn meta_get_or_init(&self, name: &str, value: &str) -> StoreResult<String> {
        exec(
            &self.pool,
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            params![name, value],
        )
        .await?;
        let (stored,): (String,) =
            sqlx::query_as_with("SELECT value FROM meta WHERE name = $1", params![name]?)
                .fetch_one(&self.pool)
                .await?;
        Ok(stored)
    }

    pub async fn meta_get(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar_with("SELECT value FROM meta WHERE name = $1", params![name]?)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores `value` under `name`, replacing what was there.
    pub async fn meta_put(&self, name: &str, value: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_one(event, None,
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
params![name, value])
.await
    }

    /// Deletes every meta record whose name starts with `prefix`, but `keep`.
    pub async fn meta_delete_prefix(&self, prefix: &str, keep: &str, event: AuditEvent) -> StoreResult<u64> {
        self.write(event, None, async |tx, _| {
            let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM meta").fetch_all(&mut *tx).await?;
            let mut deleted = 0;
            for (name,) in names.iter().filter(|(n,)| n.starts_with(prefix) && n != keep) {
                deleted += exec(&mut *tx, "DELETE FROM meta WHERE name = $1", params![name]).await?;
            }
            Ok(deleted)
        })
        .await
    }

    /// Signing keys still published (active, or retiring after `now`).
    pub async fn signing_keys(&self, now: i64) -> StoreResult<Vec<StoredSigningKey>> {
        find_all::<SigningKeyRow, _>(
            &self.pool,
            "SELECT kid, alg, private_key, active, created_at, retire_after FROM signing_keys \
             WHERE active = 1 OR retire_after > $1 ORDER BY created_at DESC",
            params![now],
        )
        .await
    }

    /// Adds `key` as the active key. With `retire_current_after`, the current
    /// active key becomes a retiring one; without, the insert is skipped
    /// (returning false) if an active key exists, so that concurrent first
    /// starts agree on one key.
    pub async fn add_signing_key(
        &self,
        key: StoredSigningKey,
        retire_current_after: Option<i64>,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        self.write_if(event, Some(KEYS), async |tx, _| {
            match retire_current_after {
                Some(after) => {
                    exec(
                        &mut *tx,
                        "UPDATE signing_keys SET active = NULL, retire_after = $1 WHERE active = 1",
                        params![after],
                    )
                    .await?;
                }
                None => {
                    let existing: Option<(String,)> =
                        sqlx::query_as("SELECT kid FROM signing_keys WHERE active = 1")
                            .fetch_optional(&mut *tx)
                            .await?;
                    if existing.is_some() {
                        return Ok(None);
                    }
                }
            }
            let inserted = exec(
                &mut *tx,
                "INSERT INTO signing_keys (kid, alg, private_key, active, created_at) VALUES ($1, $2, $3, 1, $4) \
                 ON CONFLICT DO NOTHING",
                params![&key.kid, &key.alg, &key.private_key, key.created_at],
            )
            .await?;
            // Zero: another node's first start won the race for the active slot.
            Ok((inserted > 0).then_some(()))
        })
        .await
        .map(|added| added.is_some())
    }

    /// Refuses the JWT `jti` from now on (kept until it would expire anyway).
    pub async fn revoke_jti(&self, jti: &str, expires_at: i64, event: AuditEvent) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let at = to_micros(now());
            exec(
                &mut *tx,
                "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (jti) DO NOTHING",
                params![jti, expires_at, at],
            )
            .await?;
            // Entries past their token's expiry can no longer matter.
            exec(&mut *tx, "DELETE FROM revoked_tokens WHERE expires_at < $1", params![at]).await?;
            Ok(())
        })
        .await
    }

    pub async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as_with("SELECT expires_at FROM revoked_tokens WHERE jti = $1", params![jti]?)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }
}

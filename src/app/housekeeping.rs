//! Housekeeping: what expired is deleted on a schedule, so that no table
//! grows with the traffic it has seen (SPEC §3: unauthenticated callers
//! must not be able to fill the database).

use super::{App, AppError};
use crate::domain::registration::UNAPPROVED_CLIENT_LIFETIME_SECONDS;
use crate::domain::settings::{AUDIT_RETENTION, TOKEN_RETENTION};
use crate::domain::throttle::WINDOW_SECONDS;
use crate::domain::{now, to_micros};

/// Authorization codes are kept this long after they expire, so that a late
/// replay is still recognized (and revokes what the code issued).
const SPENT_CODES_KEPT_SECONDS: i64 = 86_400;

impl App {
    /// Deletes expired sessions, codes, revocation entries, pending
    /// authorizations, stale throttle counts, self-registered clients
    /// nobody approved within a day and spent initial access tokens, and
    /// audit records and ended tokens past their retention settings; how
    /// many rows went.
    pub async fn purge_expired(&self) -> Result<u64, AppError> {
        self.purge_expired_at(to_micros(now())).await
    }

    /// [`App::purge_expired`] as of `at` (µs).
    pub async fn purge_expired_at(&self, at: i64) -> Result<u64, AppError> {
        let days = async |key| -> Result<i64, AppError> {
            Ok(self.setting(key).await?.as_i64().unwrap_or(3650) * 86_400 * 1_000_000)
        };
        let retained = self
            .store
            .purge_retained(at - days(AUDIT_RETENTION).await?, at - days(TOKEN_RETENTION).await?)
            .await?;
        let purged = self
            .store
            .purge_expired(
                at,
                at / 1000,
                at - SPENT_CODES_KEPT_SECONDS * 1_000_000,
                at - WINDOW_SECONDS * 1_000_000,
            )
            .await?
            + self
                .store
                .purge_unapproved_dynamic_clients(at - UNAPPROVED_CLIENT_LIFETIME_SECONDS * 1_000_000)
                .await?
            + self.store.purge_initial_access_tokens(at).await?
            + retained;
        metrics::counter!("keyward_rows_purged_total").increment(purged);
        Ok(purged)
    }
}

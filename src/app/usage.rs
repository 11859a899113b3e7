//! `last_used_at` of API access tokens, kept current without a write per
//! request: uses are collected in memory and written in one batch every few
//! seconds (and when the server stops).

use crate::store::DynStore;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<i64, i64>>,
}

impl UsageRecorder {
    /// Notes that API access token `id` was used at `at` (unix µs).
    pub fn record(&self, id: i64, at: i64) {
        let mut pending = self.pending.lock().expect("usage lock");
        let latest = pending.entry(id).or_insert(at);
        *latest = (*latest).max(at);
    }

    /// Writes what was collected.
    pub async fn flush(&self, store: &DynStore) {
        let uses: Vec<(i64, i64)> =
            std::mem::take(&mut *self.pending.lock().expect("usage lock")).into_iter().collect();
        if let Err(e) = store.touch_api_access_tokens(&uses).await {
            tracing::warn!(error = %e, count = uses.len(), "last_used_at could not be written");
        }
    }
}

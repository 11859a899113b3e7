//! Client ID Metadata Documents: fetching a URL client id's document
//! (https, public addresses unless allowed, no redirects, a deadline and a
//! size cap), keeping it as long as its HTTP caching allows, and letting
//! concurrent requests for one URL share one fetch.

use super::{App, AppError};
use crate::domain::client_metadata::{
    DOCUMENT_MAX_BYTES, DocumentClient, DocumentKeys, cache_seconds, client_from_document, document_url,
    public_key_set,
};
use crate::domain::delegated::DelegatedClient;
use crate::domain::settings::{
    CLIENT_METADATA_ALLOW_PRIVATE, CLIENT_METADATA_ALLOWED_HOSTS, CLIENT_METADATA_DENIED_HOSTS,
    CLIENT_METADATA_DOCUMENTS,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// URLs kept at once; past it, expired entries go (and then all, if need be).
/// (A document is at most 16 KiB: this bounds the cache near 32 MiB.)
const CACHE_MAX_ENTRIES: usize = 2_000;

/// What one fetch of a document gave: the client, its limits and (for
/// `private_key_jwt`) its keys, always in hand; or why not.
type Fetched = Result<DocumentClient, DocumentRefusal>;

/// Why a client metadata document's client cannot be used now.
#[derive(Debug, Clone)]
pub enum DocumentRefusal {
    /// Not acceptable; the message says why, for the person or the client.
    Refused(String),
    /// keyward's own settings could not be read: no verdict either way.
    Unavailable,
}

impl From<String> for DocumentRefusal {
    fn from(why: String) -> Self {
        DocumentRefusal::Refused(why)
    }
}

impl From<&str> for DocumentRefusal {
    fn from(why: &str) -> Self {
        DocumentRefusal::Refused(why.to_string())
    }
}

struct Entry {
    fetched: Fetched,
    fetched_at: Instant,
    /// Until when it answers without a new fetch.
    keep_until: Instant,
    /// Whether private addresses were allowed when it was fetched: after the
    /// setting changes, it is fetched again.
    private_allowed: bool,
}

/// One URL's slot: its lock makes concurrent requests wait for one fetch,
/// whose answer (even an error, even an uncacheable one) they all share.
type Slot = Arc<tokio::sync::Mutex<Option<Entry>>>;

/// How long a failed fetch is remembered, so that a failing or slow
/// document cannot make every request wait for a fetch of its own.
const FAILURE_KEPT: Duration = Duration::from_secs(5);
/// Documents fetched at once, across all URLs: each holds a socket.
const FETCHES_AT_ONCE: usize = 32;

/// Fetched documents, per node.
pub struct DocumentCache {
    slots: Mutex<HashMap<String, Slot>>,
    fetching: tokio::sync::Semaphore,
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache { slots: Mutex::default(), fetching: tokio::sync::Semaphore::new(FETCHES_AT_ONCE) }
    }
}

impl DocumentCache {
    fn slot(&self, url: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= CACHE_MAX_ENTRIES && !slots.contains_key(url) {
            let now = Instant::now();
            slots.retain(|_, s| {
                s.try_lock().map(|e| e.as_ref().is_some_and(|e| e.keep_until > now)).unwrap_or(true)
            });
            if slots.len() >= CACHE_MAX_ENTRIES {
                slots.clear();
            }
        }
        slots.entry(url.to_string()).or_default().clone()
    }
}

impl App {
    /// Whether URL client ids are accepted (and advertised).
    pub async fn metadata_documents_enabled(&self) -> Result<bool, AppError> {
        Ok(self.setting(CLIENT_METADATA_DOCUMENTS).await?.as_bool())
    }

    /// The client a metadata document URL describes, fetched or cached.
    /// The error says why it cannot be used, for the person or the client.
    pub async fn metadata_document_client(&self, client_id: &str) -> Fetched {
        let found = self.fetched_metadata_document(client_id).await?;
        // The keys' host answers to the same lists, now as when fetched.
        if let Some(url) = &found.keys_from {
            self.document_host_accepted(url).await?;
        }
        let public_allowed = self.public_clients_allowed().await.map_err(|_| DocumentRefusal::Unavailable)?;
        if found.keys.is_none() && !public_allowed {
            return Err(super::delegated::PUBLIC_CLIENTS_OFF.into());
        }
        Ok(found)
    }

    /// Whether documents (and keys) from `url`'s host are accepted: not on
    /// the denied list, and on the allowed list when it names any.
    async fn document_host_accepted(&self, url: &url::Url) -> Result<(), DocumentRefusal> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        // Unread lists are no answer (never "nothing denied").
        let listed = |key: &'static str| async move {
            self.setting(key).await.map(|s| s.as_hosts()).map_err(|_| DocumentRefusal::Unavailable)
        };
        let allowed = listed(CLIENT_METADATA_ALLOWED_HOSTS).await?;
        if listed(CLIENT_METADATA_DENIED_HOSTS).await?.contains(&host)
            || !allowed.is_empty() && !allowed.contains(&host)
        {
            return Err(format!("client metadata documents from {host} are not accepted here").into());
        }
        Ok(())
    }

    async fn fetched_metadata_document(&self, client_id: &str) -> Fetched {
        if !self.metadata_documents_enabled().await.map_err(|_| DocumentRefusal::Unavailable)? {
            return Err("URL client ids (client metadata documents) are not accepted here".into());
        }
        let url = document_url(client_id).map_err(|why| format!("the client_id {why}"))?;
        self.document_host_accepted(&url).await?;
        let allow_private = self
            .setting(CLIENT_METADATA_ALLOW_PRIVATE)
            .await
            .map(|s| s.as_bool())
            .map_err(|_| DocumentRefusal::Unavailable)?;
        let asked_at = Instant::now();
        let slot = self.metadata_documents.slot(client_id);
        let mut entry = slot.lock().await;
        if let Some(e) = entry.as_ref() {
            // Fetched under the address rule in force now, or not reused.
            let fresh = e.keep_until > Instant::now() && e.private_allowed == allow_private;
            // Fetched while this request waited for the slot: its answer too.
            if fresh || e.fetched_at >= asked_at {
                return e.fetched.clone();
            }
        }
        let (fetched, keep) = match self.metadata_documents.fetching.try_acquire() {
            Ok(_permit) => match self.fetch_metadata_document(client_id, allow_private).await {
                Ok((found, keep)) => (Ok(found), keep.map(Duration::from_secs).unwrap_or_default()),
                // An outage is no answer to keep.
                Err(DocumentRefusal::Unavailable) => return Err(DocumentRefusal::Unavailable),
                Err(why) => (Err(why), FAILURE_KEPT),
            },
            Err(_) => return Err("too many client metadata documents are being fetched; try again".into()),
        };
        let now = Instant::now();
        *entry = Some(Entry {
            fetched: fetched.clone(),
            fetched_at: now,
            keep_until: now + keep,
            private_allowed: allow_private,
        });
        fetched
    }

    /// Fetches a document, and the keys at its `jwks_uri` if it names
    /// one; with how long both may be kept (the shorter).
    async fn fetch_metadata_document(
        &self,
        url: &str,
        allow_private: bool,
    ) -> Result<(DocumentClient, Option<u64>), DocumentRefusal> {
        let (body, mut keep) = self.fetch_json(url, allow_private, "the client metadata document").await?;
        let mut found = client_from_document(url, &body)?;
        if let Some(DocumentKeys::At(jwks_url)) = &found.keys {
            self.document_host_accepted(jwks_url).await?;
            found.keys_from = Some(jwks_url.clone());
            let (body, keys_keep) = self.fetch_json(jwks_url.as_str(), allow_private, "the jwks_uri").await?;
            let set = serde_json::from_slice(&body).map_err(|_| "the jwks_uri is not JSON".to_string())?;
            found.keys = Some(DocumentKeys::Inline(public_key_set(set)?));
            keep = keep.zip(keys_keep).map(|(a, b)| a.min(b));
        }
        Ok((found, keep))
    }

    /// GETs a JSON document under the metadata documents' rules (https,
    /// public addresses unless allowed, no redirects, a deadline, a size
    /// cap): its body and how long its `Cache-Control` lets it be kept.
    async fn fetch_json(
        &self,
        url: &str,
        allow_private: bool,
        what: &str,
    ) -> Result<(Vec<u8>, Option<u64>), String> {
        let http = self.outbound_http_for(url, allow_private).map_err(|e| e.to_string())?;
        let unreachable = |e: reqwest::Error| format!("{what} could not be fetched: {}", e.without_url());
        // Anyone may name the host, so no connection to it is kept for the
        // next call: pooled, every distinct host would hold one open for 90 s.
        let mut response = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONNECTION, "close")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(format!(
                "{what} answered {} (redirects are not followed)",
                response.status().as_u16()
            ));
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if media_type != "application/json" && !media_type.ends_with("+json") {
            return Err(format!("{what} is not served as application/json"));
        }
        let cache_control: Vec<&str> = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let keep = cache_seconds((!cache_control.is_empty()).then(|| cache_control.join(",")).as_deref());
        let body = super::outbound_http::read_capped(&mut response, DOCUMENT_MAX_BYTES)
            .await
            .map_err(unreachable)?
            .ok_or_else(|| format!("{what} is larger than {DOCUMENT_MAX_BYTES} bytes"))?;
        Ok((body, keep))
    }

    /// Stores (or refreshes) a URL client's record, so that its codes,
    /// grants and consents hang on it like any client's.
    pub(super) async fn keep_metadata_document_client(
        &self,
        client: &DelegatedClient,
    ) -> Result<(), AppError> {
        Ok(self.store.upsert_metadata_document_client(client).await?)
    }
}

//! The connection proxy (SPEC §1.4): a request to the connection's API,
//! with its token injected, refreshed and retried once on a 401, retried
//! with backoff on 429/5xx when idempotent, never sent outside the API base
//! URL, never following a redirect.

use super::{App, AppError};
use crate::domain::Caller;
use crate::domain::proxy::proxy_target;
use std::time::Duration;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const RETRIES: u32 = 2;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Request headers passed on to the API (everything else — cookies, the
/// caller's own credentials, hop-by-hop headers — stays here).
pub const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "prefer",
];

/// Response headers passed back to the caller.
pub const FORWARDED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "location",
    "retry-after",
    "link",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

pub struct ProxyRequest {
    pub method: reqwest::Method,
    /// The path below the connection's API base URL, as it arrived.
    pub raw_path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
}

fn idempotent(method: &reqwest::Method) -> bool {
    matches!(
        *method,
        reqwest::Method::GET
            | reqwest::Method::HEAD
            | reqwest::Method::OPTIONS
            | reqwest::Method::PUT
            | reqwest::Method::DELETE
    )
}

impl App {
    pub async fn proxy(
        &self,
        caller: &Caller,
        id: &str,
        request: ProxyRequest,
    ) -> Result<reqwest::Response, AppError> {
        let connection = self.connection(caller, id).await?;
        let client = self
            .store
            .outbound_client(&connection.outbound_client_id)
            .await?
            .ok_or_else(|| AppError::Conflict("the connection's outbound client is gone".into()))?;
        let target = proxy_target(&client.settings.api_base_url, &request.raw_path, request.query.as_deref())
            .map_err(AppError::Invalid)?;
        let http = self.outbound_http(target.as_str()).await?;
        let mut token = self.connection_token(caller, id).await?.access_token;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let mut upstream = http
                .request(request.method.clone(), target.clone())
                .timeout(UPSTREAM_TIMEOUT)
                .bearer_auth(&token)
                .body(request.body.clone());
            for (name, value) in &request.headers {
                if FORWARDED_REQUEST_HEADERS.contains(&name.as_str()) {
                    upstream = upstream.header(name, value);
                }
            }
            let response = upstream.send().await.map_err(|e| {
                AppError::Upstream(format!("the API could not be reached: {}", e.without_url()))
            })?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                // The API refused the token: get another one, once.
                refreshed = true;
                token = self.connection_token_after_rejection(caller, id, &token).await?.access_token;
                continue;
            }
            let transient = status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if transient && idempotent(&request.method) && attempt < RETRIES {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_millis(200 << attempt))
                    .min(MAX_RETRY_AFTER);
                attempt += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(response);
        }
    }
}

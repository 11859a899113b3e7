//! Connections (SPEC §1.4): a user's link to another system, and a fresh
//! access token for it on demand — fetched from the provider exactly once
//! however many callers or nodes ask at the same moment (a lease in the
//! store decides who asks the provider; the others wait for its answer).

use super::{App, AppError};
use crate::crypto::random_bytes;
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::connection::{ConnectionStatus, parse_token_response, renewal_margin_ms};
use crate::domain::outbound::{OutboundGrant, TokenEndpointAuth};
use crate::domain::settings::{
    CONNECTION_KEEP_ALIVE, CONNECTION_OWNER_READS, CONNECTION_SWEEP_INTERVAL, CONNECTION_WEBHOOK_URL,
};
use crate::domain::{Actor, Caller, Principal, User, excerpt, from_micros, now, to_micros};
use crate::store::{BindOutcome, ConnectionRecord, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

pub const CALLBACK_PATH: &str = "/oauth/v1/connections/callback/";
/// Where the user's browser starts a connection's authorization.
pub const START_PATH: &str = "/oauth/v1/connections/start/";
/// The audit action of tokens from a new authorization (the one way a
/// revoked connection comes back).
const AUTHORIZED: &str = "connection.authorized";
/// How long a user has to authorize at the provider (and a connect link
/// stays usable).
pub(super) const AUTHORIZATION_TTL_MS: i64 = 600_000;

/// How long a lease holder may take to talk to the provider.
const LEASE_MS: i64 = 20_000;
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Further tries after a transient failure at the provider.
const PROVIDER_RETRIES: u32 = 2;
/// The largest token answer read from a provider: far above any real one
/// (a JWT with many claims is a few KiB), and what is stored is bounded.
const TOKEN_RESPONSE_MAX_BYTES: usize = 256 * 1024;
/// How much of a provider's `error_description` is kept and shown.
const PROVIDER_DESCRIPTION_MAX_CHARS: usize = 300;

#[derive(Debug, Serialize)]
pub struct ConnectionView {
    pub id: String,
    pub outbound_client_id: String,
    pub name: String,
    pub status: String,
    pub status_detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

fn view(r: &ConnectionRecord) -> ConnectionView {
    ConnectionView {
        id: r.id.clone(),
        outbound_client_id: r.outbound_client_id.clone(),
        name: r.name.clone(),
        status: r.status.clone(),
        status_detail: r.status_detail.clone(),
        created_at: from_micros(r.created_at),
    }
}

/// What an agent's connect link asks of the owner, for the page that
/// asks them to confirm.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The agent's (M2M client's) or the app's name.
    pub agent: String,
    /// An app that registered itself: its name is its own claim.
    pub self_registered: bool,
    /// The outbound client's name (an admin's words; the connection's own
    /// name is the asker's, so it is not shown).
    pub provider: String,
    /// Where the browser goes next, for the page's `form-action`.
    pub provider_origin: String,
}

/// A connection's access token, fresh.
#[derive(Debug, Serialize)]
pub struct ConnectionToken {
    pub access_token: String,
    pub token_type: &'static str,
    /// Unix milliseconds.
    pub expires_at: i64,
}

pub(super) fn now_ms() -> i64 {
    to_micros(now()) / 1000
}

/// Associated data of a pending authorization's PKCE verifier.
fn verifier_context(state_hash: &str) -> Vec<u8> {
    format!("connection_authorization:{state_hash}").into_bytes()
}

fn context(id: &str, which: &str) -> Vec<u8> {
    format!("connection:{id}:{which}").into_bytes()
}

fn user_of(caller: &Caller) -> Result<i64, AppError> {
    match &caller.principal {
        Principal::User { id, .. } => Ok(*id),
        Principal::Client { .. } => Err(AppError::Forbidden("connections belong to users".into())),
    }
}

impl App {
    pub async fn create_connection(
        &self,
        caller: &Caller,
        outbound_client_id: &str,
        name: &str,
    ) -> Result<ConnectionView, AppError> {
        let id =
            format!("conn_{}", random_bytes::<12>().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let made =
            self.new_connection(caller.actor(), user_of(caller)?, outbound_client_id, name, id).await?;
        Ok(view(&made))
    }

    /// A new, pending connection `id` of `user_id`, made by `actor` (the
    /// user, or an agent that found none).
    pub(super) async fn new_connection(
        &self,
        actor: Actor,
        user_id: i64,
        outbound_client_id: &str,
        name: &str,
        id: String,
    ) -> Result<ConnectionRecord, AppError> {
        if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::Invalid("name must be 1 to 200 characters".into()));
        }
        self.store.outbound_client(outbound_client_id).await?.ok_or_else(|| {
            AppError::Invalid(format!("no outbound client with id {:?}", excerpt(outbound_client_id, 80)))
        })?;
        let record = ConnectionRecord {
            id: id.clone(),
            outbound_client_id: outbound_client_id.to_string(),
            user_id,
            name: name.to_string(),
            status: ConnectionStatus::Pending.as_str().into(),
            status_detail: None,
            sealed_access_token: None,
            sealed_refresh_token: None,
            obtained_at: None,
            access_expires_at: None,
            refresh_expires_at: None,
            created_at: to_micros(now()),
        };
        let event = AuditEvent::success(actor, "connection.created", format!("connection:{id}"))
            .with_detail(json!({"outbound_client_id": outbound_client_id, "user_id": user_id}));
        self.store.create_connection(record.clone(), event).await?;
        Ok(record)
    }

    pub async fn connections(&self, caller: &Caller) -> Result<Vec<ConnectionView>, AppError> {
        Ok(self.store.connections_of(user_of(caller)?).await?.iter().map(view).collect())
    }

    /// The caller's own connection; another user's is "not found".
    async fn own_connection(&self, caller: &Caller, id: &str) -> Result<ConnectionRecord, AppError> {
        let user_id = user_of(caller)?;
        self.store
            .connection(id)
            .await?
            .filter(|c| c.user_id == user_id)
            .ok_or_else(|| AppError::NotFound(format!("no connection with id {:?}", excerpt(id, 80))))
    }

    pub async fn connection(&self, caller: &Caller, id: &str) -> Result<ConnectionView, AppError> {
        Ok(view(&self.own_connection(caller, id).await?))
    }

    /// Forgets the connection's tokens; it stays, `revoked`, until
    /// authorized again.
    pub async fn revoke_connection(&self, caller: &Caller, id: &str) -> Result<ConnectionView, AppError> {
        let c = self.own_connection(caller, id).await?;
        let event = AuditEvent::success(caller.actor(), "connection.revoked", format!("connection:{id}"));
        self.store.revoke_connection(id, event).await?;
        self.notify_status(&c, ConnectionStatus::Revoked, "revoked by its owner").await;
        self.connection(caller, id).await
    }

    pub async fn delete_connection(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        self.own_connection(caller, id).await?;
        let event = AuditEvent::success(caller.actor(), "connection.deleted", format!("connection:{id}"));
        self.store.delete_connection(id, event).await.map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound("no such connection".into()),
            e => e.into(),
        })
    }

    /// The connection's access token handed out at `/token/`: to a service
    /// identity (any user's connection), or to its owner while
    /// `keyward.connections.owners_read_tokens` is on. Every read is audited.
    pub async fn read_connection_token(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ConnectionToken, AppError> {
        let c = if caller.is_service() {
            self.store.connection(id).await?.ok_or_else(|| AppError::NotFound("no such connection".into()))?
        } else {
            let c = self.own_connection(caller, id).await?;
            if !self.setting(CONNECTION_OWNER_READS).await?.as_bool() {
                return Err(AppError::Forbidden(
                    "provider tokens are not handed out to their owners (the setting \
                     keyward.connections.owners_read_tokens is off): call the provider through \
                     /api/v2/connections/{id}/proxy/, or through an agent an admin allowed to exchange tokens"
                        .into(),
                ));
            }
            c
        };
        let token = self.fresh_connection_token(id).await?;
        let action =
            if caller.is_service() { "connection.token_read_by_service" } else { "connection.token_read" };
        let event = AuditEvent::success(caller.actor(), action, format!("connection:{id}")).with_detail(
            json!({"for_user": c.user_id, "outbound_client_id": c.outbound_client_id, "expires_at_ms": token.expires_at}),
        );
        self.audit.record(event);
        Ok(token)
    }

    /// A valid access token for the caller's own connection (or any, for a
    /// service identity), for keyward's own use on the caller's behalf (the
    /// proxy): it never leaves keyward.
    pub(super) async fn connection_token(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ConnectionToken, AppError> {
        if !caller.is_service() {
            self.own_connection(caller, id).await?;
        }
        self.fresh_connection_token(id).await
    }

    /// A valid access token for the connection, fetching a new one first
    /// if the held one expires within the renewal margin.
    pub(super) async fn fresh_connection_token(&self, id: &str) -> Result<ConnectionToken, AppError> {
        let deadline = now_ms() + LEASE_MS + 5_000;
        loop {
            let c = self
                .store
                .connection(id)
                .await?
                .ok_or_else(|| AppError::NotFound("no such connection".into()))?;
            if let Some(token) = self.held_token(&c)? {
                return Ok(token);
            }
            if c.status == ConnectionStatus::Revoked.as_str() {
                return Err(AppError::Conflict("the connection was revoked; authorize it again".into()));
            }
            if c.status == ConnectionStatus::NeedsReauth.as_str() {
                return Err(AppError::Conflict(format!(
                    "the connection needs to be authorized again: {}",
                    c.status_detail.as_deref().unwrap_or("the provider refused the last refresh")
                )));
            }
            let at = now_ms();
            // The client as it is now; the lease is taken only while it is
            // still so, and the provider is asked with this very record.
            let client = self.connection_client(&c).await?;
            let version = client.endpoints_version;
            if self.store.take_connection_lease(id, at, at + LEASE_MS, c.obtained_at, version).await? {
                return self.fetch_from_provider(&c, &client).await;
            }
            if now_ms() > deadline {
                return Err(AppError::Upstream("the provider did not answer in time; try again".into()));
            }
            // Another caller (on any node) is asking the provider: wait for it.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One round of the background refresher: connections whose token would
    /// expire before the next round, and idle ones (to keep their refresh
    /// token alive). Every node runs it; the lease makes each refresh happen
    /// once. How many it refreshed.
    pub async fn sweep_connections(&self) -> Result<usize, AppError> {
        let interval_ms = self.setting(CONNECTION_SWEEP_INTERVAL).await?.as_i64().unwrap_or(60) * 1000;
        let keep_alive_ms = self.setting(CONNECTION_KEEP_ALIVE).await?.as_i64().unwrap_or(86_400) * 1000;
        let at = now_ms();
        // A refresh token that would die before the next round: the user is
        // asked now, while the access token still works, not after a
        // refused call.
        for c in self.store.connections_losing_refresh(at + interval_ms + 60_000, 200).await? {
            let Some(dies_at) = c.refresh_expires_at else { continue };
            let reason =
                "the provider's refresh token expires (refresh_token_lifetime_ms of the outbound client)";
            let event = needs_reauth_event(
                &c,
                json!({"provider_error": "refresh_token_expiring", "refresh_expires_at_ms": dies_at}),
            );
            // Every node sweeps: only the one whose change lands (on the
            // state it read) records it and tells the webhook.
            if self.store.mark_refresh_expiring(&c.id, dies_at, reason, event).await? {
                self.notify_status(&c, ConnectionStatus::NeedsReauth, reason).await;
            }
        }
        let due = self.store.connections_due(at + interval_ms + 60_000, at - keep_alive_ms, 200).await?;
        let mut refreshed = 0;
        for c in due {
            let Ok(client) = self.connection_client(&c).await else { continue };
            let version = client.endpoints_version;
            if self.store.take_connection_lease(&c.id, at, at + LEASE_MS, c.obtained_at, version).await? {
                match self.fetch_from_provider(&c, &client).await {
                    Ok(_) => refreshed += 1,
                    Err(e) => tracing::warn!(connection = %c.id, error = %e, "background refresh failed"),
                }
            }
        }
        Ok(refreshed)
    }

    /// A new token after the API refused `rejected`: refreshed unless another
    /// caller already replaced it.
    pub async fn connection_token_after_rejection(
        &self,
        caller: &Caller,
        id: &str,
        rejected: &str,
    ) -> Result<ConnectionToken, AppError> {
        let c = self.own_connection(caller, id).await?;
        let held =
            c.sealed_access_token.as_deref().map(|s| self.unseal(&c.id, "access_token", s)).transpose()?;
        if held.as_deref() == Some(rejected) {
            let at = now_ms();
            let client = self.connection_client(&c).await?;
            let version = client.endpoints_version;
            if self.store.take_connection_lease(id, at, at + LEASE_MS, c.obtained_at, version).await? {
                return self.fetch_from_provider(&c, &client).await;
            }
        }
        self.connection_token(caller, id).await
    }

    /// The stored access token, if it is good for longer than the margin.
    fn held_token(&self, c: &ConnectionRecord) -> Result<Option<ConnectionToken>, AppError> {
        let (Some(sealed), Some(obtained), Some(expires)) =
            (&c.sealed_access_token, c.obtained_at, c.access_expires_at)
        else {
            return Ok(None);
        };
        if expires - renewal_margin_ms(obtained, expires) <= now_ms() {
            return Ok(None);
        }
        let plain = self.unseal(&c.id, "access_token", sealed)?;
        Ok(Some(ConnectionToken { access_token: plain, token_type: "Bearer", expires_at: expires }))
    }

    /// Holding the lease: ask the provider, store the answer, give the lease back.
    async fn fetch_from_provider(
        &self,
        c: &ConnectionRecord,
        client: &crate::store::OutboundClientRecord,
    ) -> Result<ConnectionToken, AppError> {
        let result = self.request_provider_token(c, client).await;
        match result {
            Ok(token) => Ok(token),
            Err(e) => {
                let _ = self.store.release_connection_lease(&c.id).await;
                Err(e)
            }
        }
    }

    /// The grant this connection uses to get a new access token now: client
    /// credentials, or its refresh token.
    async fn request_provider_token(
        &self,
        c: &ConnectionRecord,
        client: &crate::store::OutboundClientRecord,
    ) -> Result<ConnectionToken, AppError> {
        let grant = match client.settings.grant_type {
            OutboundGrant::ClientCredentials => {
                let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
                if !client.settings.scopes.is_empty() {
                    form.push((
                        "scope".into(),
                        client.settings.scopes.join(&client.settings.scope_separator),
                    ));
                }
                form
            }
            OutboundGrant::AuthorizationCode => {
                let refresh = match &c.sealed_refresh_token {
                    Some(_) if c.refresh_expires_at.is_some_and(|at| at <= now_ms()) => {
                        let reason = "the provider's refresh token has expired (refresh_token_lifetime_ms of the \
                                      outbound client)";
                        self.mark_needs_reauth(c, reason, "refresh_token_expired", None).await?;
                        return Err(AppError::Conflict(format!(
                            "the connection needs to be authorized again: {reason}"
                        )));
                    }
                    Some(sealed) => self.unseal(&c.id, "refresh_token", sealed)?,
                    None if c.status == ConnectionStatus::Pending.as_str() => {
                        return Err(AppError::Conflict(
                            "this connection uses the authorization code grant and has no token yet: authorize it first".into(),
                        ));
                    }
                    None => {
                        let reason = "the access token expired and the provider gave no refresh token";
                        self.mark_needs_reauth(c, reason, "no_refresh_token", None).await?;
                        return Err(AppError::Conflict(format!(
                            "the connection needs to be authorized again: {reason}"
                        )));
                    }
                };
                vec![
                    ("grant_type".to_string(), "refresh_token".to_string()),
                    ("refresh_token".to_string(), refresh),
                ]
            }
        };
        let action = if client.settings.grant_type == OutboundGrant::ClientCredentials {
            "connection.token_fetched"
        } else {
            "connection.token_refreshed"
        };
        self.obtain_tokens(c, client, grant, action).await
    }

    async fn connection_client(
        &self,
        c: &ConnectionRecord,
    ) -> Result<crate::store::OutboundClientRecord, AppError> {
        self.store
            .outbound_client(&c.outbound_client_id)
            .await?
            .ok_or_else(|| AppError::Conflict("the connection's outbound client is gone".into()))
    }

    fn unseal(&self, id: &str, which: &str, sealed: &str) -> Result<String, AppError> {
        self.data_key
            .open_string(&context(id, which), sealed)
            .map_err(|_| AppError::Internal(anyhow::anyhow!("connection {id}: {which} does not decrypt")))
    }

    async fn mark_needs_reauth(
        &self,
        c: &ConnectionRecord,
        detail: &str,
        error: &str,
        status: Option<u16>,
    ) -> Result<(), AppError> {
        let event = needs_reauth_event(c, json!({"provider_error": error, "status": status}));
        self.store
            .set_connection_status(&c.id, ConnectionStatus::NeedsReauth.as_str(), Some(detail), event)
            .await?;
        self.notify_status(c, ConnectionStatus::NeedsReauth, detail).await;
        Ok(())
    }

    /// POSTs a signed notice of a connection's new status to the configured
    /// webhook, in the background: `event` is `connection.<status>`
    /// (`active`, `needs_reauth`, `revoked`). `Keyward-Signature` is a JWS
    /// (`typ: keyward-webhook+jwt`) over the body's SHA-256, verifiable with
    /// the JWKS.
    pub(super) async fn notify_status(&self, c: &ConnectionRecord, status: ConnectionStatus, detail: &str) {
        let url = match self.setting(CONNECTION_WEBHOOK_URL).await {
            Ok(s) if !s.value.is_empty() => s.value,
            _ => return,
        };
        let body = json!({
            "event": format!("connection.{}", status.as_str()), "status": status.as_str(),
            "connection_id": c.id, "outbound_client_id": c.outbound_client_id,
            "user_id": c.user_id, "detail": detail, "at_ms": now_ms(),
        })
        .to_string();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
        let claims = json!({
            "iss": self.issuer, "iat": now().unix_timestamp(),
            "body_sha256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        });
        let signature = self.keys.current().signing_key().sign_typed("keyward-webhook+jwt", &claims);
        let http = match self.outbound_http(&url).await {
            Ok(http) => http.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "webhook not sent");
                return;
            }
        };
        tokio::spawn(async move {
            for attempt in 0..3u32 {
                let sent = http
                    .post(&url)
                    .timeout(PROVIDER_TIMEOUT)
                    .header("content-type", "application/json")
                    .header("keyward-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!(status = %r.status(), attempt, "webhook refused"),
                    Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook not delivered"),
                }
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            metrics::counter!("keyward_webhooks_failed_total").increment(1);
        });
    }

    /// Asks the provider's token endpoint with `grant` (plus the client's
    /// authentication and extra parameters), and stores what it returns. A
    /// definitive refusal marks the connection `needs_reauth`.
    async fn obtain_tokens(
        &self,
        c: &ConnectionRecord,
        client: &crate::store::OutboundClientRecord,
        mut form: Vec<(String, String)>,
        action: &'static str,
    ) -> Result<ConnectionToken, AppError> {
        let s = &client.settings;
        let secret = self.outbound_client_secret(&client.id).await?;
        form.extend(s.extra_token_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut request = self
            .outbound_http(&s.token_url)
            .await?
            .post(&s.token_url)
            .timeout(PROVIDER_TIMEOUT)
            .header("accept", "application/json");
        match s.token_endpoint_auth {
            TokenEndpointAuth::Basic => {
                // RFC 6749 §2.3.1: form-encode, then Basic.
                let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&s.client_id), enc(secret.as_deref().unwrap_or("")));
                request = request.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
            }
            TokenEndpointAuth::Post => {
                form.push(("client_id".into(), s.client_id.clone()));
                if let Some(secret) = &secret {
                    form.push(("client_secret".into(), secret.clone()));
                }
            }
        }
        let started = now_ms();
        // Transient failures (no answer, 429, 5xx) are tried again with
        // backoff; a refusal is final.
        let mut attempt = 0;
        let (status, body) = loop {
            let Some(retry) = request.try_clone() else {
                return Err(AppError::Internal(anyhow::anyhow!("a token request could not be repeated")));
            };
            let sent = retry.form(&form).send().await;
            let transient = match &sent {
                Err(_) => true,
                Ok(r) => r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error(),
            };
            if transient && attempt < PROVIDER_RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                continue;
            }
            let unreachable = |e: reqwest::Error| {
                AppError::Upstream(format!("the provider could not be reached: {}", e.without_url()))
            };
            let mut response = sent.map_err(unreachable)?;
            let status = response.status();
            let body = super::outbound_http::read_capped(&mut response, TOKEN_RESPONSE_MAX_BYTES)
                .await
                .map_err(|e| {
                    AppError::Upstream(format!(
                        "the provider's answer could not be read: {}",
                        e.without_url()
                    ))
                })?
                .ok_or_else(|| {
                    AppError::Upstream(format!(
                        "the provider's token answer is larger than {} KiB",
                        TOKEN_RESPONSE_MAX_BYTES / 1024
                    ))
                })?;
            break (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
        };
        if !status.is_success() {
            let error = excerpt(body.get("error").and_then(|v| v.as_str()).unwrap_or(""), 64).to_string();
            if status.is_client_error() && !error.is_empty() {
                let description = body.get("error_description").and_then(|v| v.as_str()).unwrap_or("");
                let description = excerpt(description, PROVIDER_DESCRIPTION_MAX_CHARS);
                let detail =
                    if description.is_empty() { error.clone() } else { format!("{error}: {description}") };
                self.mark_needs_reauth(c, &detail, &error, Some(status.as_u16())).await?;
                return Err(AppError::Conflict(format!("the provider refused: {detail}")));
            }
            return Err(AppError::Upstream(format!("the provider answered {status}")));
        }
        let tokens =
            parse_token_response(&body, started, s.access_token_lifetime_ms).map_err(AppError::Upstream)?;
        let seal = |which: &str, v: &str| self.data_key.seal_text(&context(&c.id, which), v.as_bytes());
        let sealed_access = seal("access_token", &tokens.access_token);
        // No new refresh token in the answer: the one held stays.
        let sealed_refresh = tokens.refresh_token.as_deref().map(|r| seal("refresh_token", r));
        // The admin's refresh_token_lifetime_ms counts from each new one.
        let refresh_expires_at = Some(s.refresh_token_lifetime_ms)
            .filter(|ms| *ms > 0 && sealed_refresh.is_some())
            .map(|ms| started.saturating_add(ms));
        let event = AuditEvent::success(Actor::System, action, format!("connection:{}", c.id))
            .with_detail(json!({"expires_at_ms": tokens.access_expires_at_ms, "new_refresh_token": sealed_refresh.is_some()}));
        // Only if the client still points where it did when the request
        // left: a token from endpoints an admin has since replaced is
        // dropped, never handed to the new ones.
        let stored = self
            .store
            .store_connection_tokens(
                &c.id,
                &sealed_access,
                sealed_refresh.as_deref(),
                started,
                tokens.access_expires_at_ms,
                refresh_expires_at,
                client.endpoints_version,
                action == AUTHORIZED,
                event,
            )
            .await?;
        if stored && action == AUTHORIZED {
            self.notify_status(c, ConnectionStatus::Active, "authorized").await;
        }
        if !stored {
            return Err(AppError::Conflict(
                "the connection was revoked, or its outbound client changed, while its token was being \
                 fetched; try again (authorize again for an authorization code connection)"
                    .into(),
            ));
        }
        Ok(ConnectionToken {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_at: tokens.access_expires_at_ms,
        })
    }

    /// Where the provider sends the user back.
    pub fn connection_callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.issuer)
    }

    /// Starts the authorization code flow: a single-use link, through
    /// keyward, that only the connection's owner, signed in to keyward in
    /// the browser that opens it, can follow to the provider. Only the
    /// HMAC of its `state` is kept (and the PKCE verifier, sealed).
    pub async fn start_connection_authorization(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<String, AppError> {
        let c = self.own_connection(caller, id).await?;
        // An app acting for the user (its OAuth token) gets a link the user
        // confirms, naming the app, like an agent's.
        self.connect_link(caller.actor(), caller.via_client.as_deref(), &c).await
    }

    /// The single-use start link of `c`'s authorization (see
    /// [`Self::start_connection_authorization`]), made by `actor`: the
    /// owner, or an agent refused for want of it (the link still works only
    /// in the owner's signed-in browser). When `requested_by` (an agent, or
    /// an app acting for the owner) asked for it, the owner confirms first,
    /// seeing who asked.
    pub(super) async fn connect_link(
        &self,
        actor: Actor,
        requested_by: Option<&str>,
        c: &ConnectionRecord,
    ) -> Result<String, AppError> {
        let id = c.id.as_str();
        let client = self.connection_client(c).await?;
        authorization_url_of(&client)?;
        let state = crate::crypto::random_string::<32>();
        let verifier = client.settings.pkce_enabled.then(crate::crypto::random_string::<48>);
        let state_hash = self.secrets.digest(&state);
        let sealed_verifier = verifier
            .as_deref()
            .map(|v| self.data_key.seal_text(&verifier_context(&state_hash), v.as_bytes()));
        let at = now_ms();
        self.store
            .insert_connection_authorization(
                &state_hash,
                &c.id,
                c.user_id,
                sealed_verifier.as_deref(),
                requested_by,
                at,
                at + AUTHORIZATION_TTL_MS,
            )
            .await?;
        let event =
            AuditEvent::success(actor, "connection.authorization_started", format!("connection:{id}"));
        self.audit.record(event);
        let start: String =
            form_urlencoded::Serializer::new(String::new()).append_pair("state", &state).finish();
        Ok(format!("{}{START_PATH}?{start}", self.issuer))
    }

    /// The owner's browser arrives at the start link: bind the authorization
    /// to it (a new cookie value) and build the provider URL to send it to.
    /// Refused unless `user` (the browser's keyward session) owns the
    /// connection: a link sent to someone else leads nowhere.
    pub async fn bind_connection_browser(
        &self,
        state: &str,
        user: &User,
    ) -> Result<(String, String), AppError> {
        let cookie = crate::crypto::random_string::<32>();
        let state_hash = self.secrets.digest(state);
        let unusable = || {
            AppError::Invalid("this authorization is unknown, expired or already started; start again".into())
        };
        let pending = self
            .store
            .bind_connection_authorization(&state_hash, &self.secrets.digest(&cookie), user.id, now_ms())
            .await?;
        let (connection_id, sealed_verifier) = match pending {
            BindOutcome::Bound { connection_id, sealed_verifier } => (connection_id, sealed_verifier),
            BindOutcome::OtherUser => return Err(self.not_the_owner(user)),
            BindOutcome::Unusable => return Err(unusable()),
        };
        let c = self.store.connection(&connection_id).await?.ok_or_else(unusable)?;
        let client = self.connection_client(&c).await?;
        let verifier = sealed_verifier.map(|sealed| self.open_verifier(&state_hash, &sealed)).transpose()?;
        let url = self.provider_authorization_url(&client, state, verifier.as_deref())?;
        Ok((url, cookie))
    }

    /// The owner declined an app's connect link: it is used up, and the
    /// refusal recorded.
    /// Whether it was still open to decline (not on its way to the
    /// provider already).
    pub async fn decline_connection_authorization(&self, state: &str, user: &User) -> Result<bool, AppError> {
        let state_hash = self.secrets.digest(state);
        if let Some(pending) = self.store.pending_connection_authorization(&state_hash, now_ms()).await? {
            if self.store.decline_connection_authorization(&state_hash, user.id, now_ms()).await? {
                let event = AuditEvent {
                    actor: Actor::User(user.id),
                    action: "connection.authorization_declined",
                    target: Some(format!("connection:{}", pending.connection_id)),
                    outcome: Outcome::Success,
                    client_addr: None,
                    detail: json!({"requested_by": pending.requested_by}),
                };
                self.audit.record(event);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Someone followed another user's link: audited, and refused.
    fn not_the_owner(&self, user: &User) -> AppError {
        self.audit.record(AuditEvent {
            actor: Actor::User(user.id),
            action: "connection.authorization_refused",
            target: None,
            outcome: Outcome::Failure,
            client_addr: None,
            detail: json!({"reason": "the link belongs to another user's connection"}),
        });
        AppError::Forbidden(
            "this link belongs to another user's connection; only its owner can authorize it".into(),
        )
    }

    /// What the owner must confirm before a link an agent asked for goes
    /// to the provider: `None` for a link the owner started (nothing to
    /// confirm). Refused for anyone but the owner, and for a link unknown,
    /// expired, already followed, or whose agent is gone.
    pub async fn connect_request(
        &self,
        state: &str,
        user: &User,
    ) -> Result<Option<ConnectRequest>, AppError> {
        let unusable = || {
            AppError::Invalid("this authorization is unknown, expired or already started; start again".into())
        };
        let pending = self
            .store
            .pending_connection_authorization(&self.secrets.digest(state), now_ms())
            .await?
            .ok_or_else(unusable)?;
        if pending.user_id != user.id {
            return Err(self.not_the_owner(user));
        }
        if pending.bound != 0 {
            return Err(unusable());
        }
        let Some(asker) = pending.requested_by else { return Ok(None) };
        let gone = || {
            AppError::Invalid(
                "the app that asked for this connection may no longer use it; nothing was done".into(),
            )
        };
        // An agent (M2M client) still allowed to exchange, or an app acting
        // for the user that still exists.
        let (agent, self_registered) = match self.store.m2m_client(&asker).await? {
            Some(agent) if !agent.client.disabled && agent.client.token_exchange => {
                (agent.client.name, false)
            }
            Some(_) => return Err(gone()),
            None => {
                let app = self.store.oauth_client(&asker).await?.ok_or_else(gone)?.client;
                (app.name, app.registration != crate::domain::registration::Registration::Admin)
            }
        };
        let c = self.store.connection(&pending.connection_id).await?.ok_or_else(unusable)?;
        let client = self.connection_client(&c).await?;
        let provider_origin = provider_origin(&client).unwrap_or_default();
        Ok(Some(ConnectRequest { agent, self_registered, provider: client.settings.name, provider_origin }))
    }

    /// Where the start link for `state` will send the browser: the origin
    /// of the provider's authorization endpoint, for the sign-in page's
    /// `form-action` (which browsers apply to the redirects after a form).
    pub async fn connection_provider_origin(&self, state: &str) -> Option<String> {
        let pending = self
            .store
            .pending_connection_authorization(&self.secrets.digest(state), now_ms())
            .await
            .ok()??;
        let c = self.store.connection(&pending.connection_id).await.ok()??;
        provider_origin(&self.connection_client(&c).await.ok()?)
    }

    fn open_verifier(&self, state_hash: &str, sealed: &str) -> Result<String, AppError> {
        self.data_key.open_string(&verifier_context(state_hash), sealed).map_err(|_| {
            AppError::Internal(anyhow::anyhow!("connection authorization: verifier does not decrypt"))
        })
    }

    /// The provider's authorization URL for `state`, with PKCE and the
    /// client's extra parameters. Built when the browser leaves, never stored.
    fn provider_authorization_url(
        &self,
        client: &crate::store::OutboundClientRecord,
        state: &str,
        verifier: Option<&str>,
    ) -> Result<String, AppError> {
        let s = &client.settings;
        let mut url = url::Url::parse(authorization_url_of(client)?)
            .map_err(|_| AppError::Invalid("authorization_url is not a URL".into()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &s.client_id);
            q.append_pair("redirect_uri", &self.connection_callback_url());
            q.append_pair("state", state);
            if !s.scopes.is_empty() {
                q.append_pair("scope", &s.scopes.join(&s.scope_separator));
            }
            if let Some(v) = verifier {
                q.append_pair("code_challenge", &crate::crypto::pkce_s256_challenge(v));
                q.append_pair("code_challenge_method", "S256");
            }
            for (k, v) in &s.extra_authorization_params {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    /// The provider sent the user back: exchange the code for tokens.
    /// Accepted only in the browser that set out (its cookie) and only for
    /// the connection's owner signed in there (`user`, from its session).
    pub async fn complete_connection_authorization(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        browser_cookie: Option<&str>,
        user: Option<&User>,
    ) -> Result<ConnectionView, AppError> {
        let state_hash = self.secrets.digest(state);
        let at = now_ms();
        let redeemed = match (user, browser_cookie) {
            (Some(user), Some(cookie)) => {
                let browser_hash = self.secrets.digest(cookie);
                self.store.redeem_connection_authorization(&state_hash, user.id, &browser_hash, at).await?
            }
            _ => None,
        };
        let Some((connection_id, sealed_verifier)) = redeemed else {
            // Refused without using it up: someone else's attempt (who has
            // seen the state at the provider) cannot spoil the owner's.
            return Err(match self.store.pending_connection_authorization(&state_hash, at).await? {
                Some(_) => AppError::Forbidden(
                    "only the connection's owner, signed in to keyward in the browser that started this \
                     authorization, can complete it"
                        .into(),
                ),
                None => AppError::Invalid(
                    "this authorization is unknown, expired or already used; start again".into(),
                ),
            });
        };
        let c = self
            .store
            .connection(&connection_id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such connection".into()))?;
        if let Some(error) = error {
            return Err(AppError::Conflict(format!(
                "the provider did not authorize the connection: {error}"
            )));
        }
        let code = code.ok_or_else(|| AppError::Invalid("the provider sent no code".into()))?;
        let client = self.connection_client(&c).await?;
        let mut form = vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".to_string(), code.to_string()),
            ("redirect_uri".to_string(), self.connection_callback_url()),
        ];
        if let Some(sealed) = sealed_verifier {
            form.push(("code_verifier".into(), self.open_verifier(&state_hash, &sealed)?));
        }
        self.obtain_tokens(&c, &client, form, AUTHORIZED).await?;
        let c = self
            .store
            .connection(&connection_id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such connection".into()))?;
        Ok(view(&c))
    }
}

/// The audit record of a connection that needs its user again.
fn needs_reauth_event(c: &ConnectionRecord, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: Actor::System,
        action: "connection.needs_reauth",
        target: Some(format!("connection:{}", c.id)),
        outcome: Outcome::Failure,
        client_addr: None,
        detail,
    }
}

/// The origin of an authorization code client's authorization endpoint.
fn provider_origin(client: &crate::store::OutboundClientRecord) -> Option<String> {
    let url = url::Url::parse(authorization_url_of(client).ok()?).ok()?;
    Some(url.origin().ascii_serialization())
}

/// The authorization endpoint of an authorization code client.
fn authorization_url_of(client: &crate::store::OutboundClientRecord) -> Result<&str, AppError> {
    let s = &client.settings;
    s.authorization_url.as_deref().filter(|_| s.grant_type == OutboundGrant::AuthorizationCode).ok_or_else(
        || {
            AppError::Invalid(
                "this connection's outbound client uses client credentials: no authorization".into(),
            )
        },
    )
}

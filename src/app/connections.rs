//! Connections (SPEC §1.4): a user's link to another system, and a fresh
//! access token for it on demand — fetched from the provider exactly once
//! however many callers or nodes ask at the same moment (a lease in the
//! store decides who asks the provider; the others wait for its answer).

use super::{App, AppError};
use crate::crypto::random_bytes;
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::connection::{ConnectionStatus, parse_token_response, renewal_margin_ms};
use crate::domain::outbound::{OutboundGrant, TokenEndpointAuth};
use crate::domain::{Actor, Caller, Principal, from_micros, now, to_micros};
use crate::store::{ConnectionRecord, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// How long a lease holder may take to talk to the provider.
const LEASE_MS: i64 = 20_000;
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A connection's access token, fresh.
#[derive(Debug, Serialize)]
pub struct ConnectionToken {
    pub access_token: String,
    pub token_type: &'static str,
    /// Unix milliseconds.
    pub expires_at: i64,
}

fn now_ms() -> i64 {
    to_micros(now()) / 1000
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
        let user_id = user_of(caller)?;
        if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::Invalid("name must be 1 to 200 characters".into()));
        }
        self.store.outbound_client(outbound_client_id).await?.ok_or_else(|| {
            AppError::Invalid(format!(
                "no outbound client with id {:?}",
                outbound_client_id.chars().take(80).collect::<String>()
            ))
        })?;
        let id =
            format!("conn_{}", random_bytes::<12>().iter().map(|b| format!("{b:02x}")).collect::<String>());
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
            created_at: to_micros(now()),
        };
        let event = AuditEvent::success(caller.actor(), "connection.created", format!("connection:{id}"))
            .with_detail(json!({"outbound_client_id": outbound_client_id}));
        self.store.create_connection(record.clone(), event).await?;
        Ok(view(&record))
    }

    pub async fn connections(&self, caller: &Caller) -> Result<Vec<ConnectionView>, AppError> {
        Ok(self.store.connections_of(user_of(caller)?).await?.iter().map(view).collect())
    }

    /// The caller's own connection; another user's is "not found".
    async fn own_connection(&self, caller: &Caller, id: &str) -> Result<ConnectionRecord, AppError> {
        let user_id = user_of(caller)?;
        self.store.connection(id).await?.filter(|c| c.user_id == user_id).ok_or_else(|| {
            AppError::NotFound(format!("no connection with id {:?}", id.chars().take(80).collect::<String>()))
        })
    }

    pub async fn connection(&self, caller: &Caller, id: &str) -> Result<ConnectionView, AppError> {
        Ok(view(&self.own_connection(caller, id).await?))
    }

    pub async fn delete_connection(&self, caller: &Caller, id: &str) -> Result<(), AppError> {
        self.own_connection(caller, id).await?;
        let event = AuditEvent::success(caller.actor(), "connection.deleted", format!("connection:{id}"));
        self.store.delete_connection(id, event).await.map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound("no such connection".into()),
            e => e.into(),
        })
    }

    /// A valid access token for the connection, fetching a new one first
    /// if the held one expires within the renewal margin.
    pub async fn connection_token(&self, caller: &Caller, id: &str) -> Result<ConnectionToken, AppError> {
        self.own_connection(caller, id).await?;
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
            if c.status == ConnectionStatus::NeedsReauth.as_str() {
                return Err(AppError::Conflict(format!(
                    "the connection needs to be authorized again: {}",
                    c.status_detail.as_deref().unwrap_or("the provider refused the last refresh")
                )));
            }
            let at = now_ms();
            if self.store.take_connection_lease(id, at, at + LEASE_MS, c.obtained_at).await? {
                return self.fetch_from_provider(&c).await;
            }
            if now_ms() > deadline {
                return Err(AppError::Upstream("the provider did not answer in time; try again".into()));
            }
            // Another caller (on any node) is asking the provider: wait for it.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
        let plain = STANDARD
            .decode(sealed)
            .ok()
            .and_then(|s| self.data_key.open(&context(&c.id, "access_token"), &s).ok())
            .and_then(|p| String::from_utf8(p).ok())
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("connection {}: token does not decrypt", c.id))
            })?;
        Ok(Some(ConnectionToken { access_token: plain, token_type: "Bearer", expires_at: expires }))
    }

    /// Holding the lease: ask the provider, store the answer, give the lease back.
    async fn fetch_from_provider(&self, c: &ConnectionRecord) -> Result<ConnectionToken, AppError> {
        let result = self.request_provider_token(c).await;
        match result {
            Ok(token) => Ok(token),
            Err(e) => {
                let _ = self.store.release_connection_lease(&c.id).await;
                Err(e)
            }
        }
    }

    async fn request_provider_token(&self, c: &ConnectionRecord) -> Result<ConnectionToken, AppError> {
        let client = self
            .store
            .outbound_client(&c.outbound_client_id)
            .await?
            .ok_or_else(|| AppError::Conflict("the connection's outbound client is gone".into()))?;
        let s = &client.settings;
        if s.grant_type != OutboundGrant::ClientCredentials {
            return Err(AppError::Conflict(
                "this connection uses the authorization code grant and has no token yet: authorize it first"
                    .into(),
            ));
        }
        let secret = self.outbound_client_secret(&client.id).await?;
        let mut form: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
        if !s.scopes.is_empty() {
            form.push(("scope".into(), s.scopes.join(&s.scope_separator)));
        }
        form.extend(s.extra_token_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut request =
            self.http.post(&s.token_url).timeout(PROVIDER_TIMEOUT).header("accept", "application/json");
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
        let response = request.form(&form).send().await.map_err(|e| {
            AppError::Upstream(format!("the provider could not be reached: {}", e.without_url()))
        })?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("").to_string();
            if status.is_client_error() && !error.is_empty() {
                // A definitive refusal: the connection needs an admin or user.
                let detail = format!(
                    "{error}: {}",
                    body.get("error_description").and_then(|v| v.as_str()).unwrap_or("")
                );
                let event = AuditEvent {
                    actor: Actor::System,
                    action: "connection.needs_reauth",
                    target: Some(format!("connection:{}", c.id)),
                    outcome: Outcome::Failure,
                    client_addr: None,
                    detail: json!({"provider_error": error, "status": status.as_u16()}),
                };
                self.store
                    .set_connection_status(
                        &c.id,
                        ConnectionStatus::NeedsReauth.as_str(),
                        Some(detail.trim_end_matches([':', ' '])),
                        event,
                    )
                    .await?;
                return Err(AppError::Conflict(format!("the provider refused: {error}")));
            }
            return Err(AppError::Upstream(format!("the provider answered {status}")));
        }
        let tokens =
            parse_token_response(&body, started, s.access_token_lifetime_ms).map_err(AppError::Upstream)?;
        let seal =
            |which: &str, v: &str| STANDARD.encode(self.data_key.seal(&context(&c.id, which), v.as_bytes()));
        let sealed_access = seal("access_token", &tokens.access_token);
        let sealed_refresh = tokens.refresh_token.as_deref().map(|r| seal("refresh_token", r));
        let event =
            AuditEvent::success(Actor::System, "connection.token_fetched", format!("connection:{}", c.id))
                .with_detail(
                    json!({"grant_type": "client_credentials", "expires_at_ms": tokens.access_expires_at_ms}),
                );
        self.store
            .store_connection_tokens(
                &c.id,
                &sealed_access,
                sealed_refresh.as_deref(),
                started,
                tokens.access_expires_at_ms,
                event,
            )
            .await?;
        Ok(ConnectionToken {
            access_token: tokens.access_token,
            token_type: "Bearer",
            expires_at: tokens.access_expires_at_ms,
        })
    }
}

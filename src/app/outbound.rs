//! Outbound OAuth clients (SPEC §1.4): registry with a write-only secret,
//! sealed under the data key with the record's identity as associated data.

use super::{App, AppError};
use crate::crypto::random_bytes;
use crate::domain::audit::AuditEvent;
use crate::domain::connection::ConnectionStatus;
use crate::domain::outbound::{OutboundClient, OutboundClientSettings, OutboundGrant};
use crate::domain::{Actor, excerpt, from_micros, now, to_micros};
use crate::store::{OutboundClientRecord, StoreError};
use serde_json::json;

pub const CLIENT_SECRET_MAX: usize = 4096;

fn secret_context(id: &str) -> Vec<u8> {
    format!("outbound_client:{id}:client_secret").into_bytes()
}

fn view(r: OutboundClientRecord) -> OutboundClient {
    OutboundClient {
        id: r.id,
        settings: r.settings,
        has_client_secret: r.sealed_secret.is_some(),
        created_at: from_micros(r.created_at),
    }
}

impl App {
    fn seal_outbound_secret(&self, id: &str, secret: &str) -> Result<String, AppError> {
        if secret.is_empty() || secret.len() > CLIENT_SECRET_MAX {
            return Err(AppError::Invalid(format!(
                "client_secret must be 1 to {CLIENT_SECRET_MAX} characters"
            )));
        }
        Ok(self.data_key.seal_text(&secret_context(id), secret.as_bytes()))
    }

    pub async fn create_outbound_client(
        &self,
        actor: Actor,
        settings: OutboundClientSettings,
        client_secret: Option<&str>,
    ) -> Result<OutboundClient, AppError> {
        settings.validate(self.allow_private_addresses().await).map_err(AppError::Invalid)?;
        let id =
            format!("obc_{}", random_bytes::<12>().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let sealed_secret = client_secret.map(|s| self.seal_outbound_secret(&id, s)).transpose()?;
        let event = AuditEvent::success(actor, "outbound_client.created", format!("outbound_client:{id}"))
            .with_detail(json!({"name": settings.name, "token_url": settings.token_url, "grant_type": settings.grant_type}));
        let at = to_micros(now());
        let record =
            OutboundClientRecord { id, settings, sealed_secret, created_at: at, endpoints_version: at };
        self.store.create_outbound_client(record.clone(), event).await?;
        Ok(view(record))
    }

    pub async fn outbound_client(&self, id: &str) -> Result<OutboundClient, AppError> {
        Ok(view(self.store.outbound_client(id).await?.ok_or_else(|| not_found(id))?))
    }

    pub async fn outbound_clients(&self) -> Result<Vec<OutboundClient>, AppError> {
        Ok(self.store.list_outbound_clients().await?.into_iter().map(view).collect())
    }

    /// Replaces the settings (merged by the caller) and, if given, the secret.
    pub async fn update_outbound_client(
        &self,
        actor: Actor,
        id: &str,
        settings: OutboundClientSettings,
        client_secret: Option<&str>,
    ) -> Result<OutboundClient, AppError> {
        settings.validate(self.allow_private_addresses().await).map_err(AppError::Invalid)?;
        let current = self.store.outbound_client(id).await?.ok_or_else(|| not_found(id))?;
        // Where secrets and tokens go may change only with the secret given
        // again, and what the old endpoints issued is never sent to the new
        // ones: a client that an admin repoints at their own server gets no
        // user's token and no stored secret.
        let moved = current.settings.endpoints() != settings.endpoints();
        if moved && current.sealed_secret.is_some() && client_secret.is_none() {
            return Err(AppError::Invalid(
                "changing token_url, authorization_url or api_base_url requires client_secret again".into(),
            ));
        }
        let reset = moved.then(|| {
            let status = match settings.grant_type {
                OutboundGrant::AuthorizationCode => ConnectionStatus::NeedsReauth,
                OutboundGrant::ClientCredentials => ConnectionStatus::Pending,
            };
            (status.as_str(), "the outbound client's endpoints changed; authorize again")
        });
        let sealed = client_secret.map(|s| self.seal_outbound_secret(id, s)).transpose()?;
        let event = AuditEvent::success(actor, "outbound_client.updated", format!("outbound_client:{id}"))
            .with_detail(json!({"name": settings.name, "secret_changed": sealed.is_some(),
                "endpoints_changed": moved}));
        self.store
            .update_outbound_client(id, &settings, sealed.as_deref(), reset, event)
            .await
            .map_err(|e| not_found_as(e, id))?;
        if let Some((status, detail)) = reset.filter(|(s, _)| *s == ConnectionStatus::NeedsReauth.as_str()) {
            for c in self.store.connections_through(id).await?.iter().filter(|c| c.status == status) {
                self.notify_status(c, ConnectionStatus::NeedsReauth, detail).await;
            }
        }
        self.outbound_client(id).await
    }

    pub async fn delete_outbound_client(&self, actor: Actor, id: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "outbound_client.deleted", format!("outbound_client:{id}"));
        self.store.delete_outbound_client(id, event).await.map_err(|e| not_found_as(e, id))
    }

    /// The decrypted secret, for talking to the provider (never for callers).
    pub async fn outbound_client_secret(&self, id: &str) -> Result<Option<String>, AppError> {
        let record = self.store.outbound_client(id).await?.ok_or_else(|| not_found(id))?;
        record
            .sealed_secret
            .map(|sealed| {
                self.data_key.open_string(&secret_context(id), &sealed).map_err(|_| {
                    AppError::Internal(anyhow::anyhow!("outbound client {id}: secret does not decrypt"))
                })
            })
            .transpose()
    }
}

fn not_found(id: &str) -> AppError {
    let shown = excerpt(id, 80);
    AppError::NotFound(format!("no outbound client with id {shown:?}"))
}

fn not_found_as(e: StoreError, id: &str) -> AppError {
    match e {
        StoreError::NotFound => not_found(id),
        e => e.into(),
    }
}

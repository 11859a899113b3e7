//! Machine-to-machine client applications: management and authentication.

use super::error::oauth_app_error;
use super::{App, AppError};
use crate::crypto::{SecretKind, new_secret, random_bytes};
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::client::{M2mClient, validate_access_token_duration, validate_client_name};
use crate::domain::oauth::{OAuthError, OAuthErrorCode};
use crate::domain::settings::CLIENT_SECRET_OVERLAP;
use crate::domain::{Actor, Role, excerpt, now, to_micros};
use crate::store::{Invalidation, M2mClientRecord, M2mClientUpdate, NewM2mClient, StoreError};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde_json::json;
use std::sync::Arc;

/// A client and its secret, which is shown this once.
#[derive(Debug)]
pub struct ClientWithSecret {
    pub client: M2mClient,
    pub client_secret: String,
    /// When the secret this one replaced stops working (rotation only).
    pub previous_secret_expires_at: Option<time::OffsetDateTime>,
}

#[derive(Debug, Default)]
pub struct ClientPatch {
    pub is_service: Option<bool>,
    pub token_exchange: Option<bool>,
    pub name: Option<String>,
    pub role: Option<Role>,
    pub access_token_duration: Option<i64>,
    pub disabled: Option<bool>,
}

impl App {
    pub async fn create_m2m_client(
        &self,
        actor: Actor,
        name: &str,
        access_token_duration: i64,
        role: Role,
    ) -> Result<ClientWithSecret, AppError> {
        validate_client_name(name).map_err(AppError::Invalid)?;
        validate_access_token_duration(access_token_duration).map_err(AppError::Invalid)?;
        let client_id =
            format!("m2m_{}", random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect::<String>());
        let secret = new_secret(SecretKind::ClientSecret);
        let event = AuditEvent::success(actor, "client.created", format!("client:{client_id}"))
            .with_detail(json!({"name": name, "role": role, "access_token_duration": access_token_duration}));
        let new = NewM2mClient {
            client_id,
            name: name.to_string(),
            role,
            access_token_duration,
            secret_hash: self.secrets.digest(&secret),
        };
        let client = self.store.create_m2m_client(new, event).await?;
        Ok(ClientWithSecret { client, client_secret: secret, previous_secret_expires_at: None })
    }

    pub async fn m2m_client(&self, client_id: &str) -> Result<M2mClient, AppError> {
        Ok(self.store.m2m_client(client_id).await?.ok_or_else(|| client_not_found(client_id))?.client)
    }

    /// The client record for authentication: from the node's cache when it
    /// can be trusted, else from the store (and then cached).
    pub(super) async fn client_record(
        &self,
        client_id: &str,
    ) -> Result<Option<Arc<M2mClientRecord>>, AppError> {
        Ok(self.clients.get_or_read(client_id, self.store.m2m_client(client_id)).await?)
    }

    /// Forgets a client this node just changed (other nodes hear of it from
    /// the store).
    fn forget_client(&self, client_id: &str) {
        self.clients.apply(&Invalidation::Client(client_id.to_string()));
    }

    pub async fn update_m2m_client(
        &self,
        actor: Actor,
        client_id: &str,
        patch: ClientPatch,
    ) -> Result<M2mClient, AppError> {
        if let Some(name) = &patch.name {
            validate_client_name(name).map_err(AppError::Invalid)?;
        }
        if let Some(d) = patch.access_token_duration {
            validate_access_token_duration(d).map_err(AppError::Invalid)?;
        }
        let action = match patch.disabled {
            Some(true) => "client.disabled",
            Some(false) => "client.enabled",
            None => "client.updated",
        };
        let event = AuditEvent::success(actor, action, format!("client:{client_id}")).with_detail(json!({
            "name": patch.name, "role": patch.role,
            "access_token_duration": patch.access_token_duration, "disabled": patch.disabled,
            "is_service": patch.is_service, "token_exchange": patch.token_exchange,
        }));
        let update = M2mClientUpdate {
            is_service: patch.is_service,
            token_exchange: patch.token_exchange,
            name: patch.name,
            role: patch.role,
            access_token_duration: patch.access_token_duration,
            disabled: patch.disabled,
        };
        let updated = self
            .store
            .update_m2m_client(client_id, update, event)
            .await
            .map_err(|e| not_found_as(e, client_id));
        self.forget_client(client_id);
        updated
    }

    pub async fn delete_m2m_client(&self, actor: Actor, client_id: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "client.deleted", format!("client:{client_id}"));
        let principal = Actor::Client(client_id.to_string()).to_string();
        let deleted = self
            .store
            .delete_m2m_client(client_id, &principal, event)
            .await
            .map_err(|e| not_found_as(e, client_id));
        self.forget_client(client_id);
        deleted
    }

    /// A new secret; the old one keeps working for the configured overlap.
    pub async fn rotate_m2m_client_secret(
        &self,
        actor: Actor,
        client_id: &str,
    ) -> Result<ClientWithSecret, AppError> {
        let overlap = self.setting(CLIENT_SECRET_OVERLAP).await?.as_i64().unwrap_or(3600);
        let previous_expires_at = to_micros(now()) + overlap * 1_000_000;
        let secret = new_secret(SecretKind::ClientSecret);
        let event = AuditEvent::success(actor, "client.secret_rotated", format!("client:{client_id}"))
            .with_detail(json!({"previous_secret_valid_seconds": overlap}));
        let client = self
            .store
            .rotate_m2m_client_secret(client_id, &self.secrets.digest(&secret), previous_expires_at, event)
            .await
            .map_err(|e| not_found_as(e, client_id));
        self.forget_client(client_id);
        Ok(ClientWithSecret {
            client: client?,
            client_secret: secret,
            previous_secret_expires_at: Some(crate::domain::from_micros(previous_expires_at)),
        })
    }

    /// Authenticates a client by id and secret. Read from the store on every
    /// call, so that a disable, delete or rotation on any node applies to the
    /// next request everywhere. The failure says nothing about which part
    /// was wrong.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
        client_addr: Option<String>,
    ) -> Result<M2mClient, OAuthError> {
        let record = self.client_record(client_id).await.map_err(oauth_app_error("client lookup failed"))?;
        let digest = self.secrets.digest(secret);
        let matches = |hash: &str| verify_slices_are_equal(hash.as_bytes(), digest.as_bytes()).is_ok();
        let authenticated = record.as_ref().filter(|r| {
            matches(&r.secret_hash)
                || (r.previous_secret_expires_at.is_some_and(|exp| exp > to_micros(now()))
                    && r.previous_secret_hash.as_deref().is_some_and(matches))
        });
        let failure = |reason: &str| {
            let shown = excerpt(client_id, 80);
            self.audit.record(AuditEvent {
                actor: Actor::Client(shown.to_owned()),
                action: "client.authentication_failed",
                target: Some(format!("client:{shown}")),
                outcome: Outcome::Failure,
                client_addr: client_addr.clone(),
                detail: json!({"reason": reason}),
            });
            OAuthError::new(OAuthErrorCode::InvalidClient, "client authentication failed")
        };
        match authenticated {
            None => Err(failure(if record.is_some() { "wrong secret" } else { "unknown client" })),
            Some(r) if r.client.disabled => Err(failure("client disabled")),
            Some(r) => Ok(r.client.clone()),
        }
    }
}

fn client_not_found(client_id: &str) -> AppError {
    let shown = excerpt(client_id, 80);
    AppError::NotFound(format!("no client with id {shown:?}"))
}

fn not_found_as(e: StoreError, client_id: &str) -> AppError {
    match e {
        StoreError::NotFound => client_not_found(client_id),
        e => e.into(),
    }
}

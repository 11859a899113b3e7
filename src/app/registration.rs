//! Dynamic client registration (RFC 7591) and its management protocol
//! (RFC 7592): self-registered clients, their registration access tokens,
//! and the initial access tokens admins issue.

use super::delegated::new_delegated_client_id;
use super::{App, AppError};
use crate::crypto::{SecretKind, new_secret};
use crate::domain::audit::AuditEvent;
use crate::domain::delegated::{ClientType, DelegatedClient};
use crate::domain::registration::{
    ClientMetadata, DYNAMIC_ACCESS_LIFETIME, DYNAMIC_REFRESH_LIFETIME, RegisteredMetadata, Registration,
    RegistrationError, RegistrationPolicy, accept_metadata,
};
use crate::domain::settings::{
    DYNAMIC_MAX_UNAPPROVED, DYNAMIC_PER_NETWORK, DYNAMIC_REGISTRATION, DYNAMIC_TRUSTED_HOSTS,
};
use crate::domain::throttle::{LockPolicy, WINDOW_SECONDS, hourly_share, network_of, site_of};
use crate::domain::{Actor, MICROS, now, to_micros};
use crate::store::OAuthClientRecord;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde_json::json;
use std::net::IpAddr;

/// Initial access tokens live at most this long (seconds).
pub const INITIAL_ACCESS_TOKEN_MAX_SECONDS: i64 = 90 * 86_400;
pub const INITIAL_ACCESS_TOKEN_MAX_USES: i64 = 1_000_000;

/// Why a registration request fails, in the terms of RFC 7591 §3.2.2 and
/// RFC 6750 §3.1.
#[derive(Debug)]
pub enum RegistrationFailure {
    /// `keyward.oauth.dynamic_registration` is `off`.
    Off,
    /// A missing or wrong initial or registration access token.
    InvalidToken(&'static str),
    Metadata(RegistrationError),
    /// The cap on clients nobody approved yet is reached.
    TooMany(i64),
    /// The caller's network registered its share this hour: wait this many
    /// seconds.
    NetworkWaits(i64),
    App(AppError),
}

impl<E: Into<AppError>> From<E> for RegistrationFailure {
    fn from(e: E) -> Self {
        RegistrationFailure::App(e.into())
    }
}

/// A registration as RFC 7591 §3.2.1 answers it. The secret and the
/// registration access token are in it only when they are made.
pub struct DynamicClient {
    pub client: DelegatedClient,
    pub metadata: RegisteredMetadata,
    pub client_secret: Option<String>,
    pub registration_access_token: Option<String>,
}

impl DynamicClient {
    fn of(record: OAuthClientRecord) -> Result<Self, RegistrationFailure> {
        let mut metadata = record.metadata.ok_or(RegistrationFailure::InvalidToken("unknown client"))?;
        // An admin may have changed these through /oauth/v1/register/.
        metadata.client_name = record.client.name.clone();
        metadata.redirect_uris = record.client.redirect_uris.clone();
        Ok(DynamicClient {
            client: record.client,
            metadata,
            client_secret: None,
            registration_access_token: None,
        })
    }
}

impl App {
    async fn accepted(&self, meta: ClientMetadata) -> Result<RegisteredMetadata, RegistrationFailure> {
        let trusted = self.setting(DYNAMIC_TRUSTED_HOSTS).await?.as_hosts();
        let accepted = accept_metadata(meta, &trusted).map_err(RegistrationFailure::Metadata)?;
        if accepted.client_type() == ClientType::Public && !self.public_clients_allowed().await? {
            return Err(RegistrationFailure::Metadata(RegistrationError::InvalidClientMetadata(
                super::delegated::PUBLIC_CLIENTS_OFF.into(),
            )));
        }
        Ok(accepted)
    }

    /// RFC 7591 §3.1: registers a client that asked for itself, within the
    /// policy. `initial_token` is the request's bearer token, if any; `from`
    /// the caller's address.
    pub async fn register_dynamic_client(
        &self,
        meta: ClientMetadata,
        initial_token: Option<&str>,
        from: IpAddr,
    ) -> Result<DynamicClient, RegistrationFailure> {
        let policy = RegistrationPolicy::parse(&self.setting(DYNAMIC_REGISTRATION).await?.value);
        let at = to_micros(now());
        if policy == RegistrationPolicy::Off {
            return Err(RegistrationFailure::Off);
        }
        if policy == RegistrationPolicy::InitialAccessToken && initial_token.is_none() {
            return Err(RegistrationFailure::InvalidToken(
                "registration needs an initial access token (Authorization: Bearer)",
            ));
        }
        // Checked before an initial access token is spent on it.
        let metadata = self.accepted(meta).await?;
        let cap = self.setting(DYNAMIC_MAX_UNAPPROVED).await?.as_i64().unwrap_or(1000);
        if self.store.count_unapproved_dynamic_clients().await? >= cap {
            return Err(RegistrationFailure::TooMany(cap));
        }
        let per_network = self.setting(DYNAMIC_PER_NETWORK).await?.as_i64().unwrap_or(0);
        if policy == RegistrationPolicy::Open && per_network > 0 {
            // Each network has a share of every clock hour, so that one
            // anonymous caller cannot fill the cap for everyone in seconds
            // (found by an outside probe); an IPv6 site (/48) has four.
            let seconds = at / MICROS;
            let (hour, left) = (seconds / WINDOW_SECONDS, WINDOW_SECONDS - seconds % WINDOW_SECONDS);
            let network_share = move |n: i64| hourly_share(n, per_network, left);
            let site_share = move |n: i64| hourly_share(n, per_network.saturating_mul(4), left);
            let mut shares =
                vec![(format!("register:{hour}:{}", network_of(from)), &network_share as LockPolicy)];
            if let Some(site) = site_of(from) {
                shares.push((format!("register:{hour}:{site}"), &site_share));
            }
            let window_start = at - WINDOW_SECONDS * MICROS;
            if let Some(until) = self.store.reserve_attempt(&shares, at, window_start, MICROS).await? {
                return Err(RegistrationFailure::NetworkWaits(((until - at) / MICROS).max(1)));
            }
        }
        match policy {
            RegistrationPolicy::Off | RegistrationPolicy::Open => {}
            RegistrationPolicy::InitialAccessToken => {
                let token = initial_token.ok_or(RegistrationFailure::InvalidToken(
                    "registration needs an initial access token (Authorization: Bearer)",
                ))?;
                let known = SecretKind::of(token) == Some(SecretKind::InitialAccessToken)
                    && token.len() < 100
                    && self.store.use_initial_access_token(&self.secrets.digest(token), at).await?;
                if !known {
                    return Err(RegistrationFailure::InvalidToken(
                        "the initial access token is not valid, expired or used up",
                    ));
                }
            }
        }
        let client_id = new_delegated_client_id();
        let client_type = metadata.client_type();
        let secret = (client_type == ClientType::Confidential).then(|| new_secret(SecretKind::ClientSecret));
        let token = new_secret(SecretKind::RegistrationAccessToken);
        let event = AuditEvent::success(
            Actor::System,
            "oauth_client.registered",
            format!("oauth_client:{client_id}"),
        )
        .with_detail(json!({
            "client_name": metadata.client_name,
            "redirect_uris": metadata.redirect_uris,
            "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
            "policy": self.setting(DYNAMIC_REGISTRATION).await?.value,
        }));
        let new = OAuthClientRecord {
            client: DelegatedClient {
                client_id,
                name: metadata.client_name.clone(),
                redirect_uris: metadata.redirect_uris.clone(),
                grant_type: client_type,
                refresh_token_lifetime: DYNAMIC_REFRESH_LIFETIME,
                access_token_lifetime: DYNAMIC_ACCESS_LIFETIME,
                pkce_enabled: true,
                created_at: now(),
                registration: Registration::Dynamic,
                offline_access: metadata.offline_access(),
            },
            secret_hash: secret.as_deref().map(|s| self.secrets.digest(s)),
            metadata: Some(metadata.clone()),
            registration_token_hash: Some(self.secrets.digest(&token)),
        };
        // The cap again, atomically with the insert: concurrent requests all
        // saw room above.
        let client = self
            .store
            .create_unapproved_client(new, cap, event)
            .await?
            .ok_or(RegistrationFailure::TooMany(cap))?;
        Ok(DynamicClient { client, metadata, client_secret: secret, registration_access_token: Some(token) })
    }

    /// RFC 7592 §2.1: the client, if `token` is its registration access
    /// token. Unknown clients and wrong tokens look alike.
    pub async fn dynamic_client(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<DynamicClient, RegistrationFailure> {
        // Switched off in an emergency: self-registered clients freeze too.
        if RegistrationPolicy::parse(&self.setting(DYNAMIC_REGISTRATION).await?.value)
            == RegistrationPolicy::Off
        {
            return Err(RegistrationFailure::Off);
        }
        let denied =
            RegistrationFailure::InvalidToken("the registration access token is not valid for this client");
        let token =
            token.ok_or(RegistrationFailure::InvalidToken("a registration access token is required"))?;
        if token.len() > 100 || client_id.len() > 100 {
            return Err(denied);
        }
        let Some(record) = self.store.oauth_client(client_id).await? else { return Err(denied) };
        let matches = record.registration_token_hash.as_deref().is_some_and(|h| {
            verify_slices_are_equal(self.secrets.digest(token).as_bytes(), h.as_bytes()).is_ok()
        });
        if !matches {
            return Err(denied);
        }
        DynamicClient::of(record)
    }

    /// RFC 7592 §2.2: replaces the client's metadata. Whether it is public
    /// or confidential cannot change.
    pub async fn update_dynamic_client(
        &self,
        client_id: &str,
        token: Option<&str>,
        meta: ClientMetadata,
    ) -> Result<DynamicClient, RegistrationFailure> {
        let current = self.dynamic_client(client_id, token).await?;
        let metadata = self.accepted(meta).await?;
        if metadata.client_type() != current.client.grant_type {
            return Err(RegistrationFailure::Metadata(RegistrationError::InvalidClientMetadata(
                "token_endpoint_auth_method cannot change between none and a secret; register a new client"
                    .into(),
            )));
        }
        let event = AuditEvent::success(
            Actor::Client(client_id.to_string()),
            "oauth_client.updated",
            format!("oauth_client:{client_id}"),
        )
        .with_detail(json!({"client_name": metadata.client_name, "redirect_uris": metadata.redirect_uris}));
        let new = OAuthClientRecord {
            client: DelegatedClient {
                name: metadata.client_name.clone(),
                redirect_uris: metadata.redirect_uris.clone(),
                offline_access: metadata.offline_access(),
                ..current.client
            },
            secret_hash: None,
            metadata: Some(metadata.clone()),
            registration_token_hash: None,
        };
        let client = self.store.replace_oauth_client(new, event).await?;
        Ok(DynamicClient { client, metadata, client_secret: None, registration_access_token: None })
    }

    /// RFC 7592 §2.3: the client removes itself, and with it every grant.
    pub async fn delete_dynamic_client(
        &self,
        client_id: &str,
        token: Option<&str>,
    ) -> Result<(), RegistrationFailure> {
        self.dynamic_client(client_id, token).await?;
        let event = AuditEvent::success(
            Actor::Client(client_id.to_string()),
            "oauth_client.deleted",
            format!("oauth_client:{client_id}"),
        );
        match self.store.delete_oauth_client(client_id, event).await {
            // Deleted by a concurrent request meanwhile: as unknown.
            Err(crate::store::StoreError::NotFound) => Err(RegistrationFailure::InvalidToken(
                "the registration access token is not valid for this client",
            )),
            done => Ok(done?),
        }
    }

    /// Issues an initial access token (shown this once).
    pub async fn create_initial_access_token(
        &self,
        actor: Actor,
        name: &str,
        expires_in: i64,
        uses: i64,
    ) -> Result<(String, i64), AppError> {
        if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(AppError::Invalid("name must be 1 to 200 characters".into()));
        }
        if !(60..=INITIAL_ACCESS_TOKEN_MAX_SECONDS).contains(&expires_in) {
            return Err(AppError::Invalid(format!(
                "expires_in must be from 60 to {INITIAL_ACCESS_TOKEN_MAX_SECONDS} seconds"
            )));
        }
        if !(1..=INITIAL_ACCESS_TOKEN_MAX_USES).contains(&uses) {
            return Err(AppError::Invalid(format!("uses must be from 1 to {INITIAL_ACCESS_TOKEN_MAX_USES}")));
        }
        let token = new_secret(SecretKind::InitialAccessToken);
        let at = to_micros(now());
        let expires_at = at + expires_in * 1_000_000;
        let event = AuditEvent::success(
            actor,
            "initial_access_token.created",
            format!("initial_access_token:{name}"),
        )
        .with_detail(json!({"expires_in": expires_in, "uses": uses}));
        self.store
            .create_initial_access_token(&self.secrets.digest(&token), name, at, expires_at, uses, event)
            .await?;
        Ok((token, expires_at))
    }
}

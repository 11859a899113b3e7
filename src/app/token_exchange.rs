//! RFC 8693 token exchange for connection tokens: an agent (an M2M client
//! an admin allowed) presents a user's keyward access token and receives
//! the provider token of that user's connection, or, when the user must
//! authorize first, `authorization_required` with a connect link the user
//! opens in a browser. The agent never sees a refresh token.

use super::connections::{AUTHORIZATION_TTL_MS, now_ms};
use super::error::oauth_store_error;
use super::{App, AppError, oauth_app_error};
use crate::domain::audit::AuditEvent;
use crate::domain::caller::API_SCOPE;
use crate::domain::client::M2mClient;
use crate::domain::connection::ConnectionStatus;
use crate::domain::exchange::{
    ACCESS_TOKEN_TYPE, ExchangeTarget, api_key, check_token_types, exchange_target,
};
use crate::domain::oauth::{OAuthError, OAuthErrorCode, UserAction};
use crate::domain::outbound::OutboundGrant;
use crate::domain::{Actor, Principal};
use crate::store::{ConnectionRecord, OutboundClientRecord};
use serde::Serialize;
use serde_json::json;

/// What an agent asks for.
pub struct ExchangeRequest<'a> {
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub requested_token_type: Option<&'a str>,
    pub audiences: Vec<&'a str>,
    /// Normalized (RFC 8707).
    pub resources: &'a [String],
}

/// RFC 8693 §2.2.1: the provider's access token and its real expiry.
#[derive(Debug, Serialize)]
pub struct ExchangedToken {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    /// Seconds the provider token has left.
    pub expires_in: i64,
}

fn invalid_target(why: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidTarget, why)
}

/// The outbound client, if its connections hold tokens a user authorized:
/// a client-credentials token is the platform's own, never exchanged.
fn by_user_authorization(
    outbound: Option<&OutboundClientRecord>,
) -> Result<&OutboundClientRecord, OAuthError> {
    let outbound =
        outbound.ok_or_else(|| invalid_target("no outbound client is known by this audience or resource"))?;
    if outbound.settings.grant_type != OutboundGrant::AuthorizationCode {
        return Err(invalid_target(
            "this outbound client uses client credentials: its token is the platform's own, not a user's",
        ));
    }
    Ok(outbound)
}

impl App {
    pub async fn exchange_for_connection_token(
        &self,
        agent: &M2mClient,
        request: &ExchangeRequest<'_>,
    ) -> Result<ExchangedToken, OAuthError> {
        if !agent.token_exchange {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "this client may not exchange tokens; an admin allows it (token_exchange on the M2M client)",
            ));
        }
        check_token_types(request.subject_token_type, request.requested_token_type)?;
        let target = exchange_target(&request.audiences, request.resources, &self.issuer)?;
        let (user_id, subject_client) = self.exchange_subject(request.subject_token).await?;
        let c = self.exchange_connection(agent, user_id, &target).await?;
        let waiting = [ConnectionStatus::Pending.as_str(), ConnectionStatus::Revoked.as_str()];
        if waiting.contains(&c.status.as_str()) {
            return Err(self.authorization_required(agent, &c).await);
        }
        // A needs_reauth connection still serves the access token it holds
        // until that expires.
        let token = match self.fresh_connection_token(&c.id).await {
            Ok(token) => token,
            Err(AppError::Conflict(_)) => {
                // Refused for good at the provider, or revoked meanwhile.
                let now = self
                    .store
                    .connection(&c.id)
                    .await
                    .map_err(oauth_store_error("connection lookup failed"))?;
                return Err(self.authorization_required(agent, now.as_ref().unwrap_or(&c)).await);
            }
            Err(AppError::Upstream(why)) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::TemporarilyUnavailable,
                    format!("the provider did not give a token: {why}"),
                ));
            }
            Err(e) => return Err(oauth_app_error("a connection token could not be had")(e)),
        };
        let event = AuditEvent::success(
            Actor::Client(agent.client_id.clone()),
            "connection.token_exchanged",
            format!("connection:{}", c.id),
        )
        .with_detail(json!({
            "for_user": user_id, "subject_token_client_id": subject_client,
            "outbound_client_id": c.outbound_client_id, "expires_at_ms": token.expires_at,
        }));
        self.audit.record(event);
        Ok(ExchangedToken {
            access_token: token.access_token,
            issued_token_type: ACCESS_TOKEN_TYPE,
            token_type: "Bearer",
            expires_in: ((token.expires_at - now_ms()) / 1000).max(0),
        })
    }

    /// `authorization_required`, with a connect link for the connection's
    /// owner.
    async fn authorization_required(&self, agent: &M2mClient, c: &ConnectionRecord) -> OAuthError {
        let link = match self
            .connect_link(Actor::Client(agent.client_id.clone()), Some(&agent.client_id), c)
            .await
        {
            Ok(link) => link,
            Err(e) => return oauth_app_error("a connect link could not be made")(e),
        };
        let action = UserAction {
            connect_uri: link,
            connection_id: c.id.clone(),
            expires_in: AUTHORIZATION_TTL_MS / 1000,
        };
        OAuthError::authorization_required(
            format!(
                "the user must authorize the connection first (it is {}): send them to connect_uri, signed in \
                 to keyward in their browser",
                c.status
            ),
            action,
        )
    }

    /// The user a subject token speaks for, and the client it was issued
    /// to: an active keyward access token of an active user.
    async fn exchange_subject(&self, subject_token: &str) -> Result<(i64, String), OAuthError> {
        let refused =
            |why: &str| OAuthError::new(OAuthErrorCode::InvalidGrant, format!("the subject_token {why}"));
        // A token for keyward's own APIs with `api`: the exchange then gives
        // the agent nothing its holder could not already do through the
        // proxy. A token made for another server (which could replay it)
        // is not exchanged.
        let claims = match self.verify_access_token(subject_token, Some(&self.issuer)).await {
            Ok(claims) => claims,
            Err(super::Rejected::Unavailable) => return Err(OAuthError::temporarily_unavailable()),
            Err(super::Rejected::Expired) => return Err(refused("has expired")),
            Err(super::Rejected::Revoked) => return Err(refused("has been revoked")),
            Err(super::Rejected::Invalid) => {
                return Err(refused("is not an access token keyward issued for its own APIs (aud)"));
            }
        };
        if !claims.scope.split(' ').any(|s| s == API_SCOPE) {
            return Err(refused("was not granted the api scope"));
        }
        let caller =
            self.token_subject(&claims).await.map_err(oauth_app_error("the subject could not be read"))?;
        match caller.map(|c| c.principal) {
            Some(Principal::User { id, .. }) => Ok((id, claims.client_id)),
            Some(Principal::Client { .. }) => Err(refused("is a client's own token, not a user's")),
            None => Err(refused("speaks for a user or client that is no longer active")),
        }
    }

    /// The user's connection the target names: by id (only the user's
    /// own), or through an outbound client, made pending when the user has
    /// none yet.
    async fn exchange_connection(
        &self,
        agent: &M2mClient,
        user_id: i64,
        target: &ExchangeTarget,
    ) -> Result<ConnectionRecord, OAuthError> {
        let lookup = oauth_store_error("connection lookup failed");
        let outbound = match target {
            ExchangeTarget::Connection(id) => {
                let c = self
                    .store
                    .connection(id)
                    .await
                    .map_err(lookup)?
                    .filter(|c| c.user_id == user_id)
                    .ok_or_else(|| invalid_target("the user has no connection with this id"))?;
                let outbound = self.store.outbound_client(&c.outbound_client_id).await.map_err(lookup)?;
                by_user_authorization(outbound.as_ref())?;
                return Ok(c);
            }
            ExchangeTarget::OutboundClient(id) => self.store.outbound_client(id).await.map_err(lookup)?,
            ExchangeTarget::Api(url) => self
                .store
                .list_outbound_clients()
                .await
                .map_err(lookup)?
                .into_iter()
                .filter(|o| o.settings.grant_type == OutboundGrant::AuthorizationCode)
                .find(|o| api_key(&o.settings.api_base_url) == *url),
        };
        let outbound = by_user_authorization(outbound.as_ref())?;
        let mine: Vec<ConnectionRecord> = self
            .store
            .connections_of(user_id)
            .await
            .map_err(lookup)?
            .into_iter()
            .filter(|c| c.outbound_client_id == outbound.id)
            .collect();
        // The working one first, else the one closest to working.
        let rank = |c: &ConnectionRecord| {
            ["active", "needs_reauth", "pending", "revoked"].iter().position(|s| *s == c.status).unwrap_or(4)
        };
        if let Some(best) = mine.into_iter().min_by_key(|c| (rank(c), -c.created_at)) {
            return Ok(best);
        }
        // One id per user and client, so that agents asking at the same
        // moment make one connection: the others find it.
        let id = format!(
            "conn_{}",
            &self.secrets.digest(&format!("agent_connection:{user_id}:{}", outbound.id))[..24]
        );
        let actor = Actor::Client(agent.client_id.clone());
        match self.new_connection(actor, user_id, &outbound.id, &outbound.settings.name, id.clone()).await {
            Ok(made) => Ok(made),
            // Another agent's request made it a moment ago.
            Err(AppError::Conflict(_)) => self
                .store
                .connection(&id)
                .await
                .map_err(lookup)?
                .ok_or_else(|| OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, "try again")),
            Err(e) => Err(oauth_app_error("a connection could not be made")(e)),
        }
    }
}

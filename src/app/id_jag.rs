//! The `jwt-bearer` grant with an ID-JAG (MCP enterprise-managed
//! authorization): a delegated client presents an enterprise IdP's
//! identity assertion for one of keyward's users and gets an access token
//! for the resource it names, with no browser and no consent page. The IdP
//! must be an SSO provider an admin marked `id_jag`; its subject must be
//! linked to a keyward user (they signed in through it before).

use super::error::oauth_store_error;
use super::tokens::TokenResponse;
use super::{App, AppError};
use crate::domain::MICROS;
use crate::domain::client_metadata::ASSERTIONS_PER_HOST;
use crate::domain::delegated::DelegatedClient;
use crate::domain::id_jag::{
    MAX_BYTES, MAX_LIFETIME_SECONDS, REQUIRED_CLAIMS, check_claims, granted_scope, is_id_jag_type,
};
use crate::domain::now;
use crate::domain::oauth::{OAuthError, OAuthErrorCode, normalize_resource, refuse_offline_access};
use crate::domain::signed_jwt::{self, Expected, LEEWAY_SECONDS};
use crate::domain::sso::SsoProvider;
use crate::store::AssertionSpending;

fn refused(why: impl std::fmt::Display) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, format!("the identity assertion is refused: {why}"))
}

impl App {
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an
    /// ID-JAG, for an authenticated delegated client.
    pub async fn id_jag_token(
        &self,
        client: &DelegatedClient,
        assertion: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if assertion.len() > MAX_BYTES {
            return Err(refused(format!("it is larger than {MAX_BYTES} bytes")));
        }
        let header = signed_jwt::unverified_part(assertion, 0).ok_or_else(|| refused("it is not a JWT"))?;
        if !is_id_jag_type(&header) {
            return Err(refused("its typ is not oauth-id-jag+jwt"));
        }
        // As the IdP writes it (with or without a trailing slash); the
        // provider is found by it trimmed, as SSO providers are stored.
        let issuer = signed_jwt::unverified_part(assertion, 1)
            .and_then(|c| c.get("iss").and_then(|i| i.as_str()).map(str::to_owned))
            .ok_or_else(|| refused("it names no issuer"))?;
        let idp = self.trusted_idp(issuer.trim_end_matches('/')).await?;
        let keys = match self.issuer_keys(&idp.issuer, signed_jwt::key_id(assertion).as_deref()).await {
            Ok(keys) => keys,
            Err(AppError::Unavailable) => return Err(OAuthError::temporarily_unavailable()),
            Err(e) => {
                tracing::warn!(error = %e, idp = %idp.id, "an IdP's keys could not be fetched");
                return Err(OAuthError::new(
                    OAuthErrorCode::TemporarilyUnavailable,
                    "the identity provider's keys could not be fetched; try again",
                ));
            }
        };
        let with_slash = format!("{}/", self.issuer);
        let expected =
            Expected { issuer: &issuer, audiences: &[&self.issuer, &with_slash], required: REQUIRED_CLAIMS };
        let claims = signed_jwt::verify(assertion, &keys, &expected).map_err(refused)?;
        let now = now().unix_timestamp();
        let asserted =
            check_claims(&claims, &client.client_id, now, LEEWAY_SECONDS as i64).map_err(refused)?;
        // For a resource an admin declared (an MCP server, an API behind
        // the gateway): never keyward's own APIs, which would carry the
        // user's whole role without the user in the loop.
        let resources = vec![normalize_resource(&asserted.resource)?];
        let declared = self
            .store
            .resources_by_indicator(&resources)
            .await
            .map_err(oauth_store_error("resource lookup failed"))?;
        if declared.is_empty() {
            return Err(refused("its resource is not one keyward protects (declared resources only)"));
        }
        let ceiling = match asserted.scope.as_deref() {
            Some(scope) => scope.to_string(),
            None => self.scopes_for(None, &resources).await?.join(" "),
        };
        let scope =
            granted_scope(scope, &ceiling).map_err(|e| OAuthError::new(OAuthErrorCode::InvalidScope, e))?;
        let scopes = self.scopes_for(Some(&scope), &resources).await?;
        refuse_offline_access(&scopes)?;
        // Single use: kept until it could no longer be accepted anyway.
        let hash = self.secrets.digest(&format!("id-jag\n{}\n{}", idp.issuer, asserted.jti));
        let kept_until = asserted.expires_at.saturating_add(LEEWAY_SECONDS as i64).saturating_mul(MICROS);
        let host = url::Url::parse(&idp.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let spent = self
            .store
            .spend_client_assertion(&hash, &host, now * MICROS, kept_until, ASSERTIONS_PER_HOST)
            .await
            .map_err(oauth_store_error("the identity assertion could not be recorded"))?;
        match spent {
            AssertionSpending::Spent => {}
            AssertionSpending::UsedBefore => return Err(refused("it was used before (jti)")),
            AssertionSpending::TooMany => {
                return Err(refused(format!(
                    "{host} has {ASSERTIONS_PER_HOST} unexpired assertions already"
                )));
            }
        }
        let linked = self
            .store
            .sso_linked_user(&idp.id, &asserted.subject)
            .await
            .map_err(oauth_store_error("the linked user could not be read"))?;
        let user = match linked {
            Some(id) => self.store.user(id).await.map_err(oauth_store_error("the user could not be read"))?,
            None => None,
        };
        let user = user.filter(|u| !u.disabled).ok_or_else(|| {
            refused(format!(
                "no active keyward user is linked to this subject of {}; they sign in through it once first",
                idp.display_name
            ))
        })?;
        let scope = scopes.join(" ");
        // No grant holds this token: it lives an hour at most.
        let lifetime = client.access_token_lifetime.min(MAX_LIFETIME_SECONDS);
        let token = self.user_access_token(client, &user, &scope, &resources, ("jwt-bearer", lifetime));
        Ok(TokenResponse {
            access_token: token.jwt,
            token_type: "Bearer".into(),
            expires_in: lifetime,
            refresh_token: None,
            scope,
        })
    }

    /// The enabled SSO provider with this issuer that an admin trusts for
    /// identity assertions.
    async fn trusted_idp(&self, issuer: &str) -> Result<SsoProvider, OAuthError> {
        let providers =
            self.store.sso_providers().await.map_err(oauth_store_error("SSO providers could not be read"))?;
        providers
            .into_iter()
            .map(|r| r.provider)
            .find(|p| p.enabled && p.id_jag && p.issuer == issuer)
            .ok_or_else(|| refused("its issuer is not an identity provider trusted for identity assertions"))
    }
}

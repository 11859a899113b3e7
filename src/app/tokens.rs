//! JWT access tokens (RFC 9068): issuing, verifying, introspecting
//! (RFC 7662) and revoking (RFC 7009).

use super::error::oauth_store_error;
use super::{App, AppError};
use crate::crypto::{SecretKind, random_string};
use crate::domain::audit::AuditEvent;
use crate::domain::client::M2mClient;
use crate::domain::oauth::{OAuthError, OAuthErrorCode, refuse_offline_access};
use crate::domain::token::{AccessTokenClaims, Audience};
use crate::domain::{Actor, Caller, Principal, Role, now, to_micros};
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A token response (RFC 6749 §5.1), for every grant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// What an access token is made for.
pub(super) struct AccessTokenGrant<'a> {
    /// Who the issuance is audited as.
    pub actor: Actor,
    /// The client id (machine tokens) or the user id (delegated ones).
    pub sub: String,
    pub client_id: &'a str,
    pub role: Role,
    pub scope: &'a str,
    /// Become `aud`; none means keyward itself.
    pub resources: &'a [String],
    /// Seconds.
    pub lifetime: i64,
    pub grant_type: &'static str,
    pub client_addr: Option<String>,
}

/// A signed access token and what it is known by.
pub(super) struct SignedToken {
    pub jwt: String,
    pub jti: String,
    /// Unix seconds.
    pub exp: i64,
}

/// Leeway for clocks of nodes and resource servers that differ a little.
const LEEWAY_SECONDS: u64 = 5;

/// Why a token is not acceptable, for introspection and authentication.
#[derive(Debug)]
pub enum Rejected {
    Invalid,
    Expired,
    Revoked,
    /// It could not be checked now (the database is out of reach): no
    /// verdict, the caller tries again.
    Unavailable,
}

impl App {
    /// Signs an access token (RFC 9068): the one place its claims are made,
    /// for every grant. The issuance is audited in batches.
    pub(super) fn sign_access_token(&self, grant: AccessTokenGrant<'_>) -> SignedToken {
        let aud =
            if grant.resources.is_empty() { vec![self.issuer.clone()] } else { grant.resources.to_vec() };
        let iat = now().unix_timestamp();
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: grant.sub,
            aud: Audience::from_list(aud),
            exp: iat + grant.lifetime,
            iat,
            nbf: iat,
            jti: random_string::<16>(),
            client_id: grant.client_id.to_string(),
            scope: grant.scope.to_string(),
            role: grant.role,
        };
        let jwt = self.keys.current().signing_key().sign_jwt(&claims);
        let mut event = AuditEvent::success(grant.actor, "token.issued", format!("token:{}", claims.jti))
            .with_detail(json!({
                "grant_type": grant.grant_type, "client_id": claims.client_id, "scope": claims.scope,
                "aud": claims.aud, "exp": claims.exp,
            }));
        event.client_addr = grant.client_addr;
        self.audit.record(event);
        SignedToken { jwt, jti: claims.jti, exp: claims.exp }
    }

    /// `client_credentials` (RFC 6749 §4.4) for an authenticated client.
    pub async fn client_credentials_token(
        &self,
        client: &M2mClient,
        scope: Option<&str>,
        resources: &[String],
        client_addr: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let scopes = self.scopes_for(scope, resources).await?;
        refuse_offline_access(&scopes)?;
        let scope = scopes.join(" ");
        let token = self.sign_access_token(AccessTokenGrant {
            actor: Actor::Client(client.client_id.clone()),
            sub: client.client_id.clone(),
            client_id: &client.client_id,
            role: client.role,
            scope: &scope,
            resources,
            lifetime: client.access_token_duration,
            grant_type: "client_credentials",
            client_addr,
        });
        Ok(TokenResponse {
            access_token: token.jwt,
            token_type: "Bearer".into(),
            expires_in: client.access_token_duration,
            refresh_token: None,
            scope,
        })
    }

    /// Checks signature (algorithm pinned to the key named by `kid`), `typ`,
    /// `iss`, `exp`, `nbf`, and `aud` when given, then revocation.
    pub async fn verify_access_token(
        &self,
        jwt: &str,
        audience: Option<&str>,
    ) -> Result<AccessTokenClaims, Rejected> {
        let remembered_as = format!("{}\n{jwt}", audience.unwrap_or(""));
        let at = crate::domain::now().unix_timestamp();
        let generation = self.verified.generation();
        if let Some(claims) = self.verified.get(&remembered_as, |c| c.exp > at) {
            if !self.store.is_shared() {
                return Ok(claims);
            }
            // With several nodes, another may have revoked it a moment ago.
            return self.not_revoked(claims).await;
        }
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| Rejected::Invalid)?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        let kid = header.kid.as_deref().filter(|_| typ_ok).ok_or(Rejected::Invalid)?;
        let set = match self.verifying_key(kid).await {
            Ok(set) => set.ok_or(Rejected::Invalid)?,
            // The keys could not be read: no verdict on the token.
            Err(e) => {
                tracing::error!(error = %e, "signing keys could not be read");
                return Err(Rejected::Unavailable);
            }
        };
        let key = &set.verifiers[kid];
        let mut validation = Validation::new(key.alg.jsonwebtoken());
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<AccessTokenClaims>(jwt, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => Rejected::Expired,
                    _ => Rejected::Invalid,
                }
            })?;
        let claims = self.not_revoked(data.claims).await?;
        self.verified.put(remembered_as, claims.clone(), generation);
        Ok(claims)
    }

    /// `claims`, unless their token is revoked.
    async fn not_revoked(&self, claims: AccessTokenClaims) -> Result<AccessTokenClaims, Rejected> {
        match self.store.is_jti_revoked(&claims.jti).await {
            Ok(false) => Ok(claims),
            Ok(true) => Err(Rejected::Revoked),
            Err(e) => {
                tracing::error!(error = %e, "revocation check failed");
                Err(Rejected::Unavailable)
            }
        }
    }

    /// A JWT presented to keyward's own APIs: its audience must be keyward.
    pub(super) async fn authenticate_jwt(&self, jwt: &str) -> Result<Caller, AppError> {
        let claims = self.verify_access_token(jwt, Some(&self.issuer)).await.map_err(|r| {
            AppError::Unauthorized(
                match r {
                    Rejected::Invalid => "the access token is not valid",
                    Rejected::Expired => "the access token has expired",
                    Rejected::Revoked => "the access token has been revoked",
                    Rejected::Unavailable => return AppError::Unavailable,
                }
                .into(),
            )
        })?;
        self.token_subject(&claims).await?.ok_or_else(|| {
            AppError::Unauthorized("the access token's client or user is no longer active".into())
        })
    }

    /// Who a verified token speaks for, as they are now (not as the token
    /// says): a disabled, deleted or re-roled client or user counts from the
    /// next request on. Machine tokens have the client as `sub`; delegated
    /// ones the user.
    pub(super) async fn token_subject(&self, claims: &AccessTokenClaims) -> Result<Option<Caller>, AppError> {
        if claims.sub == claims.client_id {
            let Some(record) = self.client_record(&claims.client_id).await? else { return Ok(None) };
            let revived = record.client.tokens_not_before.is_some_and(|t| claims.iat <= t);
            return Ok((!record.client.disabled && !revived).then(|| Caller {
                principal: Principal::Client {
                    client_id: record.client.client_id.clone(),
                    is_service: record.client.is_service,
                },
                role: record.client.role,
                scope: Some(claims.scope.clone()),
                via_client: None,
            }));
        }
        let Ok(user_id) = claims.sub.parse::<i64>() else { return Ok(None) };
        let Some(user) = self.store.user(user_id).await? else { return Ok(None) };
        let client_exists = self.store.oauth_client(&claims.client_id).await?.is_some();
        // Strictly before: a token made in the second after a password
        // change must work (`iat` has no finer grain).
        let ended = user.tokens_not_before.is_some_and(|t| claims.iat < t);
        Ok((client_exists && !user.disabled && !ended).then(|| Caller {
            principal: Principal::User { id: user.id, username: user.username },
            role: user.role,
            scope: Some(claims.scope.clone()),
            via_client: Some(claims.client_id.clone()),
        }))
    }

    /// RFC 7662 introspection response for `token`, as `client` may see it.
    /// Who the token speaks for (`sub`, `username`, `role`, `jti`) is told
    /// only to service identities (the platform's resource servers) and to
    /// the client the token was issued to; any other client learns whether
    /// it is active and what it is for, nothing about the person.
    pub async fn introspect_for(&self, client: &M2mClient, token: &str) -> Result<Value, AppError> {
        let mut answer = self.introspect(token).await?;
        let entitled = client.is_service || answer["client_id"].as_str() == Some(client.client_id.as_str());
        if let (false, Some(fields)) = (entitled, answer.as_object_mut()) {
            for private in ["sub", "username", "role", "jti"] {
                fields.remove(private);
            }
        }
        Ok(answer)
    }

    /// The whole RFC 7662 answer for `token`.
    pub async fn introspect(&self, token: &str) -> Result<Value, AppError> {
        Ok(match self.verify_access_token(token, None).await {
            Ok(c) => {
                let Some(subject) = self.token_subject(&c).await? else {
                    return Ok(json!({"active": false}));
                };
                let username = match subject.principal {
                    Principal::User { username, .. } => Some(username),
                    Principal::Client { .. } => None,
                };
                json!({
                    "username": username,
                    "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
                    "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "nbf": c.nbf,
                    "jti": c.jti, "role": subject.role,
                })
            }
            Err(Rejected::Unavailable) => return Err(AppError::Unavailable),
            Err(_) => json!({"active": false}),
        })
    }

    /// RFC 7009: revokes `token` if `client_id` (authenticated) may: an
    /// access token issued to that client, or a delegated client's refresh
    /// token, which takes its whole family with it. Unknown, invalid or
    /// expired tokens are no error (§2.2).
    pub async fn revoke(&self, client_id: &str, token: &str) -> Result<(), OAuthError> {
        let failed = oauth_store_error("revocation failed");
        let not_yours =
            || OAuthError::new(OAuthErrorCode::UnauthorizedClient, "the token was not issued to this client");
        if SecretKind::of(token) == Some(SecretKind::OAuthRefreshToken) {
            let Some(state) =
                self.store.oauth_refresh_token(&self.secrets.digest(token)).await.map_err(failed)?
            else {
                return Ok(());
            };
            if state.grant.client_id != client_id {
                return Err(not_yours());
            }
            if state.grant.revoked {
                return Ok(());
            }
            let event = AuditEvent::success(
                Actor::Client(client_id.to_string()),
                "grant.revoked",
                format!("oauth_client:{client_id}"),
            )
            .with_detail(json!({"grant_id": state.grant.id, "via": "revocation_endpoint"}));
            return self.store.revoke_grant(state.grant.id, to_micros(now()), event).await.map_err(failed);
        }
        let claims = match self.verify_access_token(token, None).await {
            Ok(c) => c,
            // Not checked is not revoked: the caller must try again.
            Err(Rejected::Unavailable) => return Err(OAuthError::temporarily_unavailable()),
            Err(_) => return Ok(()),
        };
        if claims.client_id != client_id {
            return Err(not_yours());
        }
        let event = AuditEvent::success(
            Actor::Client(client_id.to_string()),
            "token.revoked",
            format!("token:{}", claims.jti),
        );
        self.store.revoke_jti(&claims.jti, claims.exp * 1_000_000, event).await.map_err(failed)
    }
}

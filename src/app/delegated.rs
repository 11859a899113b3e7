//! Delegated OAuth (SPEC §1.1, §3): client registration, the authorization
//! request, browser sessions and consent, authorization codes, and the
//! `authorization_code` and `refresh_token` grants with rotation.

use super::client_metadata::DocumentRefusal;
use super::error::{oauth_app_error, oauth_store_error};
use super::tokens::{AccessTokenGrant, SignedToken, TokenResponse};
use super::{App, AppError};
use crate::crypto::{SecretKind, new_secret, pkce_s256_matches, random_bytes};
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::client_metadata::{ASSERTIONS_PER_HOST, DocumentKeys, check_assertion, is_document_url};
use crate::domain::delegated::{
    ClientType, DelegatedClient, OfflineAccess, REDIRECT_URIS_MAX, preset, preset_names, valid_pkce_string,
    validate_lifetimes, validate_redirect_uri,
};
use crate::domain::oauth::{OAuthError, OAuthErrorCode, OFFLINE_ACCESS, normalize_resource, parse_scope};
use crate::domain::registration::Registration;
use crate::domain::settings::{
    DYNAMIC_CODE_QUOTA, DYNAMIC_GRANT_QUOTA, PUBLIC_CLIENTS, REFRESH_REUSE_GRACE, ROTATE_CONFIDENTIAL_REFRESH,
};
use crate::domain::signed_jwt::LEEWAY_SECONDS;
use crate::domain::{Actor, User, now, to_micros};
use crate::domain::{MICROS, excerpt};
use crate::store::{
    AssertionSpending, CodeState, IssuedInGrant, NewAuthorizationCode, OAuthClientRecord, OAuthRefreshState,
    StoreError,
};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Authorization codes live at most this long (SPEC §3: short-lived).
pub const CODE_LIFETIME_SECONDS: i64 = 60;
const NAME_MAX: usize = 200;
/// Every delegated client id starts so (M2M ones with `m2m_`).
pub const DELEGATED_CLIENT_PREFIX: &str = "oac_";

/// How a client proved who it is at the token or revocation endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientProof {
    /// Nothing: a public client.
    None,
    /// `client_secret_basic` or `client_secret_post`.
    Secret(String),
    /// `private_key_jwt` (RFC 7523 §2.2).
    Assertion(String),
}

/// Why a public client is refused while `keyward.oauth.public_clients` is off.
pub const PUBLIC_CLIENTS_OFF: &str =
    "public clients are turned off on this server (keyward.oauth.public_clients); use a confidential client";

/// A registration or replacement, as the API receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    pub name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Named presets (`vscode`, `claude`, `chatgpt`) whose URIs are added.
    #[serde(default)]
    pub redirect_uri_presets: Vec<String>,
    pub grant_type: ClientType,
    pub refresh_token_lifetime: i64,
    pub access_token_lifetime: i64,
    #[serde(default = "default_true")]
    pub pkce_enabled: bool,
    #[serde(default)]
    pub offline_access: OfflineAccess,
}

fn default_true() -> bool {
    true
}

/// The parameters of an authorization request as they arrived.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub scope: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    #[serde(default)]
    pub resource: Vec<String>,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: DelegatedClient,
    /// As requested (a loopback URI may differ in port from the registered one).
    pub redirect_uri: String,
    pub state: Option<String>,
    /// Sorted and space-separated: also the key of remembered consent.
    pub scope: String,
    pub code_challenge: Option<String>,
    pub resources: Vec<String>,
}

/// Why an authorization request fails: before the client and redirect URI
/// are known to be good the user sees a page; after, the client hears of it.
#[derive(Debug)]
pub enum AuthorizeError {
    Page(String),
    Redirect(String),
    /// The request could not be checked now (an outage): no verdict.
    Unavailable,
}

impl From<DocumentRefusal> for AuthorizeError {
    fn from(refusal: DocumentRefusal) -> Self {
        match refusal {
            DocumentRefusal::Refused(why) => AuthorizeError::Page(why),
            DocumentRefusal::Unavailable => AuthorizeError::Unavailable,
        }
    }
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

/// `redirect_uri` with `params` added to its query; `None` when it is not
/// a URL (requests are checked for that before anything redirects).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    Some(url.to_string())
}

fn not_a_url() -> AppError {
    AppError::Invalid("the redirect_uri is not a valid URL".into())
}

impl App {
    fn validate_registration(&self, r: &ClientRegistration) -> Result<(Vec<String>, bool), AppError> {
        let name = r.name.trim();
        if name.is_empty() || r.name.chars().count() > NAME_MAX || r.name.chars().any(char::is_control) {
            return Err(AppError::Invalid(format!("name must be 1 to {NAME_MAX} characters")));
        }
        validate_lifetimes(r.refresh_token_lifetime, r.access_token_lifetime).map_err(AppError::Invalid)?;
        let mut uris: Vec<String> = Vec::new();
        for name in &r.redirect_uri_presets {
            let found = preset(name).ok_or_else(|| {
                AppError::Invalid(format!(
                    "unknown redirect_uri_presets entry {name:?}; known: {}",
                    preset_names()
                ))
            })?;
            uris.extend(found.iter().map(|u| u.to_string()));
        }
        uris.extend(r.redirect_uris.iter().cloned());
        uris.dedup();
        if uris.is_empty() {
            return Err(AppError::Invalid("redirect_uris must name at least one redirect URI".into()));
        }
        if uris.len() > REDIRECT_URIS_MAX {
            return Err(AppError::Invalid(format!("at most {REDIRECT_URIS_MAX} redirect URIs")));
        }
        for uri in &uris {
            validate_redirect_uri(uri).map_err(AppError::Invalid)?;
        }
        // Public clients cannot keep a secret: PKCE is what protects them.
        let pkce = r.pkce_enabled || r.grant_type == ClientType::Public;
        Ok((uris, pkce))
    }

    /// Whether public delegated clients may be registered and used
    /// (`keyward.oauth.public_clients`).
    /// Unread, it is no answer: the caller tries again.
    pub async fn public_clients_allowed(&self) -> Result<bool, AppError> {
        Ok(self.setting(PUBLIC_CLIENTS).await?.as_bool())
    }

    /// Registers a client; the secret (confidential clients only) is shown this once.
    pub async fn register_oauth_client(
        &self,
        actor: Actor,
        r: ClientRegistration,
    ) -> Result<(DelegatedClient, Option<String>), AppError> {
        let (redirect_uris, pkce_enabled) = self.validate_registration(&r)?;
        if r.grant_type == ClientType::Public && !self.public_clients_allowed().await? {
            return Err(AppError::Invalid(PUBLIC_CLIENTS_OFF.into()));
        }
        let client_id = new_delegated_client_id();
        let secret = (r.grant_type == ClientType::Confidential).then(|| new_secret(SecretKind::ClientSecret));
        let event = AuditEvent::success(actor, "oauth_client.created", format!("oauth_client:{client_id}"))
            .with_detail(json!({"name": r.name, "grant_type": r.grant_type, "redirect_uris": redirect_uris}));
        let new = OAuthClientRecord {
            client: DelegatedClient {
                client_id,
                name: r.name.clone(),
                redirect_uris,
                grant_type: r.grant_type,
                refresh_token_lifetime: r.refresh_token_lifetime,
                access_token_lifetime: r.access_token_lifetime,
                pkce_enabled,
                created_at: now(),
                registration: Registration::Admin,
                offline_access: r.offline_access,
            },
            secret_hash: secret.as_deref().map(|s| self.secrets.digest(s)),
            metadata: None,
            registration_token_hash: None,
        };
        Ok((self.store.create_oauth_client(new, event).await?, secret))
    }

    pub async fn oauth_client(&self, client_id: &str) -> Result<DelegatedClient, AppError> {
        Ok(self.store.oauth_client(client_id).await?.ok_or_else(|| oauth_client_not_found(client_id))?.client)
    }

    /// PUT: replaces everything but the client type and the secret.
    pub async fn replace_oauth_client(
        &self,
        actor: Actor,
        client_id: &str,
        r: ClientRegistration,
    ) -> Result<DelegatedClient, AppError> {
        let current = self.oauth_client(client_id).await?;
        if current.grant_type != r.grant_type {
            return Err(AppError::Invalid("grant_type cannot change; register a new client".into()));
        }
        let (redirect_uris, pkce_enabled) = self.validate_registration(&r)?;
        let event = AuditEvent::success(actor, "oauth_client.updated", format!("oauth_client:{client_id}"))
            .with_detail(json!({"name": r.name, "redirect_uris": redirect_uris}));
        let new = OAuthClientRecord {
            client: DelegatedClient {
                name: r.name.clone(),
                redirect_uris,
                refresh_token_lifetime: r.refresh_token_lifetime,
                access_token_lifetime: r.access_token_lifetime,
                pkce_enabled,
                offline_access: r.offline_access,
                ..current
            },
            secret_hash: None,
            metadata: None,
            registration_token_hash: None,
        };
        self.store.replace_oauth_client(new, event).await.map_err(|e| not_found_as(e, client_id))
    }

    pub async fn delete_oauth_client(&self, actor: Actor, client_id: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "oauth_client.deleted", format!("oauth_client:{client_id}"));
        self.store.delete_oauth_client(client_id, event).await.map_err(|e| not_found_as(e, client_id))
    }

    pub async fn rotate_oauth_client_secret(
        &self,
        actor: Actor,
        client_id: &str,
    ) -> Result<String, AppError> {
        let client = self.oauth_client(client_id).await?;
        if client.grant_type == ClientType::Public {
            return Err(AppError::Invalid("public clients have no secret".into()));
        }
        let secret = new_secret(SecretKind::ClientSecret);
        let event =
            AuditEvent::success(actor, "oauth_client.secret_rotated", format!("oauth_client:{client_id}"));
        self.store
            .set_oauth_client_secret(client_id, &self.secrets.digest(&secret), event)
            .await
            .map_err(|e| not_found_as(e, client_id))?;
        Ok(secret)
    }

    /// Validates an authorization request. The client and redirect URI are
    /// checked before anything else, and their failures never redirect.
    pub async fn validate_authorization_request(
        &self,
        p: &AuthorizeParams,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let client_id =
            p.client_id.as_deref().ok_or_else(|| AuthorizeError::Page("client_id is required".into()))?;
        let (client, limits) = if is_document_url(client_id) {
            let found = self.metadata_document_client(client_id).await?;
            (found.client, Some(found.limits))
        } else {
            match self.store.oauth_client(client_id).await {
                Ok(Some(r)) => (r.client, r.metadata.map(|m| m.limits())),
                Ok(None) => return Err(AuthorizeError::Page("unknown client".into())),
                Err(e) => {
                    tracing::error!(error = %e, "client lookup failed");
                    return Err(AuthorizeError::Unavailable);
                }
            }
        };
        let unchecked = |_| AuthorizeError::Unavailable;
        if client.grant_type == ClientType::Public
            && !self.public_clients_allowed().await.map_err(unchecked)?
        {
            return Err(AuthorizeError::Page(PUBLIC_CLIENTS_OFF.into()));
        }
        let redirect_uri = match p.redirect_uri.as_deref() {
            Some(requested) => match client.matching_redirect_uri(requested) {
                Some(_) if url::Url::parse(requested).is_ok() => requested.to_string(),
                Some(_) => return Err(AuthorizeError::Page(not_a_url().to_string())),
                None => {
                    return Err(AuthorizeError::Page(
                        "the redirect_uri is not registered for this client".into(),
                    ));
                }
            },
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => return Err(AuthorizeError::Page("redirect_uri is required".into())),
        };
        // From here on the client hears of errors at its redirect URI.
        // A client that registered itself is not trusted with a redirect
        // before a person approved it: its errors are a page, so that it
        // cannot turn keyward into an open redirector.
        let self_registered = client.registration != Registration::Admin;
        let fail = |e: OAuthError| {
            if self_registered {
                return AuthorizeError::Page(format!("{}: {}", e.code.as_str(), e.description));
            }
            let mut params = vec![("error", e.code.as_str()), ("error_description", e.description.as_str())];
            if let Some(state) = &p.state {
                params.push(("state", state.as_str()));
            }
            params.push(("iss", self.issuer.as_str()));
            match redirect_with(&redirect_uri, &params) {
                Some(url) => AuthorizeError::Redirect(url),
                None => AuthorizeError::Page(not_a_url().to_string()),
            }
        };
        if p.response_type.as_deref() != Some("code") {
            return Err(fail(OAuthError::new(
                OAuthErrorCode::UnsupportedResponseType,
                "response_type must be code",
            )));
        }
        let code_challenge = match (p.code_challenge.as_deref(), p.code_challenge_method.as_deref()) {
            (None, Some(_)) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge_method without code_challenge",
                )));
            }
            (None, None) if client.requires_pkce() => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge (PKCE, S256) is required for this client",
                )));
            }
            (None, None) => None,
            (Some(_), method) if method != Some("S256") => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge_method must be S256 (plain is not allowed)",
                )));
            }
            (Some(challenge), _) if !valid_pkce_string(challenge) => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge must be 43 to 128 unreserved characters",
                )));
            }
            (Some(challenge), _) => Some(challenge.to_string()),
        };
        let mut resources =
            p.resource.iter().map(|r| normalize_resource(r)).collect::<Result<Vec<_>, _>>().map_err(fail)?;
        // Sorted: the consent is remembered for this set.
        resources.sort();
        resources.dedup();
        let mut scopes = self.scopes_for(p.scope.as_deref(), &resources).await.map_err(fail)?;
        // A client registered for refresh tokens asks for offline access by
        // that; the consent page shows it as asked.
        if client.offline_access == OfflineAccess::Always && !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
            scopes.push(OFFLINE_ACCESS.to_string());
            scopes.sort();
        }
        // What a self-registered client said it would ask for is its limit.
        if let Some(limits) = &limits {
            if let Some(outside) = limits.outside(&scopes) {
                return Err(fail(OAuthError::new(
                    OAuthErrorCode::InvalidScope,
                    format!("scope {outside:?} is outside what this client registered for"),
                )));
            }
        }
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            state: p.state.clone(),
            scope: scopes.join(" "),
            code_challenge,
            resources,
        })
    }

    /// A form's anti-forgery token, derived from what only this browser holds
    /// (its session or pre-login cookie) under a server key.
    pub fn csrf_token(&self, purpose: &str, cookie: &str) -> String {
        self.secrets.digest(&format!("csrf:{purpose}:{cookie}"))
    }

    pub fn csrf_matches(&self, purpose: &str, cookie: &str, submitted: &str) -> bool {
        verify_slices_are_equal(self.csrf_token(purpose, cookie).as_bytes(), submitted.as_bytes()).is_ok()
    }

    /// Whether the user approved this client and scope before. Clients that
    /// registered themselves are never trusted so far: they always ask.
    pub async fn has_consent(&self, user: &User, request: &AuthorizationRequest) -> Result<bool, AppError> {
        if request.client.registration != Registration::Admin {
            return Ok(false);
        }
        Ok(self
            .store
            .has_consent(user.id, &request.client.client_id, &request.scope, &request.resources)
            .await?)
    }

    /// The user approved: remember it, issue a code, and say where to send
    /// the browser (`code`, `state`, `iss`: RFC 9207).
    pub async fn approve(
        &self,
        user: &User,
        request: &AuthorizationRequest,
        newly: bool,
    ) -> Result<String, AppError> {
        let at = to_micros(now());
        match request.client.registration {
            Registration::Admin => {}
            Registration::Dynamic => {
                self.within_dynamic_quotas(&request.client.client_id, at).await?;
                self.store.mark_client_approved(&request.client.client_id, at).await?;
            }
            Registration::MetadataDocument => {
                self.keep_metadata_document_client(&request.client).await?;
                self.within_dynamic_quotas(&request.client.client_id, at).await?;
            }
        }
        if newly {
            let event = AuditEvent::success(
                Actor::User(user.id),
                "consent.granted",
                format!("oauth_client:{}", request.client.client_id),
            )
            .with_detail(json!({"scope": request.scope}));
            self.store
                .add_consent(user.id, &request.client.client_id, &request.scope, &request.resources, event)
                .await?;
        }
        let code = new_secret(SecretKind::AuthorizationCode);
        self.store
            .insert_authorization_code(NewAuthorizationCode {
                code_hash: self.secrets.digest(&code),
                client_id: request.client.client_id.clone(),
                user_id: user.id,
                redirect_uri: request.redirect_uri.clone(),
                scope: request.scope.clone(),
                resources: request.resources.clone(),
                code_challenge: request.code_challenge.clone(),
                created_at: at,
                expires_at: at + CODE_LIFETIME_SECONDS * MICROS,
            })
            .await?;
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &request.state {
            params.push(("state", state.as_str()));
        }
        params.push(("iss", self.issuer.as_str()));
        redirect_with(&request.redirect_uri, &params).ok_or_else(not_a_url)
    }

    /// A self-registered client may hold only so many codes and grants, so
    /// that one registration cannot fill the database. A soft limit: requests
    /// racing each other may pass it by as many as run at once.
    async fn within_dynamic_quotas(&self, client_id: &str, at: i64) -> Result<(), AppError> {
        let (codes, grants) = self.store.client_usage(client_id, at).await?;
        let code_quota = self.setting(DYNAMIC_CODE_QUOTA).await?.as_i64().unwrap_or(100);
        let grant_quota = self.setting(DYNAMIC_GRANT_QUOTA).await?.as_i64().unwrap_or(100_000);
        if codes >= code_quota || grants >= grant_quota {
            return Err(AppError::TooManyRequests { retry_after: CODE_LIFETIME_SECONDS });
        }
        Ok(())
    }

    /// The user said no (RFC 6749 §4.1.2.1 `access_denied`).
    pub fn deny(&self, request: &AuthorizationRequest) -> Option<String> {
        let mut params =
            vec![("error", "access_denied"), ("error_description", "the user denied the request")];
        if let Some(state) = &request.state {
            params.push(("state", state.as_str()));
        }
        params.push(("iss", self.issuer.as_str()));
        redirect_with(&request.redirect_uri, &params)
    }

    /// A user's remembered consents: `(client_id, scope, created_at µs)`.
    pub async fn consents(&self, user_id: i64) -> Result<Vec<(String, String, i64)>, AppError> {
        Ok(self.store.consents(user_id).await?)
    }

    /// Forgets a user's consent to a client and revokes what it holds.
    pub async fn revoke_consent(&self, user_id: i64, client_id: &str) -> Result<u64, AppError> {
        let event =
            AuditEvent::success(Actor::User(user_id), "consent.revoked", format!("oauth_client:{client_id}"));
        Ok(self.store.revoke_consents(user_id, client_id, to_micros(now()), event).await?)
    }

    /// Authenticates a delegated client at the token endpoint: confidential
    /// ones by secret (or, with a metadata document, by a `private_key_jwt`
    /// assertion), public ones by nothing (PKCE protects their codes).
    pub async fn authenticate_oauth_client(
        &self,
        client_id: &str,
        proof: &ClientProof,
    ) -> Result<DelegatedClient, OAuthError> {
        let refused = |why: &str| OAuthError::new(OAuthErrorCode::InvalidClient, why);
        let failed = || refused("client authentication failed");
        if is_document_url(client_id) {
            let found = self.metadata_document_client(client_id).await.map_err(|refusal| match refusal {
                DocumentRefusal::Refused(why) => refused(&why),
                DocumentRefusal::Unavailable => OAuthError::temporarily_unavailable(),
            })?;
            return match (&found.keys, proof) {
                (None, ClientProof::None) => Ok(found.client),
                (None, _) => {
                    Err(refused("a public client with a metadata document sends no secret or assertion"))
                }
                (Some(DocumentKeys::Inline(keys)), ClientProof::Assertion(assertion)) => {
                    self.check_client_assertion(client_id, keys, assertion).await?;
                    Ok(found.client)
                }
                (Some(_), _) => {
                    Err(refused("this client authenticates with a private_key_jwt client assertion"))
                }
            };
        }
        let secret = match proof {
            ClientProof::None => None,
            ClientProof::Secret(secret) => Some(secret.as_str()),
            ClientProof::Assertion(_) => {
                return Err(refused("only clients with a metadata document authenticate with an assertion"));
            }
        };
        let record =
            self.store.oauth_client(client_id).await.map_err(oauth_store_error("client lookup failed"))?;
        let record = record.ok_or_else(failed)?;
        let public_allowed = record.client.grant_type != ClientType::Public
            || self
                .public_clients_allowed()
                .await
                .map_err(oauth_app_error("the public-client policy could not be read"))?;
        match (record.client.grant_type, secret, record.secret_hash.as_deref()) {
            (ClientType::Public, None, _) if !public_allowed => {
                Err(OAuthError::new(OAuthErrorCode::InvalidClient, PUBLIC_CLIENTS_OFF))
            }
            (ClientType::Public, None, _) => Ok(record.client),
            (ClientType::Public, Some(_), _) => Err(OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "public clients do not authenticate with a secret",
            )),
            (ClientType::Confidential, Some(secret), Some(hash))
                if verify_slices_are_equal(self.secrets.digest(secret).as_bytes(), hash.as_bytes())
                    .is_ok() =>
            {
                Ok(record.client)
            }
            _ => Err(failed()),
        }
    }

    /// Verifies a `private_key_jwt` assertion of `client_id` (RFC 7523 §3)
    /// and spends its `jti`: each assertion authenticates once.
    async fn check_client_assertion(
        &self,
        client_id: &str,
        keys: &jsonwebtoken::jwk::JwkSet,
        assertion: &str,
    ) -> Result<(), OAuthError> {
        let refused = |why: String| {
            OAuthError::new(OAuthErrorCode::InvalidClient, format!("the client assertion is refused: {why}"))
        };
        let issuer = self.issuer.as_str();
        let endpoints: Vec<String> =
            ["/oauth/v2/token/", "/oauth/v1/token/", "/oauth/v2/revoke/", "/oauth/v1/revoke/"]
                .iter()
                .map(|path| format!("{issuer}{path}"))
                .collect();
        let mut audiences = vec![issuer];
        audiences.extend(endpoints.iter().map(String::as_str));
        let now = now().unix_timestamp();
        let (jti, expires_at) =
            check_assertion(assertion, keys, client_id, &audiences, now).map_err(refused)?;
        // Kept as long as it could be accepted: until its exp, plus the skew.
        let kept_until = (expires_at + LEEWAY_SECONDS as i64) * MICROS;
        let host =
            url::Url::parse(client_id).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let hash = self.secrets.digest(&format!("{client_id}\n{jti}"));
        match self
            .store
            .spend_client_assertion(&hash, &host, now * MICROS, kept_until, ASSERTIONS_PER_HOST)
            .await
        {
            Ok(AssertionSpending::Spent) => Ok(()),
            Ok(AssertionSpending::UsedBefore) => Err(refused("it was used before (jti)".into())),
            Ok(AssertionSpending::TooMany) => Err(refused(format!(
                "the clients of {host} have {ASSERTIONS_PER_HOST} unexpired assertions already; try again later"
            ))),
            Err(e) => Err(oauth_store_error("client assertion could not be recorded")(e)),
        }
    }

    /// An access token for `user` through `client`, made by grant
    /// `grant_type` to live `lifetime` seconds.
    pub(super) fn user_access_token(
        &self,
        client: &DelegatedClient,
        user: &User,
        scope: &str,
        resources: &[String],
        (grant_type, lifetime): (&'static str, i64),
    ) -> SignedToken {
        self.sign_access_token(AccessTokenGrant {
            actor: Actor::User(user.id),
            sub: user.id.to_string(),
            client_id: &client.client_id,
            role: user.role,
            scope,
            resources,
            lifetime,
            grant_type,
            client_addr: None,
        })
    }

    /// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        client: &DelegatedClient,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        resources: &[String],
    ) -> Result<TokenResponse, OAuthError> {
        let code_hash = self.secrets.digest(code);
        let at = to_micros(now());
        let internal = oauth_store_error("code exchange failed");
        // Read first, used up only together with the grant it opens: a
        // store failure anywhere leaves the code for the client's retry.
        let record =
            match self.store.authorization_code(&code_hash, &client.client_id, at).await.map_err(internal)? {
                CodeState::Unused(record) => record,
                used @ CodeState::Used { .. } => return Err(self.code_replayed(client, used, at).await),
                CodeState::Invalid => return Err(invalid_grant("the authorization code is not valid")),
            };
        let checked =
            self.check_code_redemption(client, &record, redirect_uri, code_verifier, resources).await;
        let (user, scope, audience) = match checked {
            Ok(checked) => checked,
            Err(e) if e.is_server_side() => return Err(e),
            Err(e) => {
                // Single use even when the checks fail.
                self.store.burn_authorization_code(&code_hash, at).await.map_err(internal)?;
                return Err(e);
            }
        };
        let SignedToken { jwt: access_token, jti, exp } = self.user_access_token(
            client,
            &user,
            &scope,
            &audience,
            ("authorization_code", client.access_token_lifetime),
        );
        // A refresh token only for a grant that includes offline_access.
        let refresh = record
            .scope
            .split(' ')
            .any(|s| s == OFFLINE_ACCESS)
            .then(|| new_secret(SecretKind::OAuthRefreshToken));
        let issued = IssuedInGrant {
            refresh: refresh
                .as_deref()
                .map(|r| (self.secrets.digest(r), at + client.refresh_token_lifetime * MICROS)),
            jti,
            jti_expires_at: exp * MICROS,
        };
        let event = AuditEvent::success(
            Actor::User(user.id),
            "grant.created",
            format!("oauth_client:{}", client.client_id),
        )
        .with_detail(json!({"scope": record.scope}));
        // Expiry is judged at the redemption itself, not when the request came.
        let redeemed_at = to_micros(now());
        let redeemed = self.store.redeem_authorization_code(&record, redeemed_at, issued, event).await;
        if redeemed.map_err(internal)?.is_none() {
            // Another redemption won: this one is the replay.
            let now_state =
                self.store.authorization_code(&code_hash, &client.client_id, at).await.map_err(internal)?;
            return Err(self.code_replayed(client, now_state, at).await);
        }
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: client.access_token_lifetime,
            refresh_token: refresh,
            scope,
        })
    }

    /// What a code's redemption must satisfy besides being unused (RFC 6749
    /// §4.1.3, RFC 7636 §4.6): its user, scope and audience.
    async fn check_code_redemption(
        &self,
        client: &DelegatedClient,
        record: &NewAuthorizationCode,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
        resources: &[String],
    ) -> Result<(User, String, Vec<String>), OAuthError> {
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(invalid_grant("redirect_uri differs from the one of the authorization request"));
        }
        match (&record.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier))
                if valid_pkce_string(verifier) && pkce_s256_matches(verifier, challenge) => {}
            (Some(_), _) => return Err(invalid_grant("code_verifier does not match the code_challenge")),
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "code_verifier given, but the authorization request had no code_challenge",
                ));
            }
            (None, None) if client.requires_pkce() => {
                return Err(invalid_grant("PKCE is required for this client"));
            }
            (None, None) => {}
        }
        let audience = narrowed_resources(&record.resources, resources, &self.issuer)?;
        let scope = self.scopes_within(&record.scope, &record.resources, &audience).await?;
        let user = self.active_user(record.user_id).await?;
        Ok((user, scope, audience))
    }

    /// A code used before (or just now, by a redemption that won): what it
    /// issued is revoked (RFC 6749 §4.1.2), and the answer says so.
    async fn code_replayed(&self, client: &DelegatedClient, state: CodeState, at: i64) -> OAuthError {
        let grant_id = match state {
            CodeState::Used { grant_id } => grant_id,
            _ => return invalid_grant("the authorization code is not valid"),
        };
        if let Some(grant_id) = grant_id {
            let event = AuditEvent {
                actor: Actor::System,
                action: "authorization_code.replayed",
                target: Some(format!("oauth_client:{}", client.client_id)),
                outcome: Outcome::Failure,
                client_addr: None,
                detail: json!({"grant_id": grant_id, "revoked": true}),
            };
            if let Err(e) = self.store.revoke_grant(grant_id, at, event).await {
                return oauth_store_error("code exchange failed")(e);
            }
        }
        invalid_grant("the authorization code was already used; what it issued is revoked")
    }

    async fn active_user(&self, id: i64) -> Result<User, OAuthError> {
        match self.store.user(id).await.map_err(oauth_store_error("user lookup failed"))? {
            Some(u) if !u.disabled => Ok(u),
            _ => Err(invalid_grant("the user of this grant is no longer active")),
        }
    }

    /// `grant_type=refresh_token` (RFC 6749 §6) with rotation: a rotated
    /// token used again revokes its whole family, except within a short
    /// grace window, where a concurrent duplicate gets the same new pair.
    pub async fn refresh(
        &self,
        client: &DelegatedClient,
        refresh_token: &str,
        scope: Option<&str>,
        resources: &[String],
    ) -> Result<TokenResponse, OAuthError> {
        // A metadata document that no longer lists the refresh_token grant
        // has given up refresh tokens.
        if client.registration == Registration::MetadataDocument
            && client.offline_access != OfflineAccess::Always
        {
            return Err(OAuthError::new(
                OAuthErrorCode::UnauthorizedClient,
                "the client's metadata document does not list the refresh_token grant",
            ));
        }
        let old_hash = self.secrets.digest(refresh_token);
        let internal = oauth_store_error("refresh failed");
        let state = self.store.oauth_refresh_token(&old_hash).await.map_err(internal)?;
        let state = state
            .filter(|s| s.grant.client_id == client.client_id)
            .ok_or_else(|| invalid_grant("the refresh token is not valid"))?;
        let at = to_micros(now());
        if state.revoked || state.grant.revoked || state.expires_at <= at {
            return Err(invalid_grant("the refresh token is expired or revoked"));
        }
        if state.rotated_at.is_some() {
            return self.replayed_refresh(client, &old_hash, &state, at).await;
        }
        let audience = narrowed_resources(&state.grant.resources, resources, &self.issuer)?;
        let scope = narrowed_scope(&state.grant.scope, scope)?;
        let scope = self.scopes_within(&scope, &state.grant.resources, &audience).await?;
        let user = self.active_user(state.grant.user_id).await?;
        let rotate = client.grant_type == ClientType::Public
            || self
                .setting(ROTATE_CONFIDENTIAL_REFRESH)
                .await
                .map_err(oauth_app_error("the refresh settings could not be read"))?
                .as_bool();
        let SignedToken { jwt: access_token, jti, exp } = self.user_access_token(
            client,
            &user,
            &scope,
            &audience,
            ("refresh_token", client.access_token_lifetime),
        );
        if !rotate {
            self.store.record_grant_jti(state.grant.id, &jti, exp * MICROS).await.map_err(internal)?;
            return Ok(TokenResponse {
                access_token,
                token_type: "Bearer".into(),
                expires_in: client.access_token_lifetime,
                refresh_token: Some(refresh_token.to_string()),
                scope,
            });
        }
        let new_refresh = new_secret(SecretKind::OAuthRefreshToken);
        let response = TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: client.access_token_lifetime,
            refresh_token: Some(new_refresh.clone()),
            scope,
        };
        let sealed = self.data_key.seal_text(
            &successor_context(&old_hash),
            &serde_json::to_vec(&response).expect("token response serializes"),
        );
        let issued = IssuedInGrant {
            refresh: Some((self.secrets.digest(&new_refresh), at + client.refresh_token_lifetime * MICROS)),
            jti,
            jti_expires_at: exp * MICROS,
        };
        if let Ok(grace) = self.refresh_reuse_grace().await {
            let _ = self.store.drop_successors(at - grace * MICROS).await;
        }
        if self
            .store
            .rotate_oauth_refresh_token(&old_hash, state.grant.id, at, &sealed, issued)
            .await
            .map_err(internal)?
        {
            return Ok(response);
        }
        // A concurrent request rotated it first: answer as it was answered.
        let state = self.store.oauth_refresh_token(&old_hash).await.map_err(internal)?;
        match state {
            Some(state) => self.replayed_refresh(client, &old_hash, &state, to_micros(now())).await,
            None => Err(invalid_grant("the refresh token is not valid")),
        }
    }

    /// `keyward.oauth.refresh_token_reuse_grace`, in seconds. Unread, it is
    /// no reason to hand a replay the successor, nor to revoke a family.
    async fn refresh_reuse_grace(&self) -> Result<i64, OAuthError> {
        let setting = self
            .setting(REFRESH_REUSE_GRACE)
            .await
            .map_err(oauth_app_error("the reuse grace could not be read"))?;
        Ok(setting.as_i64().unwrap_or(10))
    }

    /// A rotated refresh token of `client` (the grant's own) used again.
    async fn replayed_refresh(
        &self,
        client: &DelegatedClient,
        old_hash: &str,
        state: &OAuthRefreshState,
        at: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grace = self.refresh_reuse_grace().await?.min(client.access_token_lifetime);
        let within_grace = state.rotated_at.is_some_and(|r| at - r <= grace * MICROS);
        if let (true, Some(sealed)) = (within_grace, &state.successor) {
            let response = self
                .data_key
                .open_text(&successor_context(old_hash), sealed)
                .ok()
                .and_then(|plain| serde_json::from_slice::<TokenResponse>(&plain).ok());
            if let Some(response) = response {
                return Ok(response);
            }
        }
        let event = AuditEvent {
            actor: Actor::User(state.grant.user_id),
            action: "refresh_token.reused",
            target: Some(format!("oauth_client:{}", state.grant.client_id)),
            outcome: Outcome::Failure,
            client_addr: None,
            detail: json!({"grant_id": state.grant.id, "family_revoked": true}),
        };
        self.store
            .revoke_grant(state.grant.id, at, event)
            .await
            .map_err(oauth_store_error("revoking a token family failed"))?;
        Err(invalid_grant("the refresh token was already used; its whole family is revoked"))
    }
}

/// A new delegated client id: the prefix and 128 random bits in hex.
pub fn new_delegated_client_id() -> String {
    format!(
        "{DELEGATED_CLIENT_PREFIX}{}",
        random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn successor_context(old_hash: &str) -> Vec<u8> {
    format!("oauth_refresh_successor:{old_hash}").into_bytes()
}

/// RFC 6749 §6: a refresh may ask for fewer scopes, never more.
fn narrowed_scope(granted: &str, requested: Option<&str>) -> Result<String, OAuthError> {
    let Some(raw) = requested else { return Ok(granted.to_string()) };
    let mut asked = parse_scope(raw)?;
    let granted: Vec<&str> = granted.split(' ').collect();
    if let Some(extra) = asked.iter().find(|s| !granted.contains(&s.as_str())) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            format!("scope {extra:?} was not granted"),
        ));
    }
    asked.sort();
    Ok(asked.join(" "))
}

/// RFC 8707 §2.2: the resources of a token request narrow those granted.
fn narrowed_resources(
    granted: &[String],
    requested: &[String],
    issuer: &str,
) -> Result<Vec<String>, OAuthError> {
    let mut requested = requested.to_vec();
    requested.sort();
    requested.dedup();
    // Naming keyward itself is what a grant without a resource means.
    if requested.is_empty() || granted.is_empty() && requested == [issuer] {
        return Ok(granted.to_vec());
    }
    // What was consented to is the limit: a grant for keyward alone (no
    // resource) does not become one for another server at the token endpoint.
    match requested.iter().find(|r| !granted.contains(r)) {
        Some(r) => Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            format!(
                "resource {r:?} was not part of the authorization; ask for it at the authorization endpoint"
            ),
        )),
        None => Ok(requested),
    }
}

fn oauth_client_not_found(client_id: &str) -> AppError {
    let shown = excerpt(client_id, 80);
    AppError::NotFound(format!("no OAuth client with id {shown:?}"))
}

fn not_found_as(e: StoreError, client_id: &str) -> AppError {
    match e {
        StoreError::NotFound => oauth_client_not_found(client_id),
        e => e.into(),
    }
}

//! Single sign-on through upstream OpenID Connect providers (SPEC §1.3):
//! admins declare providers; a browser signs in at one with authorization
//! code + PKCE + state + nonce; the ID token is verified against the
//! provider's published keys; the subject signs in as the user it is
//! linked to, or is provisioned. The pending sign-in travels in a cookie
//! sealed under the data key, so any node can finish it.

use super::{App, AppError, SignIn};
use crate::crypto::{pkce_s256_challenge, random_string};
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::outbound::validate_outbound_url;
use crate::domain::sso::{
    IdTokenExpectation, SameName, SignInAs, SsoProvider, SsoProviderInput, SsoRefusal, authorization_url,
    id_token_kid, sign_in_as, verify_id_token,
};
use crate::domain::{Actor, excerpt, from_micros, now, to_micros};
use crate::store::{NewUser, SsoProviderRecord, StoreError, UserUpdate};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents and key sets larger than this are refused.
const DOCUMENT_MAX_BYTES: usize = 256 * 1024;
/// How long a discovery document is trusted before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Keys are fetched again for an unknown `kid`, but not more often than this.
const KEYS_REFETCH_AFTER: Duration = Duration::from_secs(30);
/// How long a browser has to come back from the provider.
pub const SIGN_IN_WINDOW_SECONDS: i64 = 600;

/// A provider as admins see it (never its secret).
#[derive(Debug, Serialize)]
pub struct SsoProviderView {
    #[serde(flatten)]
    pub provider: SsoProvider,
    pub has_client_secret: bool,
    /// The redirect URI to register at the provider.
    pub redirect_uri: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// What keyward uses of a provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

struct CachedProvider {
    discovery: Discovery,
    fetched: Instant,
    keys: Option<(JwkSet, Instant)>,
}

/// Discovery documents and key sets by issuer, on this node.
#[derive(Default)]
pub struct SsoCache {
    by_issuer: Mutex<HashMap<String, CachedProvider>>,
}

/// A sign-in under way, sealed into the browser's cookie.
#[derive(Serialize, Deserialize)]
struct PendingSignIn {
    provider: String,
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    expires_at: i64,
}

const PENDING_CONTEXT: &[u8] = b"sso_pending_sign_in";

/// A provider's answer at `/login/sso/<id>/callback/`.
#[derive(Clone, Copy)]
pub struct SsoAnswer<'a> {
    pub provider_id: &'a str,
    /// The callback's query.
    pub params: &'a HashMap<String, String>,
    /// The browser's pending sign-in cookie.
    pub cookie: Option<&'a str>,
    pub addr: IpAddr,
}

fn secret_context(id: &str) -> Vec<u8> {
    format!("sso_client_secret:{id}").into_bytes()
}

fn upstream(what: &str) -> impl Fn(reqwest::Error) -> AppError + '_ {
    move |e| AppError::Upstream(format!("the provider's {what} could not be fetched: {}", e.without_url()))
}

impl App {
    /// Where a provider sends the browser back: one path per provider, so
    /// an answer cannot be taken for another provider's (mix-up).
    pub fn sso_redirect_uri(&self, id: &str) -> String {
        format!("{}/login/sso/{id}/callback/", self.issuer)
    }

    fn sso_view(&self, r: SsoProviderRecord) -> SsoProviderView {
        SsoProviderView {
            redirect_uri: self.sso_redirect_uri(&r.provider.id),
            has_client_secret: r.sealed_client_secret.is_some(),
            created_at: from_micros(r.created_at),
            updated_at: from_micros(r.updated_at),
            provider: r.provider,
        }
    }

    /// Creates (or, `replace`, replaces) provider `id`. Its discovery
    /// document is fetched first: a provider that cannot be reached, or
    /// names another issuer, is refused.
    pub async fn put_sso_provider(
        &self,
        actor: Actor,
        id: &str,
        input: SsoProviderInput,
        replace: bool,
    ) -> Result<SsoProviderView, AppError> {
        let allow_private = self.allow_private_addresses().await;
        let (provider, secret) = input
            .into_provider(id, |url| validate_outbound_url("the URL", url, allow_private))
            .map_err(AppError::Invalid)?;
        self.discover(&provider.issuer, true).await.map_err(|e| match e {
            AppError::Upstream(m) => AppError::Invalid(m),
            e => e,
        })?;
        let at = to_micros(now());
        let record = SsoProviderRecord {
            sealed_client_secret: secret.map(|s| self.data_key.seal_text(&secret_context(id), s.as_bytes())),
            provider,
            created_at: at,
            updated_at: at,
        };
        let action = if replace { "sso_provider.replaced" } else { "sso_provider.created" };
        let event = AuditEvent::success(actor, action, format!("sso_provider:{id}"))
            .with_detail(json!({"issuer": record.provider.issuer, "secret_changed": record.sealed_client_secret.is_some()}));
        self.store.put_sso_provider(&record, replace, event).await.map_err(no_provider(id))?;
        self.sso_provider(id).await
    }

    pub async fn sso_provider(&self, id: &str) -> Result<SsoProviderView, AppError> {
        let record = self.store.sso_provider(id).await?;
        record.map(|r| self.sso_view(r)).ok_or_else(|| no_provider(id)(StoreError::NotFound))
    }

    pub async fn sso_providers(&self) -> Result<Vec<SsoProviderView>, AppError> {
        Ok(self.store.sso_providers().await?.into_iter().map(|r| self.sso_view(r)).collect())
    }

    pub async fn delete_sso_provider(&self, actor: Actor, id: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "sso_provider.deleted", format!("sso_provider:{id}"));
        self.store.delete_sso_provider(id, event).await.map_err(no_provider(id))
    }

    /// The providers the sign-in page offers: (id, display name).
    pub async fn sign_in_providers(&self) -> Vec<(String, String)> {
        match self.store.sso_providers().await {
            Ok(all) => all
                .into_iter()
                .filter(|r| r.provider.enabled)
                .map(|r| (r.provider.id, r.provider.display_name))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "SSO providers could not be read");
                Vec::new()
            }
        }
    }

    async fn enabled_provider(&self, id: &str) -> Result<SsoProviderRecord, AppError> {
        match self.store.sso_provider(id).await? {
            Some(r) if r.provider.enabled => Ok(r),
            _ => Err(AppError::NotFound("no such sign-in provider (or it is turned off)".into())),
        }
    }

    /// Starts a sign-in at provider `id`, continuing at `return_to` (which
    /// the caller checked): where to send the browser, and the sealed
    /// cookie that binds the answer to it.
    pub async fn start_sso(&self, id: &str, return_to: &str) -> Result<(String, String), AppError> {
        let record = self.enabled_provider(id).await?;
        let discovery = self.discover(&record.provider.issuer, false).await?;
        let pending = PendingSignIn {
            provider: id.to_string(),
            state: random_string::<24>(),
            nonce: random_string::<24>(),
            verifier: random_string::<32>(),
            return_to: return_to.to_string(),
            expires_at: now().unix_timestamp() + SIGN_IN_WINDOW_SECONDS,
        };
        let url = authorization_url(
            &discovery.authorization_endpoint,
            &record.provider,
            &self.sso_redirect_uri(id),
            &pending.state,
            &pending.nonce,
            &pkce_s256_challenge(&pending.verifier),
        )
        .map_err(AppError::Upstream)?;
        let sealed = self.data_key.seal(PENDING_CONTEXT, &serde_json::to_vec(&pending).expect("serializes"));
        // base64url: a cookie value needs no quoting.
        let cookie = URL_SAFE_NO_PAD.encode(sealed);
        Ok((url, cookie))
    }

    /// Finishes a sign-in the provider answered in the browser that holds
    /// the answer's cookie: a new session, and where to continue. Every
    /// refusal is audited.
    pub async fn complete_sso(&self, answer: &SsoAnswer<'_>) -> Result<(SignIn, String), AppError> {
        let outcome = self.complete_sso_unaudited(answer).await;
        if let Err(e) = &outcome {
            self.audit.record(AuditEvent {
                actor: Actor::System,
                action: "login.failed",
                target: Some(format!("sso_provider:{}", answer.provider_id)),
                outcome: Outcome::Failure,
                client_addr: Some(answer.addr.to_string()),
                detail: json!({"via": "sso", "reason": e.to_string()}),
            });
        }
        outcome
    }

    async fn complete_sso_unaudited(&self, answer: &SsoAnswer<'_>) -> Result<(SignIn, String), AppError> {
        let SsoAnswer { provider_id: id, params, cookie, addr } = *answer;
        let restart = |m: &str| AppError::Invalid(format!("{m}; start the sign-in again"));
        let pending = cookie
            .filter(|c| c.len() <= 4096)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .and_then(|sealed| self.data_key.open(PENDING_CONTEXT, &sealed).ok())
            .and_then(|plain| serde_json::from_slice::<PendingSignIn>(&plain).ok())
            .ok_or_else(|| restart("this browser has no sign-in under way (or its cookie was changed)"))?;
        let state = params.get("state").map(String::as_str).unwrap_or("");
        let same_state =
            aws_lc_rs::constant_time::verify_slices_are_equal(state.as_bytes(), pending.state.as_bytes())
                .is_ok();
        if pending.provider != id || !same_state {
            return Err(restart("the provider's answer is not for the sign-in this browser started"));
        }
        if pending.expires_at < now().unix_timestamp() {
            return Err(restart("the sign-in took too long"));
        }
        // One answer per pending sign-in, even if its cookie was kept.
        let spent_until = pending.expires_at * 1_000_000;
        if !self.store.spend_sso_state(&self.secrets.digest(&pending.state), spent_until).await? {
            return Err(restart("this sign-in was already used"));
        }
        let record = self.enabled_provider(id).await?;
        let provider = &record.provider;
        if let Some(error) = params.get("error") {
            let shown: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return Err(AppError::Forbidden(format!(
                "{} did not sign you in ({shown})",
                provider.display_name
            )));
        }
        // RFC 9207: an answer that names its issuer must name this one.
        if params.get("iss").is_some_and(|iss| iss.trim_end_matches('/') != provider.issuer) {
            return Err(restart("the answer comes from another issuer"));
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| restart("the answer has no code"))?;
        let discovery = self.discover(&provider.issuer, false).await?;
        let id_token = self.redeem_sso_code(&record, &discovery, code, &pending.verifier).await?;
        let keys =
            self.provider_keys(&provider.issuer, &discovery, id_token_kid(&id_token).as_deref()).await?;
        let expected = IdTokenExpectation {
            issuer: &provider.issuer,
            client_id: &provider.client_id,
            nonce: &pending.nonce,
        };
        let claims = verify_id_token(&id_token, &keys, &expected, provider).map_err(refused)?;
        let user = self.sso_user(provider, &claims).await?;
        if user.disabled {
            return Err(AppError::Forbidden("this keyward account is disabled".into()));
        }
        let sign_in = self.open_session(&user, format!("sso:{id}"), addr).await?;
        Ok((sign_in, pending.return_to))
    }

    /// The keyward user a verified upstream account signs in as (linked,
    /// provisioned, and its role following its groups where so configured).
    async fn sso_user(
        &self,
        provider: &SsoProvider,
        claims: &crate::domain::sso::SignInClaims,
    ) -> Result<crate::domain::User, AppError> {
        let linked = self.store.sso_linked_user(&provider.id, &claims.subject).await?;
        let same_name = match linked {
            Some(_) => None,
            None => self.store.user_credentials(&claims.username).await?.map(|(u, _)| u),
        };
        let same_is_linked = match &same_name {
            Some(user) => self.store.sso_links_of(user.id).await? > 0,
            None => false,
        };
        let link_event = |action| {
            AuditEvent::success(Actor::System, action, "user:?").with_detail(
                json!({"provider": provider.id, "subject": claims.subject, "username": claims.username}),
            )
        };
        let user = match sign_in_as(
            provider,
            claims,
            linked,
            same_name.as_ref().map(|user| SameName { user, linked: same_is_linked }),
        )
        .map_err(refused)?
        {
            SignInAs::Linked(id) => self.user(id).await?,
            SignInAs::Link(id) => self
                .store
                .link_sso_identity(&provider.id, &claims.subject, Ok(id), link_event("sso_identity.linked"))
                .await
                .map_err(raced)?,
            SignInAs::Provision { role } => {
                let new = NewUser { username: claims.username.clone(), password_hash: None, role };
                self.store
                    .link_sso_identity(
                        &provider.id,
                        &claims.subject,
                        Err(new),
                        link_event("user.provisioned"),
                    )
                    .await
                    .map_err(raced)?
            }
        };
        if !provider.syncs_roles() {
            return Ok(user);
        }
        match provider.role_for(&claims.groups) {
            Some(role) if role != user.role => {
                let event = AuditEvent::success(Actor::System, "user.updated", format!("user:{}", user.id))
                    .with_detail(json!({"role": role, "from_groups_of": provider.id}));
                let update = UserUpdate { role: Some(role), ..Default::default() };
                match self.store.update_user(user.id, update, event).await {
                    Ok(updated) => Ok(updated),
                    // The last server admin keeps the role whatever the groups say.
                    Err(StoreError::LastServerAdmin) => Ok(user),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(user),
        }
    }

    /// Redeems the code at the provider's token endpoint: its ID token.
    async fn redeem_sso_code(
        &self,
        record: &SsoProviderRecord,
        discovery: &Discovery,
        code: &str,
        verifier: &str,
    ) -> Result<String, AppError> {
        let provider = &record.provider;
        let secret = match &record.sealed_client_secret {
            Some(sealed) => Some(
                self.data_key
                    .open_string(&secret_context(&provider.id), sealed)
                    .map_err(|_| AppError::Internal(anyhow::anyhow!("an SSO client secret does not open")))?,
            ),
            None => None,
        };
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", self.sso_redirect_uri(&provider.id)),
            ("code_verifier", verifier.to_string()),
        ];
        let url = &discovery.token_endpoint;
        let mut request = self
            .outbound_http(url)
            .await?
            .post(url)
            .timeout(FETCH_TIMEOUT)
            .header("accept", "application/json");
        let methods = &discovery.token_endpoint_auth_methods_supported;
        match secret {
            // RFC 6749 §2.3.1: the default method, form-encoded then Basic.
            Some(secret) if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") => {
                let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&provider.client_id), enc(&secret));
                request = request.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
            }
            Some(secret) => {
                form.push(("client_id", provider.client_id.clone()));
                form.push(("client_secret", secret));
            }
            None => form.push(("client_id", provider.client_id.clone())),
        }
        let mut response = request.form(&form).send().await.map_err(upstream("token endpoint"))?;
        let status = response.status();
        let body = super::outbound_http::read_capped(&mut response, DOCUMENT_MAX_BYTES)
            .await
            .map_err(upstream("token endpoint"))?
            .ok_or_else(|| AppError::Upstream("the provider's token answer is too large".into()))?;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let error = excerpt(body.get("error").and_then(|e| e.as_str()).unwrap_or(""), 64);
            return Err(AppError::Upstream(format!(
                "{} refused the sign-in's code ({} {error})",
                provider.display_name,
                status.as_u16()
            )));
        }
        body.get("id_token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| AppError::Upstream(format!("{} sent no ID token", provider.display_name)))
    }

    /// The keys of an IdP by its issuer, for a JWT whose header names `kid`.
    pub(super) async fn issuer_keys(&self, issuer: &str, kid: Option<&str>) -> Result<JwkSet, AppError> {
        let discovery = self.discover(issuer, false).await?;
        self.provider_keys(issuer, &discovery, kid).await
    }

    /// The provider's discovery document, from this node's cache unless it
    /// is older than [`DISCOVERY_TTL`] or `fresh` is asked for.
    async fn discover(&self, issuer: &str, fresh: bool) -> Result<Discovery, AppError> {
        if !fresh {
            let cache = self.sso.by_issuer.lock().expect("sso cache lock");
            if let Some(c) = cache.get(issuer).filter(|c| c.fetched.elapsed() < DISCOVERY_TTL) {
                return Ok(c.discovery.clone());
            }
        }
        let url = format!("{issuer}/.well-known/openid-configuration");
        let body = self.fetch_json_document(&url, "discovery document").await?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|_| AppError::Upstream("the provider's discovery document lacks endpoints".into()))?;
        // OpenID Connect Discovery §4.3: the document names the very issuer.
        if discovery.issuer.trim_end_matches('/') != issuer {
            return Err(AppError::Upstream(format!(
                "the discovery document names issuer {:?}, not {issuer:?}",
                discovery.issuer
            )));
        }
        let allow_private = self.allow_private_addresses().await;
        for (field, url) in [
            ("authorization_endpoint", &discovery.authorization_endpoint),
            ("token_endpoint", &discovery.token_endpoint),
            ("jwks_uri", &discovery.jwks_uri),
        ] {
            validate_outbound_url(field, url, allow_private).map_err(|e| {
                AppError::Upstream(format!("the provider's discovery document is not usable: {e}"))
            })?;
        }
        let mut cache = self.sso.by_issuer.lock().expect("sso cache lock");
        cache.insert(
            issuer.to_string(),
            CachedProvider { discovery: discovery.clone(), fetched: Instant::now(), keys: None },
        );
        Ok(discovery)
    }

    /// The provider's keys, fetched again when `kid` is unknown to the
    /// cached set (the provider rotated), at most every [`KEYS_REFETCH_AFTER`].
    async fn provider_keys(
        &self,
        issuer: &str,
        discovery: &Discovery,
        kid: Option<&str>,
    ) -> Result<JwkSet, AppError> {
        {
            let cache = self.sso.by_issuer.lock().expect("sso cache lock");
            if let Some((keys, fetched)) = cache.get(issuer).and_then(|c| c.keys.as_ref()) {
                let known = kid.is_none_or(|k| keys.find(k).is_some());
                if known || fetched.elapsed() < KEYS_REFETCH_AFTER {
                    return Ok(keys.clone());
                }
            }
        }
        let body = self.fetch_json_document(&discovery.jwks_uri, "key set").await?;
        let keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| AppError::Upstream("the provider's key set (jwks_uri) does not parse".into()))?;
        let mut cache = self.sso.by_issuer.lock().expect("sso cache lock");
        if let Some(c) = cache.get_mut(issuer) {
            c.keys = Some((keys.clone(), Instant::now()));
        }
        Ok(keys)
    }

    async fn fetch_json_document(&self, url: &str, what: &str) -> Result<Vec<u8>, AppError> {
        let http =
            self.outbound_http(url).await.map_err(|e| AppError::Upstream(format!("the {what}: {e}")))?;
        let mut response = http
            .get(url)
            .header("accept", "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(upstream(what))?;
        if !response.status().is_success() {
            return Err(AppError::Upstream(format!(
                "the provider's {what} answered {} (redirects are not followed)",
                response.status().as_u16()
            )));
        }
        super::outbound_http::read_capped(&mut response, DOCUMENT_MAX_BYTES)
            .await
            .map_err(upstream(what))?
            .ok_or_else(|| {
                AppError::Upstream(format!("the provider's {what} is larger than {DOCUMENT_MAX_BYTES} bytes"))
            })
    }
}

/// A first sign-in that another one beat to the account (or its name).
fn raced(e: StoreError) -> AppError {
    match e {
        StoreError::Conflict(_) | StoreError::NotFound => AppError::Conflict(
            "another sign-in just took this account; ask an admin if it was not yours".into(),
        ),
        e => e.into(),
    }
}

/// `NotFound` naming provider `id`, other store errors as they are.
fn no_provider(id: &str) -> impl Fn(StoreError) -> AppError + '_ {
    move |e| match e {
        StoreError::NotFound => AppError::NotFound(format!("no SSO provider {:?}", excerpt(id, 80))),
        e => e.into(),
    }
}

fn refused(e: SsoRefusal) -> AppError {
    match e {
        SsoRefusal::NotAllowed(m) => AppError::Forbidden(m),
        e => AppError::Forbidden(e.to_string()),
    }
}

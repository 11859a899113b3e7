//! The OAuth endpoints: token (RFC 6749 §4.4, §5), introspection (RFC 7662),
//! revocation (RFC 7009), metadata (RFC 8414) and JWKS. Their errors use
//! the OAuth shape `{"error", "error_description"}`, not the API one.

use crate::app::{App, ClientProof, DELEGATED_CLIENT_PREFIX, ExchangeRequest};
use crate::domain::client::M2mClient;
use crate::domain::client_metadata::ASSERTION_TYPE;
use crate::domain::excerpt;
use crate::domain::exchange::TOKEN_EXCHANGE_GRANT;
use crate::domain::id_jag::JWT_BEARER_GRANT;
use crate::domain::oauth::{OAuthError, OAuthErrorCode, normalize_resource};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// An OAuth error response (RFC 6749 §5.2).
pub struct OAuthReply {
    status: StatusCode,
    error: OAuthError,
}

impl From<OAuthError> for OAuthReply {
    fn from(error: OAuthError) -> Self {
        let status = match error.code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthReply { status, error }
    }
}

impl IntoResponse for OAuthReply {
    fn into_response(self) -> Response {
        let mut body =
            json!({"error": self.error.code.as_str(), "error_description": self.error.description});
        if let (Some(action), Some(fields)) = (&self.error.user_action, body.as_object_mut()) {
            fields.insert("connect_uri".into(), action.connect_uri.clone().into());
            fields.insert("connection_id".into(), action.connection_id.clone().into());
            fields.insert("expires_in".into(), action.expires_in.into());
        }
        let mut response = (self.status, no_store(), Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="keyward""#));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response = super::error::retry_after(response, crate::domain::oauth::UNAVAILABLE_RETRY_AFTER);
        }
        response
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")]
}

/// Parameters of a form-encoded OAuth request, checked per RFC 6749 §3.1
/// and §3.2: form content type only, no parameter twice (but `resource`,
/// which RFC 8707 lets repeat), an empty value is as if absent.
pub struct OAuthParams(Vec<(String, String)>);

const REPEATABLE: [&str; 1] = ["resource"];

impl OAuthParams {
    pub fn parse(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Self, OAuthReply> {
        let form_type = super::extract::has_media_type(headers, "application/x-www-form-urlencoded");
        if !form_type {
            return Err(
                OAuthError::invalid_request("the body must be application/x-www-form-urlencoded").into()
            );
        }
        let body = body.map_err(|r| OAuthReply {
            status: if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                r.status()
            } else {
                StatusCode::BAD_REQUEST
            },
            error: OAuthError::invalid_request(format!(
                "the body could not be read (at most {} bytes)",
                super::MAX_BODY_BYTES
            )),
        })?;
        let pairs = super::extract::form_pairs(&body)
            .map_err(|refusal| OAuthError::invalid_request(format!("the body {refusal}")))?;
        let mut params: Vec<(String, String)> = Vec::new();
        for (key, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if !REPEATABLE.contains(&key.as_ref()) && params.iter().any(|(k, _)| *k == key) {
                let shown = excerpt(&key, 64);
                return Err(OAuthError::invalid_request(format!(
                    "parameter {shown:?} is given more than once"
                ))
                .into());
            }
            params.push((key.into_owned(), value.into_owned()));
        }
        Ok(OAuthParams(params))
    }

    pub fn one(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&str, OAuthReply> {
        self.one(key).ok_or_else(|| OAuthError::invalid_request(format!("{key} is required")).into())
    }
}

/// The client's id and proof: a secret from `client_secret_basic` or
/// `client_secret_post`, an assertion (`private_key_jwt`), or nothing
/// (`none`); using two methods at once is refused (RFC 6749 §2.3).
fn client_credentials<'a>(
    headers: &'a HeaderMap,
    params: &'a OAuthParams,
) -> Result<(String, ClientProof), OAuthReply> {
    let invalid_client = |m: &str| OAuthReply::from(OAuthError::new(OAuthErrorCode::InvalidClient, m));
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value =
                value.to_str().map_err(|_| invalid_client("the Authorization header is not valid"))?;
            let (scheme, encoded) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(invalid_client("client authentication must use HTTP Basic or the request body"));
            }
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid_client("the Basic credentials are not valid base64"))?;
            let (id, secret) =
                decoded.split_once(':').ok_or_else(|| invalid_client("the Basic credentials lack a ':'"))?;
            Some((form_decode(id), form_decode(secret)))
        }
    };
    if let Some(assertion) = params.one("client_assertion") {
        if basic.is_some() || params.one("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not a secret and an assertion",
            )
            .into());
        }
        if params.one("client_assertion_type") != Some(ASSERTION_TYPE) {
            return Err(invalid_client(&format!("client_assertion_type must be {ASSERTION_TYPE}")));
        }
        // RFC 7521 §4.2: the assertion names the client; client_id may be left out.
        let id = match params.one("client_id") {
            Some(id) => id.to_string(),
            None => assertion_subject(assertion)
                .ok_or_else(|| invalid_client("the client assertion names no client (sub)"))?,
        };
        return Ok((id, ClientProof::Assertion(assertion.to_string())));
    }
    let proof = |secret: Option<String>| secret.map_or(ClientProof::None, ClientProof::Secret);
    match (basic, params.one("client_id"), params.one("client_secret")) {
        (Some(_), _, Some(_)) => {
            Err(OAuthError::invalid_request("use one client authentication method, not Basic and the body")
                .into())
        }
        (Some((id, _)), Some(body_id), None) if body_id != id => {
            Err(OAuthError::invalid_request("client_id in the body differs from the Basic credentials")
                .into())
        }
        (Some((id, secret)), _, None) => Ok((id, proof(Some(secret)))),
        (None, Some(id), secret) => Ok((id.to_string(), proof(secret.map(str::to_string)))),
        (None, None, _) => Err(invalid_client("client authentication is required")),
    }
}

/// The `sub` of an assertion, read before it is verified: only to know
/// whose keys verify it.
fn assertion_subject(assertion: &str) -> Option<String> {
    let claims = crate::domain::signed_jwt::unverified_part(assertion, 1)?;
    claims.get("sub")?.as_str().map(str::to_string)
}

/// RFC 6749 §2.3.1: Basic credentials are form-encoded before base64.
fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned()
}

async fn authenticated_client(
    app: &App,
    headers: &HeaderMap,
    params: &OAuthParams,
    addr: SocketAddr,
) -> Result<M2mClient, OAuthReply> {
    let invalid_client = |m: &str| OAuthReply::from(OAuthError::new(OAuthErrorCode::InvalidClient, m));
    let secret = match client_credentials(headers, params)? {
        (_, ClientProof::None) => return Err(invalid_client("client authentication is required")),
        (_, ClientProof::Assertion(_)) => {
            return Err(invalid_client("machine-to-machine clients authenticate with their secret"));
        }
        (id, ClientProof::Secret(secret)) => (id, secret),
    };
    let (id, secret) = secret;
    Ok(app.authenticate_client(&id, &secret, Some(addr.ip().to_string())).await?)
}

/// The form of a token request; which fields apply depends on `grant_type`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `authorization_code`, `refresh_token`, `client_credentials`,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693: an agent
    /// gets a user's connection token) or
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (an ID-JAG).
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    /// RFC 8707; may repeat. Becomes the token's `aud`.
    resource: Option<String>,
    /// With `client_secret_post` or `none`; or use HTTP Basic.
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Token exchange: a user's keyward access token.
    subject_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`.
    subject_token_type: Option<String>,
    /// Token exchange: the access token type, if sent.
    requested_token_type: Option<String>,
    /// Token exchange: a connection id or an outbound client id.
    audience: Option<String>,
    /// jwt-bearer: the enterprise IdP's identity assertion (ID-JAG).
    assertion: Option<String>,
}

/// A token response (RFC 6749 §5.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenReply {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: String,
    expires_in: i64,
    refresh_token: Option<String>,
    scope: String,
}

/// A token introspection or revocation request (RFC 7662 §2.1, RFC 7009
/// §2.1); the client authenticates with Basic or these fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenOfClientRequest {
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OAuthErrorBody {
    #[schema(example = "invalid_grant")]
    error: String,
    error_description: String,
}

/// Issues tokens: `authorization_code` (with PKCE), `refresh_token` (rotating),
/// `client_credentials`, token exchange for a connection's provider token
/// (RFC 8693; `authorization_required` with a `connect_uri` when the user
/// must authorize first) and `jwt-bearer` with an ID-JAG. Clients
/// authenticate with HTTP Basic, the body, or (public clients) not at all.
#[utoipa::path(post, path = "/oauth/v1/token/", tag = "OAuth Tokens",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenReply),
        (status = 400, description = "invalid_request, invalid_grant, invalid_scope, invalid_target, unsupported_grant_type", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "Body over 64 KiB", body = OAuthErrorBody)))]
pub async fn token(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let params = OAuthParams::parse(&headers, body)?;
    let grant_type = params.required("grant_type")?;
    let resources = params.all("resource").map(normalize_resource).collect::<Result<Vec<_>, _>>()?;
    let response = match grant_type {
        "client_credentials" => {
            let client = authenticated_client(&app, &headers, &params, addr).await?;
            app.client_credentials_token(
                &client,
                params.one("scope"),
                &resources,
                Some(addr.ip().to_string()),
            )
            .await?
        }
        TOKEN_EXCHANGE_GRANT => {
            let client = authenticated_client(&app, &headers, &params, addr).await?;
            if params.one("actor_token").is_some() {
                return Err(OAuthError::invalid_request(
                    "actor_token is not supported: the agent is the authenticated client",
                )
                .into());
            }
            let request = ExchangeRequest {
                subject_token: params.required("subject_token")?,
                subject_token_type: params.required("subject_token_type")?,
                requested_token_type: params.one("requested_token_type"),
                audiences: params.one("audience").into_iter().collect(),
                resources: &resources,
            };
            let exchanged = app.exchange_for_connection_token(&client, &request).await?;
            return Ok((StatusCode::OK, no_store(), Json(exchanged)).into_response());
        }
        JWT_BEARER_GRANT => {
            let (id, proof) = client_credentials(&headers, &params)?;
            if matches!(proof, ClientProof::None) {
                return Err(OAuthError::new(
                    OAuthErrorCode::InvalidClient,
                    "an identity assertion is redeemed by a client that authenticates (a secret or a private_key_jwt)",
                )
                .into());
            }
            let client = app.authenticate_oauth_client(&id, &proof).await?;
            app.id_jag_token(&client, params.required("assertion")?, params.one("scope")).await?
        }
        "authorization_code" | "refresh_token" => {
            let (id, proof) = client_credentials(&headers, &params)?;
            let client = app.authenticate_oauth_client(&id, &proof).await?;
            if grant_type == "authorization_code" {
                let code = params.required("code")?;
                app.exchange_code(
                    &client,
                    code,
                    params.one("redirect_uri"),
                    params.one("code_verifier"),
                    &resources,
                )
                .await?
            } else {
                let refresh = params.required("refresh_token")?;
                app.refresh(&client, refresh, params.one("scope"), &resources).await?
            }
        }
        other => {
            let shown = excerpt(other, 64);
            return Err(OAuthError::new(
                OAuthErrorCode::UnsupportedGrantType,
                format!("grant_type {shown:?} is not supported; use authorization_code, refresh_token, client_credentials, \
                         {TOKEN_EXCHANGE_GRANT} or {JWT_BEARER_GRANT}"),
            )
            .into());
        }
    };
    Ok((StatusCode::OK, no_store(), Json(response)).into_response())
}

#[utoipa::path(post, path = "/oauth/v2/introspect/", tag = "OAuth Tokens",
    request_body(content = TokenOfClientRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "RFC 7662: `active`, and for an active token of this client its claims", body = Object),
        (status = 400, description = "invalid_request", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody)))]
pub async fn introspect(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let params = OAuthParams::parse(&headers, body)?;
    let client = authenticated_client(&app, &headers, &params, addr).await?;
    let token = params.required("token")?;
    let answer = app
        .introspect_for(&client, token)
        .await
        .map_err(crate::app::oauth_app_error("introspection failed"))?;
    Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
}

#[utoipa::path(post, path = "/oauth/v2/revoke/", tag = "OAuth Tokens",
    request_body(content = TokenOfClientRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (RFC 7009 §2.2)"),
        (status = 400, description = "invalid_request, unauthorized_client (not this client's token)", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody)))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthReply> {
    let params = OAuthParams::parse(&headers, body)?;
    let token = params.required("token")?;
    // Delegated clients (public ones by id alone, as at the token
    // endpoint) revoke their own tokens too, RFC 7009 §2.1.
    let (id, proof) = client_credentials(&headers, &params)?;
    let delegated =
        id.starts_with(DELEGATED_CLIENT_PREFIX) || crate::domain::client_metadata::is_document_url(&id);
    let client_id = if delegated {
        app.authenticate_oauth_client(&id, &proof).await?.client_id
    } else {
        authenticated_client(&app, &headers, &params, addr).await?.client_id
    };
    app.revoke(&client_id, token).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}

/// RFC 8414 metadata; also served as OpenID discovery for clients that only
/// look there.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "OAuth Metadata",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = Object)))]
pub async fn metadata(State(app): State<Arc<App>>) -> Result<Json<Value>, super::error::ApiError> {
    let issuer = &app.issuer;
    // Advertised only while it is on (clients try it when it is listed).
    let registration = app
        .setting(crate::domain::settings::DYNAMIC_REGISTRATION)
        .await
        .is_ok_and(|s| s.value != "off")
        .then(|| format!("{issuer}{}", super::dynamic_registration::REGISTRATION_PATH));
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    // Clients with a metadata document authenticate by assertion
    // (private_key_jwt) or not at all (public clients, while allowed).
    let documents = app.metadata_documents_enabled().await?;
    let mut delegated_auth_methods = auth_methods.to_vec();
    if documents {
        delegated_auth_methods.push("private_key_jwt");
    }
    // Public clients revoke their own tokens by client_id alone, too.
    if app.public_clients_allowed().await? {
        delegated_auth_methods.push("none");
    }
    let token_auth_methods = delegated_auth_methods.clone();
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/v1/authorize/"),
        "token_endpoint": format!("{issuer}/oauth/v2/token/"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/v2/introspect/"),
        "revocation_endpoint": format!("{issuer}/oauth/v2/revoke/"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "token_endpoint_auth_methods_supported": token_auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": delegated_auth_methods,
        "scopes_supported": app.scopes_supported().await?,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "access_token_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
    });
    if let Some(fields) = document.as_object_mut() {
        if let Some(url) = registration {
            fields.insert("registration_endpoint".into(), Value::from(url));
        }
        if documents {
            fields.insert("client_id_metadata_document_supported".into(), Value::from(true));
            let algorithms = crate::domain::signed_jwt::algorithm_names();
            fields.insert(
                "token_endpoint_auth_signing_alg_values_supported".into(),
                Value::from(algorithms.clone()),
            );
            fields.insert(
                "revocation_endpoint_auth_signing_alg_values_supported".into(),
                Value::from(algorithms),
            );
        }
    }
    Ok(Json(document))
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "OAuth Metadata",
    responses((status = 200, description = "The public keys that verify keyward's JWTs (RFC 7517)", body = Object)))]
pub async fn jwks(State(app): State<Arc<App>>) -> Response {
    let set = app.keys.current();
    // Short caching: a resource server meeting an unknown kid fetches again.
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(set.jwks.clone())).into_response()
}

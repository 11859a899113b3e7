//! `/oauth/v2/register/`: dynamic client registration (RFC 7591) and the
//! management of a registration (RFC 7592), answered in their error shape
//! `{"error", "error_description"}`. Also the admin route that issues
//! initial access tokens.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::app::{App, AppError, DynamicClient, RegistrationFailure};
use crate::domain::registration::ClientMetadata;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

type AppState = State<Arc<App>>;

pub const REGISTRATION_PATH: &str = "/oauth/v2/register/";

/// An RFC 7591 §3.2.2 (or RFC 6750 §3.1) error.
pub struct RegistrationReply(RegistrationFailure);

impl From<RegistrationFailure> for RegistrationReply {
    fn from(f: RegistrationFailure) -> Self {
        RegistrationReply(f)
    }
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({"error": code, "error_description": description});
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

impl IntoResponse for RegistrationReply {
    fn into_response(self) -> Response {
        match self.0 {
            RegistrationFailure::Off => oauth_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "dynamic client registration is off here; ask an admin to register the client",
            ),
            RegistrationFailure::InvalidToken(why) => {
                let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", why);
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
                r
            }
            RegistrationFailure::Metadata(e) => {
                oauth_error(StatusCode::BAD_REQUEST, e.code(), e.description())
            }
            RegistrationFailure::TooMany(cap) => {
                let mut r = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    &format!(
                        "the limit of {cap} registered clients waiting for a first approval is reached; try again later"
                    ),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
                r
            }
            RegistrationFailure::NetworkWaits(seconds) => {
                let mut r = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    &format!("too many registrations from this network; try again in {seconds} s"),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                r
            }
            RegistrationFailure::App(e) => ApiError::from(e).into_response(),
        }
    }
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A JSON object of client metadata; anything else is `invalid_client_metadata`.
fn metadata(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ClientMetadata, RegistrationReply> {
    let bad = |d: String| {
        RegistrationReply(RegistrationFailure::Metadata(
            crate::domain::registration::RegistrationError::InvalidClientMetadata(d),
        ))
    };
    let json_type = super::extract::has_media_type(headers, "application/json");
    if !json_type {
        return Err(bad("the body must be application/json".into()));
    }
    let body = body
        .map_err(|_| bad(format!("the body could not be read (at most {} bytes)", super::MAX_BODY_BYTES)))?;
    crate::domain::registration::parse_metadata::<ClientMetadata>(&body).map_err(bad)
}

fn render(app: &App, registered: DynamicClient, status: StatusCode) -> Response {
    let DynamicClient { client, metadata, client_secret, registration_access_token } = registered;
    let mut body = serde_json::to_value(&metadata).unwrap_or_else(|_| json!({}));
    let fields = body.as_object_mut().expect("metadata is an object");
    fields.insert("client_id".into(), Value::from(client.client_id.clone()));
    fields.insert("client_id_issued_at".into(), Value::from(client.created_at.unix_timestamp()));
    if let Some(secret) = client_secret {
        fields.insert("client_secret".into(), Value::from(secret));
        // RFC 7591 §3.2.1: 0 means it does not expire.
        fields.insert("client_secret_expires_at".into(), Value::from(0));
    }
    if let Some(token) = registration_access_token {
        fields.insert("registration_access_token".into(), Value::from(token));
    }
    fields.insert(
        "registration_client_uri".into(),
        Value::from(format!("{}{REGISTRATION_PATH}{}/", app.issuer, client.client_id)),
    );
    (status, [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(body)).into_response()
}

/// RFC 7591 §3.1: a client registers itself.
#[utoipa::path(post, path = "/oauth/v2/register/", tag = "Dynamic client registration",
    request_body(content = Object, description = "RFC 7591 client metadata"),
    security((), ("bearer" = [])),
    responses((status = 201, description = "Registered: the metadata, client_id and, for a confidential client, its secret", body = Object),
        (status = 400, description = "invalid_client_metadata or invalid_redirect_uri (RFC 7591 §3.2.2)", body = Object),
        (status = 401, description = "An initial access token is required or not valid", body = Object),
        (status = 403, description = "Registration is off", body = Object),
        (status = 429, description = "Too many registrations from this address", body = Object)))]
pub async fn register(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RegistrationReply> {
    let meta = metadata(&headers, body)?;
    let registered = app.register_dynamic_client(meta, bearer(&headers), peer.ip()).await?;
    Ok(render(&app, registered, StatusCode::CREATED))
}

/// RFC 7592 §2.1.
#[utoipa::path(get, path = "/oauth/v2/register/{client_id}/", tag = "Dynamic client registration",
    params(("client_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The client's metadata", body = Object),
        (status = 401, description = "The registration access token is missing or not this client's", body = Object),
        (status = 403, description = "Registration is off", body = Object)))]
pub async fn read(
    State(app): AppState,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RegistrationReply> {
    let client = app.dynamic_client(&client_id, bearer(&headers)).await?;
    Ok(render(&app, client, StatusCode::OK))
}

/// RFC 7592 §2.2. The body's `client_id`, if any, must be this client's.
#[utoipa::path(put, path = "/oauth/v2/register/{client_id}/", tag = "Dynamic client registration",
    params(("client_id" = String, Path)), security(("bearer" = [])),
    request_body(content = Object, description = "The client's whole metadata"),
    responses((status = 200, description = "The client's metadata as replaced", body = Object),
        (status = 400, description = "invalid_client_metadata", body = Object),
        (status = 401, description = "The registration access token is missing or not this client's", body = Object),
        (status = 403, description = "Registration is off", body = Object)))]
pub async fn update(
    State(app): AppState,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RegistrationReply> {
    let token = bearer(&headers);
    // Authenticate before reading what the caller wants changed.
    app.dynamic_client(&client_id, token).await?;
    let raw = body.as_ref().ok().and_then(|b| serde_json::from_slice::<Value>(b).ok());
    if raw.as_ref().and_then(|v| v.get("client_id")).is_some_and(|v| v.as_str() != Some(&client_id)) {
        return Err(RegistrationReply(RegistrationFailure::Metadata(
            crate::domain::registration::RegistrationError::InvalidClientMetadata(
                "client_id in the body must be the client's own".into(),
            ),
        )));
    }
    let meta = metadata(&headers, body)?;
    let client = app.update_dynamic_client(&client_id, token, meta).await?;
    Ok(render(&app, client, StatusCode::OK))
}

/// RFC 7592 §2.3.
#[utoipa::path(delete, path = "/oauth/v2/register/{client_id}/", tag = "Dynamic client registration",
    params(("client_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "The registration access token is missing or not this client's", body = Object),
        (status = 403, description = "Registration is off", body = Object)))]
pub async fn delete(
    State(app): AppState,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, RegistrationReply> {
    app.delete_dynamic_client(&client_id, bearer(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitialAccessTokenRequest {
    name: String,
    /// Seconds; default 7 days.
    #[serde(default = "week")]
    expires_in: i64,
    /// How many registrations it allows; default 1.
    #[serde(default = "one")]
    uses: i64,
}

fn week() -> i64 {
    7 * 86_400
}

fn one() -> i64 {
    1
}

/// `POST /admin/api/initial_access_tokens/` (server_admin): a token for
/// `keyward.oauth.dynamic_registration = initial_access_token`, shown once.
#[utoipa::path(post, path = "/admin/api/initial_access_tokens/", tag = "Initial access tokens",
    request_body = InitialAccessTokenRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 201, description = "The token, shown this once", body = Object)))]
pub async fn create_initial_access_token(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(r): ApiJson<InitialAccessTokenRequest>,
) -> Result<Response, ApiError> {
    let (token, expires_at) = app
        .create_initial_access_token(caller.actor(), &r.name, r.expires_in, r.uses)
        .await
        .map_err(ApiError::from)?;
    let body = json!({
        "initial_access_token": token,
        "name": r.name,
        "uses": r.uses,
        "expires_at": crate::domain::from_micros(expires_at)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| ApiError::from(AppError::Internal(e.into())))?,
    });
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

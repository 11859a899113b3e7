//! `/integration/v1/…`: refresh tokens and API access tokens, exactly as the
//! reference documents them (SPEC §1.3).

use super::error::ApiError;
use super::extract::Fields;
use crate::app::App;
use crate::domain::api_token::TokenStatus;
use crate::domain::{from_micros, now, to_micros};
use crate::store::{ApiAccessTokenRecord, RefreshTokenRecord};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

type AppState = State<Arc<App>>;

/// Timezone-aware ISO 8601 (RFC 3339) with microseconds.
fn timestamp(us: i64) -> String {
    from_micros(us).format(&Rfc3339).unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
pub struct RefreshTokenResponse {
    /// The refresh token, prefixed `kwrt_`.
    refresh_token: String,
    user_id: i64,
    name: String,
    #[schema(example = "2026-11-24T00:30:00.123456Z")]
    created_at: String,
    token_expires_at: String,
    #[schema(value_type = String, example = "ACTIVE")]
    token_status: TokenStatus,
    last_used_at: Option<String>,
}

impl RefreshTokenResponse {
    fn new(token: &str, r: &RefreshTokenRecord) -> Self {
        RefreshTokenResponse {
            refresh_token: token.to_string(),
            user_id: r.user_id,
            name: r.name.clone(),
            created_at: timestamp(r.created_at),
            token_expires_at: timestamp(r.expires_at),
            token_status: TokenStatus::of(r.revoked_at, r.expires_at, to_micros(now())),
            last_used_at: r.last_used_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiAccessTokenResponse {
    /// The API access token, prefixed `kwat_`: send it in the `TOKEN` header.
    api_access_token: String,
    user_id: i64,
    created_at: String,
    token_expires_at: String,
    #[schema(value_type = String, example = "ACTIVE")]
    token_status: TokenStatus,
    last_used_at: Option<String>,
}

impl ApiAccessTokenResponse {
    fn new(token: &str, r: &ApiAccessTokenRecord) -> Self {
        ApiAccessTokenResponse {
            api_access_token: token.to_string(),
            user_id: r.user_id,
            created_at: timestamp(r.created_at),
            token_expires_at: timestamp(r.expires_at),
            token_status: TokenStatus::of(r.revoked_at, r.expires_at, to_micros(now())),
            last_used_at: r.last_used_at.map(timestamp),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DetailResponse {
    #[schema(example = "Revoked active access tokens for user: '102'")]
    detail: String,
}

/// The error answer of these endpoints.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    #[schema(example = "unauthorized")]
    error: String,
    detail: String,
    /// Present when a token exists but is not active: `EXPIRED` or `REVOKED`.
    token_status: Option<String>,
}

/// Body of `createRefreshToken`, form-encoded or JSON.
#[derive(Deserialize, ToSchema)]
pub struct CreateRefreshTokenRequest {
    #[schema(example = "jane@example.com")]
    username: String,
    password: String,
    #[schema(example = "TableauRefreshToken")]
    name: String,
}

/// Body naming a refresh token and its user, form-encoded or JSON.
#[derive(Deserialize, ToSchema)]
pub struct RefreshTokenRequest {
    refresh_token: String,
    #[schema(example = 102)]
    user_id: i64,
}

/// Body naming an API access token and its user, form-encoded or JSON.
#[derive(Deserialize, ToSchema)]
pub struct ApiAccessTokenRequest {
    api_access_token: String,
    #[schema(example = 102)]
    user_id: i64,
}

impl CreateRefreshTokenRequest {
    fn from_fields(f: &Fields) -> Result<Self, ApiError> {
        Ok(CreateRefreshTokenRequest {
            username: f.required("username")?.to_string(),
            password: f.required("password")?.to_string(),
            name: f.required("name")?.to_string(),
        })
    }
}

impl RefreshTokenRequest {
    fn from_fields(f: &Fields) -> Result<Self, ApiError> {
        Ok(RefreshTokenRequest {
            refresh_token: f.required("refresh_token")?.to_string(),
            user_id: f.user_id()?,
        })
    }
}

impl ApiAccessTokenRequest {
    fn from_fields(f: &Fields) -> Result<Self, ApiError> {
        Ok(ApiAccessTokenRequest {
            api_access_token: f.required("api_access_token")?.to_string(),
            user_id: f.user_id()?,
        })
    }
}

/// Responses that carry a token are never cached.
fn reply(status: StatusCode, body: impl Serialize) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Creates a RefreshToken for the user, from username and password.
#[utoipa::path(post, path = "/integration/v1/createRefreshToken/", tag = "Token Authentication",
    request_body(content(
        (CreateRefreshTokenRequest = "application/x-www-form-urlencoded"),
        (CreateRefreshTokenRequest = "application/json"))),
    responses(
        (status = 201, description = "Created", body = RefreshTokenResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: wrong username or password, or an SSO-only account", body = ErrorResponse),
        (status = 429, description = "Too many failed attempts from this address or for this account", body = ErrorResponse)))]
pub async fn create_refresh_token(
    State(app): AppState,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let body = CreateRefreshTokenRequest::from_fields(&fields)?;
    let (token, record) =
        app.create_refresh_token(&body.username, &body.password, &body.name, addr.ip()).await?;
    Ok(reply(StatusCode::CREATED, RefreshTokenResponse::new(&token, &record)))
}

/// Regenerates a RefreshToken, invalidating the one in the request and every
/// APIAccessToken made from it.
#[utoipa::path(post, path = "/integration/v1/regenRefreshToken/", tag = "Token Authentication",
    request_body(content(
        (RefreshTokenRequest = "application/x-www-form-urlencoded"),
        (RefreshTokenRequest = "application/json"))),
    responses(
        (status = 201, description = "Created", body = RefreshTokenResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: bad, expired or revoked token", body = ErrorResponse),
        (status = 403, description = "Forbidden: the account is disabled", body = ErrorResponse)))]
pub async fn regen_refresh_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let body = RefreshTokenRequest::from_fields(&fields)?;
    let (token, record) = app.regenerate_refresh_token(&body.refresh_token, body.user_id).await?;
    Ok(reply(StatusCode::CREATED, RefreshTokenResponse::new(&token, &record)))
}

/// Creates an APIAccessToken; revokes every other active one made from the
/// same RefreshToken.
#[utoipa::path(post, path = "/integration/v1/createAPIAccessToken/", tag = "Token Authentication",
    request_body(content(
        (RefreshTokenRequest = "application/x-www-form-urlencoded"),
        (RefreshTokenRequest = "application/json"))),
    responses(
        (status = 201, description = "Created", body = ApiAccessTokenResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: bad, expired or revoked token", body = ErrorResponse),
        (status = 403, description = "Forbidden: the account is disabled", body = ErrorResponse)))]
pub async fn create_api_access_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let body = RefreshTokenRequest::from_fields(&fields)?;
    let (token, record) = app.create_api_access_token(&body.refresh_token, body.user_id).await?;
    Ok(reply(StatusCode::CREATED, ApiAccessTokenResponse::new(&token, &record)))
}

/// Revokes the active APIAccessTokens made from the RefreshToken.
#[utoipa::path(post, path = "/integration/v1/revokeAPIAccessTokens/", tag = "Token Authentication",
    request_body(content(
        (RefreshTokenRequest = "application/x-www-form-urlencoded"),
        (RefreshTokenRequest = "application/json"))),
    responses(
        (status = 200, description = "OK", body = DetailResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: bad token", body = ErrorResponse),
        (status = 403, description = "Forbidden: the account is disabled", body = ErrorResponse)))]
pub async fn revoke_api_access_tokens(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let body = RefreshTokenRequest::from_fields(&fields)?;
    app.revoke_api_access_tokens(&body.refresh_token, body.user_id).await?;
    let detail = format!("Revoked active access tokens for user: '{}'", body.user_id);
    Ok(reply(StatusCode::OK, DetailResponse { detail }))
}

/// Validates an APIAccessToken and returns its metadata.
#[utoipa::path(post, path = "/integration/v1/validateAPIAccessToken/", tag = "Token Authentication",
    request_body(content(
        (ApiAccessTokenRequest = "application/x-www-form-urlencoded"),
        (ApiAccessTokenRequest = "application/json"))),
    responses(
        (status = 200, description = "OK: the token is active", body = ApiAccessTokenResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: unknown token, or `token_status` says EXPIRED or REVOKED", body = ErrorResponse)))]
pub async fn validate_api_access_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let body = ApiAccessTokenRequest::from_fields(&fields)?;
    let record = app.validate_api_access_token(&body.api_access_token, body.user_id).await?;
    Ok(reply(StatusCode::OK, ApiAccessTokenResponse::new(&body.api_access_token, &record)))
}

/// Validates a RefreshToken and returns its metadata.
#[utoipa::path(post, path = "/integration/v1/validateRefreshToken/", tag = "Token Authentication",
    request_body(content(
        (RefreshTokenRequest = "application/x-www-form-urlencoded"),
        (RefreshTokenRequest = "application/json"))),
    responses(
        (status = 200, description = "OK: the token is active", body = RefreshTokenResponse),
        (status = 400, description = "Malformed Request", body = ErrorResponse),
        (status = 401, description = "Unauthorized: unknown token, or `token_status` says EXPIRED or REVOKED", body = ErrorResponse),
        (status = 403, description = "Forbidden: the account is disabled", body = ErrorResponse)))]
pub async fn validate_refresh_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let body = RefreshTokenRequest::from_fields(&fields)?;
    let record = app.validate_refresh_token(&body.refresh_token, body.user_id).await?;
    Ok(reply(StatusCode::OK, RefreshTokenResponse::new(&body.refresh_token, &record)))
}

/// The reference lists 500 for a server that cannot answer: an outage's
/// 503 becomes it here (and nowhere else).
pub async fn documented_statuses(response: Response) -> Response {
    if response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        return ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            .into_response();
    }
    response
}

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
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

type AppState = State<Arc<App>>;

/// Timezone-aware ISO 8601 (RFC 3339) with microseconds.
fn timestamp(us: i64) -> Value {
    Value::from(from_micros(us).format(&Rfc3339).unwrap_or_default())
}

fn optional_timestamp(us: Option<i64>) -> Value {
    us.map(timestamp).unwrap_or(Value::Null)
}

fn refresh_json(token: &str, r: &RefreshTokenRecord) -> Value {
    json!({
        "refresh_token": token,
        "user_id": r.user_id,
        "name": r.name,
        "created_at": timestamp(r.created_at),
        "token_expires_at": timestamp(r.expires_at),
        "token_status": TokenStatus::of(r.revoked_at, r.expires_at, to_micros(now())),
        "last_used_at": optional_timestamp(r.last_used_at),
    })
}

fn access_json(token: &str, r: &ApiAccessTokenRecord) -> Value {
    json!({
        "api_access_token": token,
        "user_id": r.user_id,
        "created_at": timestamp(r.created_at),
        "token_expires_at": timestamp(r.expires_at),
        "token_status": TokenStatus::of(r.revoked_at, r.expires_at, to_micros(now())),
        "last_used_at": optional_timestamp(r.last_used_at),
    })
}

/// Responses that carry a token are never cached.
fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn create_refresh_token(
    State(app): AppState,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    fields: Fields,
) -> Result<Response, ApiError> {
    let (username, password, name) =
        (fields.required("username")?, fields.required("password")?, fields.required("name")?);
    let (token, record) = app.create_refresh_token(username, password, name, addr.ip()).await?;
    Ok(reply(StatusCode::CREATED, refresh_json(&token, &record)))
}

pub async fn regen_refresh_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let (old, user_id) = (fields.required("refresh_token")?, fields.user_id()?);
    let (token, record) = app.regenerate_refresh_token(old, user_id).await?;
    Ok(reply(StatusCode::CREATED, refresh_json(&token, &record)))
}

pub async fn create_api_access_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let (refresh, user_id) = (fields.required("refresh_token")?, fields.user_id()?);
    let (token, record) = app.create_api_access_token(refresh, user_id).await?;
    Ok(reply(StatusCode::CREATED, access_json(&token, &record)))
}

pub async fn revoke_api_access_tokens(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let (refresh, user_id) = (fields.required("refresh_token")?, fields.user_id()?);
    app.revoke_api_access_tokens(refresh, user_id).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"detail": format!("Revoked active access tokens for user: '{user_id}'")}),
    ))
}

pub async fn validate_api_access_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let (token, user_id) = (fields.required("api_access_token")?, fields.user_id()?);
    let record = app.validate_api_access_token(token, user_id).await?;
    Ok(reply(StatusCode::OK, access_json(token, &record)))
}

pub async fn validate_refresh_token(State(app): AppState, fields: Fields) -> Result<Response, ApiError> {
    let (token, user_id) = (fields.required("refresh_token")?, fields.user_id()?);
    let record = app.validate_refresh_token(token, user_id).await?;
    Ok(reply(StatusCode::OK, refresh_json(token, &record)))
}

//! `/oauth/v1/register/`: delegated OAuth clients (server admin), in the
//! manner of RFC 7592.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, ClientRegistration};
use crate::domain::delegated::{DelegatedClient, REDIRECT_PRESETS};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

type AppState = State<Arc<App>>;

fn with_secret(status: StatusCode, client: &DelegatedClient, secret: Option<String>) -> Response {
    let mut body = serde_json::to_value(client).expect("client serializes");
    if let Some(secret) = secret {
        body["client_secret"] = Value::from(secret);
    }
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn register(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<ClientRegistration>,
) -> Result<Response, ApiError> {
    let (client, secret) = app.register_oauth_client(caller.actor(), body).await?;
    Ok(with_secret(StatusCode::CREATED, &client, secret))
}

pub async fn list(State(app): AppState) -> Result<Json<Vec<DelegatedClient>>, ApiError> {
    Ok(Json(app.store.list_oauth_clients().await.map_err(crate::app::AppError::from)?))
}

pub async fn get(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DelegatedClient>, ApiError> {
    Ok(Json(app.oauth_client(&id).await?))
}

pub async fn replace(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ClientRegistration>,
) -> Result<Json<DelegatedClient>, ApiError> {
    Ok(Json(app.replace_oauth_client(caller.actor(), &id, body).await?))
}

pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_oauth_client(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rotate_secret(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let secret = app.rotate_oauth_client_secret(caller.actor(), &id).await?;
    let client = app.oauth_client(&id).await?;
    Ok(with_secret(StatusCode::OK, &client, Some(secret)))
}

/// The known redirect URLs of the reference, by preset name.
pub async fn presets() -> Json<Value> {
    Json(Value::Array(
        REDIRECT_PRESETS
            .iter()
            .map(|(name, label, uris)| json!({"name": name, "label": label, "redirect_uris": uris}))
            .collect(),
    ))
}

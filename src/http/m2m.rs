//! `/admin/api/m2m_clients/` (SPEC §5).

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, ClientPatch, ClientWithSecret};
use crate::domain::Role;
use crate::domain::client::M2mClient;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

type AppState = State<Arc<App>>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateM2mClientRequest {
    #[schema(example = "nightly ETL")]
    name: String,
    /// Seconds, 300 to 259200.
    #[schema(minimum = 300, maximum = 259200, example = 3600)]
    access_token_duration: i64,
    #[schema(value_type = String, example = "viewer")]
    role: Role,
}

/// A response carrying a secret: never cached anywhere.
fn with_secret(status: StatusCode, created: ClientWithSecret) -> Response {
    let mut body = serde_json::to_value(&created.client).expect("client serializes");
    body["client_secret"] = Value::from(created.client_secret);
    if let Some(at) = created.previous_secret_expires_at {
        body["previous_secret_expires_at"] =
            Value::from(at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
    }
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[utoipa::path(post, path = "/admin/api/m2m_clients/", tag = "M2M clients", request_body = CreateM2mClientRequest,
    security(("token" = []), ("bearer" = [])),
    responses((status = 201, description = "Created; the secret is shown this once", body = Object)))]
pub async fn create(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<CreateM2mClientRequest>,
) -> Result<Response, ApiError> {
    let created =
        app.create_m2m_client(caller.actor(), &body.name, body.access_token_duration, body.role).await?;
    Ok(with_secret(StatusCode::CREATED, created))
}

#[utoipa::path(get, path = "/admin/api/m2m_clients/", tag = "M2M clients", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The clients (no secrets)", body = [Object])))]
pub async fn list(State(app): AppState) -> Result<Json<Vec<M2mClient>>, ApiError> {
    Ok(Json(app.store.list_m2m_clients().await.map_err(crate::app::AppError::from)?))
}

#[utoipa::path(get, path = "/admin/api/m2m_clients/{client_id}/", tag = "M2M clients",
    params(("client_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The client", body = Object), (status = 404, description = "No such client")))]
pub async fn get(State(app): AppState, ApiPath(id): ApiPath<String>) -> Result<Json<M2mClient>, ApiError> {
    Ok(Json(app.m2m_client(&id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchM2mClientRequest {
    /// Mark (or unmark) the client as a service identity.
    is_service: Option<bool>,
    /// Allow (or stop) the client exchanging a user's access token for the
    /// user's connection tokens (RFC 8693 token exchange).
    token_exchange: Option<bool>,
    name: Option<String>,
    #[schema(minimum = 300, maximum = 259200)]
    access_token_duration: Option<i64>,
    #[schema(value_type = Option<String>)]
    role: Option<Role>,
    disabled: Option<bool>,
}

#[utoipa::path(patch, path = "/admin/api/m2m_clients/{client_id}/", tag = "M2M clients",
    params(("client_id" = String, Path)), request_body = PatchM2mClientRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The client as changed", body = Object), (status = 404, description = "No such client")))]
pub async fn patch(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchM2mClientRequest>,
) -> Result<Json<M2mClient>, ApiError> {
    let patch = ClientPatch {
        is_service: body.is_service,
        token_exchange: body.token_exchange,
        name: body.name,
        role: body.role,
        access_token_duration: body.access_token_duration,
        disabled: body.disabled,
    };
    Ok(Json(app.update_m2m_client(caller.actor(), &id, patch).await?))
}

#[utoipa::path(delete, path = "/admin/api/m2m_clients/{client_id}/", tag = "M2M clients",
    params(("client_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such client")))]
pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_m2m_client(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/api/m2m_clients/{client_id}/rotate_secret/", tag = "M2M clients",
    params(("client_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The new secret, shown this once; the old one works for the overlap", body = Object),
        (status = 404, description = "No such client")))]
pub async fn rotate_secret(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(with_secret(StatusCode::OK, app.rotate_m2m_client_secret(caller.actor(), &id).await?))
}

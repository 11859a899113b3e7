//! `/oauth/v1/register/`: delegated OAuth clients (server admin), in the
//! manner of RFC 7592.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, ClientRegistration};
use crate::domain::delegated::{ClientType, DelegatedClient, OfflineAccess, REDIRECT_PRESETS};
use crate::domain::registration::Registration;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::ToSchema;

type AppState = State<Arc<App>>;

/// A client registration (also the body of PUT).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "My Application")]
    name: String,
    /// Absolute URIs without fragment; https, or http for 127.0.0.1, [::1] and localhost.
    #[serde(default)]
    #[schema(example = json!(["https://your-app.com/oauth/callback"]))]
    redirect_uris: Vec<String>,
    /// Named sets of known redirect URLs to add: `vscode`, `claude`, `chatgpt`.
    #[serde(default)]
    redirect_uri_presets: Vec<String>,
    /// `confidential` (has a secret) or `public` (PKCE always on).
    #[schema(value_type = String, example = "confidential")]
    grant_type: ClientType,
    /// Seconds, 259200 (3 days) to 15552000 (180 days).
    #[schema(example = 2592000)]
    refresh_token_lifetime: i64,
    /// Seconds, 3600 (1 hour) to 259200 (3 days).
    #[schema(example = 3600)]
    access_token_lifetime: i64,
    #[serde(default = "yes")]
    pkce_enabled: bool,
    /// `on_request` (default: a refresh token when the app asks for
    /// `offline_access`) or `always` (for apps whose SDKs never ask; the
    /// consent page shows it).
    #[serde(default)]
    #[schema(value_type = String, example = "on_request")]
    offline_access: OfflineAccess,
}

fn yes() -> bool {
    true
}

impl From<RegisterRequest> for ClientRegistration {
    fn from(r: RegisterRequest) -> Self {
        ClientRegistration {
            name: r.name,
            redirect_uris: r.redirect_uris,
            redirect_uri_presets: r.redirect_uri_presets,
            grant_type: r.grant_type,
            refresh_token_lifetime: r.refresh_token_lifetime,
            access_token_lifetime: r.access_token_lifetime,
            pkce_enabled: r.pkce_enabled,
            offline_access: r.offline_access,
        }
    }
}

/// A registered client. `client_secret` appears once: when it is made.
#[derive(Serialize, ToSchema)]
pub struct RegisteredClient {
    client_id: String,
    name: String,
    redirect_uris: Vec<String>,
    #[schema(value_type = String)]
    grant_type: ClientType,
    refresh_token_lifetime: i64,
    access_token_lifetime: i64,
    pkce_enabled: bool,
    created_at: String,
    #[schema(value_type = String, example = "on_request")]
    offline_access: OfflineAccess,
    /// `admin`, or `dynamic` for a client that registered itself (RFC 7591).
    #[schema(value_type = String, example = "admin")]
    registration: Registration,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

impl RegisteredClient {
    fn new(c: &DelegatedClient, client_secret: Option<String>) -> Self {
        RegisteredClient {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            grant_type: c.grant_type,
            refresh_token_lifetime: c.refresh_token_lifetime,
            access_token_lifetime: c.access_token_lifetime,
            pkce_enabled: c.pkce_enabled,
            created_at: c
                .created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            offline_access: c.offline_access,
            registration: c.registration,
            client_secret,
        }
    }
}

fn with_secret(status: StatusCode, client: &DelegatedClient, secret: Option<String>) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(RegisteredClient::new(client, secret)))
        .into_response()
}

/// Registers a client; a confidential client's secret is in this answer only.
#[utoipa::path(post, path = "/oauth/v1/register/", tag = "OAuth Client Administration",
    request_body = RegisterRequest,
    security(("token" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = RegisteredClient),
        (status = 400, description = "A field is missing or out of range (the message names it)"),
        (status = 401, description = "Not authenticated"),
        (status = 403, description = "Not a server admin")))]
pub async fn register(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let (client, secret) = app.register_oauth_client(caller.actor(), body.into()).await?;
    Ok(with_secret(StatusCode::CREATED, &client, secret))
}

/// Lists the registered clients (never their secrets).
#[utoipa::path(get, path = "/oauth/v1/register/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The clients", body = [RegisteredClient])))]
pub async fn list(State(app): AppState) -> Result<Json<Vec<RegisteredClient>>, ApiError> {
    let clients = app.store.list_oauth_clients().await.map_err(crate::app::AppError::from)?;
    Ok(Json(clients.iter().map(|c| RegisteredClient::new(c, None)).collect()))
}

/// Reads one client.
#[utoipa::path(get, path = "/oauth/v1/register/{client_id}/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    params(("client_id" = String, Path)),
    responses((status = 200, description = "The client", body = RegisteredClient), (status = 404, description = "No such client")))]
pub async fn get(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RegisteredClient>, ApiError> {
    Ok(Json(RegisteredClient::new(&app.oauth_client(&id).await?, None)))
}

/// Replaces a client's settings (its type and secret stay).
#[utoipa::path(put, path = "/oauth/v1/register/{client_id}/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    params(("client_id" = String, Path)), request_body = RegisterRequest,
    responses((status = 200, description = "Replaced", body = RegisteredClient), (status = 400, description = "Bad input"), (status = 404, description = "No such client")))]
pub async fn replace(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Json<RegisteredClient>, ApiError> {
    Ok(Json(RegisteredClient::new(&app.replace_oauth_client(caller.actor(), &id, body.into()).await?, None)))
}

/// Deletes a client and revokes every token it holds.
#[utoipa::path(delete, path = "/oauth/v1/register/{client_id}/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    params(("client_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such client")))]
pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_oauth_client(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret for a confidential client; the old one stops working.
#[utoipa::path(post, path = "/oauth/v1/register/{client_id}/rotate_secret/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    params(("client_id" = String, Path)),
    responses((status = 200, description = "The client with its new secret", body = RegisteredClient), (status = 400, description = "A public client"), (status = 404, description = "No such client")))]
pub async fn rotate_secret(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let secret = app.rotate_oauth_client_secret(caller.actor(), &id).await?;
    let client = app.oauth_client(&id).await?;
    Ok(with_secret(StatusCode::OK, &client, Some(secret)))
}

/// The known redirect URLs (VS Code, Claude, ChatGPT), by preset name.
#[utoipa::path(get, path = "/oauth/v1/register/presets/", tag = "OAuth Client Administration",
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "Presets")))]
pub async fn presets() -> Json<Value> {
    Json(Value::Array(
        REDIRECT_PRESETS
            .iter()
            .map(|(name, label, uris)| json!({"name": name, "label": label, "redirect_uris": uris}))
            .collect(),
    ))
}

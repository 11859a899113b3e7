//! `/admin/api/outbound_clients/` (catalog_admin and above, SPEC §5).
//! The client secret can be written, never read.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::App;
use crate::domain::outbound::{OutboundClient, OutboundClientSettings, OutboundGrant, TokenEndpointAuth};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type AppState = State<Arc<App>>;

fn space() -> String {
    " ".into()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOutboundRequest {
    name: String,
    #[schema(value_type = String, example = "authorization_code")]
    grant_type: OutboundGrant,
    client_id: String,
    client_secret: Option<String>,
    authorization_url: Option<String>,
    token_url: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "space")]
    scope_separator: String,
    #[serde(default)]
    extra_authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    extra_token_params: BTreeMap<String, String>,
    #[schema(value_type = Option<String>, example = "basic")]
    token_endpoint_auth: Option<TokenEndpointAuth>,
    #[serde(default = "yes")]
    pkce_enabled: bool,
    access_token_lifetime_ms: Option<i64>,
    #[serde(default)]
    refresh_token_lifetime_ms: i64,
    api_base_url: String,
}

fn yes() -> bool {
    true
}

impl CreateOutboundRequest {
    /// The settings and the secret this body describes.
    pub(super) fn into_settings(self) -> (OutboundClientSettings, Option<String>) {
        let b = self;
        let settings = OutboundClientSettings {
            name: b.name,
            grant_type: b.grant_type,
            client_id: b.client_id,
            authorization_url: b.authorization_url,
            token_url: b.token_url,
            scopes: b.scopes,
            scope_separator: b.scope_separator,
            extra_authorization_params: b.extra_authorization_params,
            extra_token_params: b.extra_token_params,
            token_endpoint_auth: b.token_endpoint_auth.unwrap_or(TokenEndpointAuth::Basic),
            pkce_enabled: b.pkce_enabled,
            access_token_lifetime_ms: b.access_token_lifetime_ms,
            refresh_token_lifetime_ms: b.refresh_token_lifetime_ms,
            api_base_url: b.api_base_url,
        };
        (settings, b.client_secret)
    }
}

#[utoipa::path(post, path = "/admin/api/outbound_clients/", tag = "Outbound OAuth clients",
    request_body = CreateOutboundRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 201, description = "Created (the secret is never shown again)", body = Object)))]
pub async fn create(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<CreateOutboundRequest>,
) -> Result<(StatusCode, Json<OutboundClient>), ApiError> {
    let (settings, secret) = b.into_settings();
    let created = app.create_outbound_client(caller.actor(), settings, secret.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/admin/api/outbound_clients/", tag = "Outbound OAuth clients", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The outbound clients", body = [Object])))]
pub async fn list(State(app): AppState) -> Result<Json<Vec<OutboundClient>>, ApiError> {
    Ok(Json(app.outbound_clients().await?))
}

#[utoipa::path(get, path = "/admin/api/outbound_clients/{id}/", tag = "Outbound OAuth clients",
    params(("id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The outbound client", body = Object), (status = 404, description = "No such client")))]
pub async fn get(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OutboundClient>, ApiError> {
    Ok(Json(app.outbound_client(&id).await?))
}

/// Every field optional; absent fields keep their value.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchOutboundRequest {
    name: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    authorization_url: Option<String>,
    token_url: Option<String>,
    scopes: Option<Vec<String>>,
    scope_separator: Option<String>,
    extra_authorization_params: Option<BTreeMap<String, String>>,
    extra_token_params: Option<BTreeMap<String, String>>,
    #[schema(value_type = Option<String>)]
    token_endpoint_auth: Option<TokenEndpointAuth>,
    pkce_enabled: Option<bool>,
    access_token_lifetime_ms: Option<i64>,
    refresh_token_lifetime_ms: Option<i64>,
    api_base_url: Option<String>,
}

#[utoipa::path(patch, path = "/admin/api/outbound_clients/{id}/", tag = "Outbound OAuth clients",
    params(("id" = String, Path)), request_body = PatchOutboundRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The outbound client as changed", body = Object), (status = 404, description = "No such client")))]
pub async fn patch(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<PatchOutboundRequest>,
) -> Result<Json<OutboundClient>, ApiError> {
    let mut s = app.outbound_client(&id).await?.settings;
    macro_rules! merge {
        ($($field:ident),*) => {$( if let Some(v) = p.$field { s.$field = v; } )*};
    }
    merge!(
        name,
        client_id,
        token_url,
        scopes,
        scope_separator,
        extra_authorization_params,
        extra_token_params,
        token_endpoint_auth,
        pkce_enabled,
        refresh_token_lifetime_ms,
        api_base_url
    );
    if p.authorization_url.is_some() {
        s.authorization_url = p.authorization_url;
    }
    if p.access_token_lifetime_ms.is_some() {
        s.access_token_lifetime_ms = p.access_token_lifetime_ms;
    }
    Ok(Json(app.update_outbound_client(caller.actor(), &id, s, p.client_secret.as_deref()).await?))
}

#[utoipa::path(delete, path = "/admin/api/outbound_clients/{id}/", tag = "Outbound OAuth clients",
    params(("id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted, with its connections"), (status = 404, description = "No such client")))]
pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_outbound_client(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

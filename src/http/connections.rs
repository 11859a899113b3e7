//! `/api/v2/connections/` (SPEC §5): a signed-in user's connections and a
//! fresh access token for each.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, ConnectionToken, ConnectionView};
use crate::domain::proxy::PROXY_METHODS;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

type AppState = State<Arc<App>>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectionRequest {
    outbound_client_id: String,
    name: String,
}

#[utoipa::path(post, path = "/api/v2/connections/", tag = "Connections", request_body = CreateConnectionRequest,
    security(("token" = []), ("bearer" = [])), responses((status = 201, description = "Created: active at once (client credentials) or pending until authorized", body = Object), (status = 404, description = "No such outbound client")))]
pub async fn create(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<CreateConnectionRequest>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(app.create_connection(&caller, &body.outbound_client_id, &body.name).await?),
    ))
}

#[utoipa::path(get, path = "/api/v2/connections/", tag = "Connections", 
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The caller's connections (no tokens)", body = [Object])))]
pub async fn list(State(app): AppState, caller: CallerExt) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    Ok(Json(app.connections(&caller).await?))
}

#[utoipa::path(get, path = "/api/v2/connections/{id}/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The connection", body = Object), (status = 404, description = "No such connection of the caller's")))]
pub async fn get(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(app.connection(&caller, &id).await?))
}

#[utoipa::path(delete, path = "/api/v2/connections/{id}/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 204, description = "Deleted"), (status = 404, description = "No such connection of the caller's")))]
pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_connection(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v2/connections/{id}/token/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The provider's access token, fresh (service identities and the owner)", body = Object), (status = 404, description = "No such connection"), (status = 409, description = "The connection needs its user to authorize again"), (status = 502, description = "The provider refused or did not answer")))]
pub async fn token(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let token: ConnectionToken = app.read_connection_token(&caller, &id).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(token)).into_response())
}

/// The provider's authorization URL: as JSON, or (for a browser) a redirect.
#[utoipa::path(get, path = "/api/v2/connections/{id}/authorize/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The provider's authorization URL (a browser asking for HTML is redirected there)", body = Object), (status = 303, description = "To the provider (a browser)"), (status = 404, description = "No such connection"), (status = 409, description = "The connection does not use the authorization code")))]
pub async fn authorize(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let url = app.start_connection_authorization(&caller, &id).await?;
    let wants_html =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html {
        return Ok(super::authorize::see_other(&url));
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({"authorization_url": url})))
        .into_response())
}

/// The same, by POST (a form's way).
#[utoipa::path(post, path = "/api/v2/connections/{id}/authorize/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The provider's authorization URL (a browser asking for HTML is redirected there)", body = Object),
        (status = 303, description = "To the provider (a browser)"), (status = 404, description = "No such connection"),
        (status = 409, description = "The connection does not use the authorization code")))]
pub async fn authorize_by_post(
    state: AppState,
    caller: CallerExt,
    id: ApiPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    authorize(state, caller, id, headers).await
}

/// `/api/v2/connections/{id}/proxy/{path}`, any method.
pub async fn proxy(
    State(app): AppState,
    caller: CallerExt,
    ApiPath((id, _)): ApiPath<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if !PROXY_METHODS.contains(&parts.method.as_str()) {
        return Ok(super::error::method_not_passed_on());
    }
    // The raw path, not axum's decoded capture: traversal checks need it.
    let prefix = format!("/api/v2/connections/{id}/proxy/");
    let raw_path = parts.uri.path().strip_prefix(&prefix).unwrap_or("").to_string();
    let body = axum::body::to_bytes(body, super::MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("bodies are limited to {} bytes", super::MAX_BODY_BYTES),
        )
    })?;
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
        .collect();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("unsupported method"))?;
    let upstream = app
        .proxy(
            &caller,
            &id,
            crate::app::ProxyRequest {
                method,
                raw_path,
                query: parts.uri.query().map(str::to_string),
                headers,
                body,
            },
        )
        .await?;
    super::passed_on(upstream, crate::app::FORWARDED_RESPONSE_HEADERS).map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, format!("the API's answer could not be passed on: {e}"))
    })
}

#[utoipa::path(post, path = "/api/v2/connections/{id}/revoke/", tag = "Connections", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "Revoked (at the provider too, where it can)", body = Object), (status = 404, description = "No such connection")))]
pub async fn revoke(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(app.revoke_connection(&caller, &id).await?))
}

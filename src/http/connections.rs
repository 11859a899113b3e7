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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    outbound_client_id: String,
    name: String,
}

pub async fn create(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<CreateConnection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(app.create_connection(&caller, &body.outbound_client_id, &body.name).await?),
    ))
}

pub async fn list(State(app): AppState, caller: CallerExt) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    Ok(Json(app.connections(&caller).await?))
}

pub async fn get(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(app.connection(&caller, &id).await?))
}

pub async fn delete(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_connection(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn token(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let token: ConnectionToken = app.connection_token(&caller, &id).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(token)).into_response())
}

/// The provider's authorization URL: as JSON, or (for a browser) a redirect.
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

/// `/api/v2/connections/{id}/proxy/{path}`, any method.
pub async fn proxy(
    State(app): AppState,
    caller: CallerExt,
    ApiPath((id, _)): ApiPath<(String, String)>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
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
    if !PROXY_METHODS.contains(&parts.method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("the proxy passes on {} only", PROXY_METHODS.join(", ")),
        ));
    }
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
    let mut response = Response::builder().status(upstream.status().as_u16());
    for name in crate::app::FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = upstream.headers().get(*name) {
            response = response.header(*name, value.as_bytes());
        }
    }
    response.body(axum::body::Body::from_stream(upstream.bytes_stream())).map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, format!("the API's answer could not be passed on: {e}"))
    })
}

pub async fn revoke(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    Ok(Json(app.revoke_connection(&caller, &id).await?))
}

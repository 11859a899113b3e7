//! Single sign-on: the admin API of upstream providers
//! (`/admin/api/sso_providers/`) and the browser's way through one
//! (`/login/sso/<id>/` → provider → `/login/sso/<id>/callback/`).

use super::auth::CallerExt;
use super::authorize::{continuation, cookie, own_error_page, see_other, set_cookie, signed_in_at};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, AppError, SSO_SIGN_IN_WINDOW_SECONDS, SsoAnswer, SsoProviderView};
use crate::domain::sso::SsoProviderInput;
use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

type AppState = State<Arc<App>>;

/// The cookie that carries a sign-in under way (sealed) to the callback.
const SSO_COOKIE: &str = "kw_sso";

#[derive(serde::Deserialize)]
pub struct NewProvider {
    id: String,
    #[serde(flatten)]
    input: Value,
}

fn input(v: Value) -> Result<SsoProviderInput, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid SSO provider: {e}")))
}

#[utoipa::path(post, path = "/admin/api/sso_providers/", tag = "SSO providers",
    request_body(content = Object, description = "`id` and the provider's settings (issuer, client_id, client_secret, …)"),
    security(("token" = []), ("bearer" = [])), responses((status = 201, description = "Created", body = Object), (status = 409, description = "The id is taken")))]
pub async fn create_provider(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(p): ApiJson<NewProvider>,
) -> Result<(StatusCode, Json<SsoProviderView>), ApiError> {
    let input = input(p.input)?;
    Ok((StatusCode::CREATED, Json(app.put_sso_provider(caller.actor(), &p.id, input, false).await?)))
}

#[utoipa::path(put, path = "/admin/api/sso_providers/{id}/", tag = "SSO providers", params(("id" = String, Path)),
    request_body(content = Object, description = "The provider's settings"), security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The provider as replaced", body = Object), (status = 404, description = "No such provider")))]
pub async fn replace_provider(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<SsoProviderInput>,
) -> Result<Json<SsoProviderView>, ApiError> {
    Ok(Json(app.put_sso_provider(caller.actor(), &id, input, true).await?))
}

#[utoipa::path(get, path = "/admin/api/sso_providers/", tag = "SSO providers", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The providers (no secrets)", body = [Object])))]
pub async fn list_providers(State(app): AppState) -> Result<Json<Vec<SsoProviderView>>, ApiError> {
    Ok(Json(app.sso_providers().await?))
}

#[utoipa::path(get, path = "/admin/api/sso_providers/{id}/", tag = "SSO providers", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 200, description = "The provider", body = Object), (status = 404, description = "No such provider")))]
pub async fn get_provider(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SsoProviderView>, ApiError> {
    Ok(Json(app.sso_provider(&id).await?))
}

#[utoipa::path(delete, path = "/admin/api/sso_providers/{id}/", tag = "SSO providers", params(("id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 204, description = "Deleted"), (status = 404, description = "No such provider")))]
pub async fn delete_provider(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_sso_provider(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A provider's answer. A repeated parameter, or bytes that are not UTF-8,
/// make an answer nobody should trust: it is read as one without a state.
fn answer_fields(query: Option<String>) -> HashMap<String, String> {
    super::extract::unique_fields(query.unwrap_or_default().as_bytes())
        .unwrap_or_else(|_| HashMap::from([("state".into(), String::new())]))
}

fn failure_page(e: AppError) -> Response {
    let status = match e {
        AppError::Upstream(_) => StatusCode::BAD_GATEWAY,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::Internal(_) | AppError::Startup(_) => return super::authorize::internal(e),
        _ => StatusCode::BAD_REQUEST,
    };
    own_error_page(status, &format!("Single sign-on failed: {e}"))
}

/// GET `/login/sso/<id>/?return_to=…`: off to the provider.
pub async fn start(State(app): AppState, Path(id): Path<String>, RawQuery(query): RawQuery) -> Response {
    if query.as_ref().is_some_and(|q| q.len() > 8 * 1024) {
        return own_error_page(StatusCode::BAD_REQUEST, "the request is too long");
    }
    let params = match super::extract::unique_fields(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(refusal) => {
            return own_error_page(StatusCode::BAD_REQUEST, &format!("the sign-in link {refusal}"));
        }
    };
    let return_to = params.get("return_to").map(String::as_str).unwrap_or(super::account::ACCOUNT_PATH);
    if continuation(return_to).is_none() || axum::http::HeaderValue::from_str(return_to).is_err() {
        return own_error_page(StatusCode::BAD_REQUEST, "the sign-in link is not valid");
    }
    match app.start_sso(&id, return_to).await {
        Ok((url, pending)) => {
            let mut response = see_other(&url);
            let cookie = set_cookie(&app, SSO_COOKIE, &pending, SSO_SIGN_IN_WINDOW_SECONDS);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => failure_page(e),
    }
}

/// GET `/login/sso/<id>/callback/`: the provider's answer.
pub async fn callback(
    State(app): AppState,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if query.as_ref().is_some_and(|q| q.len() > 16 * 1024) {
        return own_error_page(StatusCode::BAD_REQUEST, "the answer is too long");
    }
    let params = answer_fields(query);
    let answer = SsoAnswer {
        provider_id: &id,
        params: &params,
        cookie: cookie(&app, &headers, SSO_COOKIE),
        addr: addr.ip(),
    };
    let outcome = app.complete_sso(&answer).await;
    // Used or not, the pending sign-in is over.
    let clear = set_cookie(&app, SSO_COOKIE, "", 0);
    let mut response = match outcome {
        Ok((sign_in, return_to)) => signed_in_at(&app, &sign_in, &return_to),
        Err(e) => failure_page(e),
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

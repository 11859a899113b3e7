//! Authentication and the minimum-role gate of platform API routes.
//!
//! A route group declares its minimum role once with [`require_role`]; the
//! gate resolves the caller from `TOKEN` or `Authorization: Bearer`, refuses
//! with 401/403, and hands the [`Caller`] to handlers as an extension.

use super::error::ApiError;
use crate::app::{App, Credential};
use crate::domain::caller::API_SCOPE;
use crate::domain::{Caller, Role};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Credentials longer than this are refused before any lookup.
const MAX_CREDENTIAL_LEN: usize = 4096;

/// Puts every route of `router` behind authentication and `min` role.
pub fn require_role(router: Router<Arc<App>>, app: Arc<App>, min: Role) -> Router<Arc<App>> {
    router.route_layer(middleware::from_fn_with_state(Gate { app, min }, gate))
}

#[derive(Clone)]
struct Gate {
    app: Arc<App>,
    min: Role,
}

async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Result<Response, ApiError> {
    let credential = credential(request.headers())?;
    let caller = gate.app.authenticate(credential).await?;
    let mut response = match admitted(&caller, gate.min) {
        Ok(()) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused.into_response(),
    };
    // An answer that depends on who asked is never kept by a shared cache,
    // which would not know `TOKEN` as a credential (RFC 9111 §3.5 covers
    // `Authorization` only), whatever a proxied upstream said.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether an authenticated caller may use routes needing `min`.
fn admitted(caller: &Caller, min: Role) -> Result<(), ApiError> {
    // The scope first: a token that may not use these APIs at all learns
    // nothing about its role from the answer.
    if !caller.has_scope(API_SCOPE) {
        return Err(ApiError::insufficient_scope(API_SCOPE));
    }
    if !caller.role.satisfies(min) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this requires the {} role or higher; the caller has {}", min, caller.role),
        ));
    }
    Ok(())
}

/// The one credential a request carries. Two different ones are refused
/// rather than guessing which was meant.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    for name in [header::HeaderName::from_static("token"), header::AUTHORIZATION] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(ApiError::bad_request(format!("send the {name} header once")));
        }
    }
    let token = headers.get("token").map(|v| v.to_str().map(str::trim));
    let bearer = headers.get(header::AUTHORIZATION).map(|v| {
        v.to_str().ok().and_then(|s| {
            let (scheme, rest) = s.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    });
    let found = match (token, bearer) {
        (None, None) => {
            return Err(unauthorized("authentication required: send TOKEN or Authorization: Bearer"));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("send either TOKEN or Authorization, not both"));
        }
        (Some(Err(_)), None) => return Err(unauthorized("the TOKEN header is not valid text")),
        (Some(Ok(t)), None) => Credential::ApiAccessToken(t),
        (None, Some(None)) => return Err(unauthorized("the Authorization header must be 'Bearer <token>'")),
        (None, Some(Some(t))) => Credential::Bearer(t),
    };
    let (Credential::ApiAccessToken(t) | Credential::Bearer(t)) = found;
    if t.is_empty() || t.len() > MAX_CREDENTIAL_LEN {
        return Err(unauthorized("the access token is not valid"));
    }
    Ok(found)
}

/// Handlers behind [`require_role`] take the caller with this extractor.
pub type CallerExt = axum::Extension<Caller>;

//! The one JSON error shape of the platform APIs: `{"error", "detail"}`.
//! Every rejection axum can produce is mapped here, so no caller ever sees a
//! plain-text or empty error body.

use crate::app::AppError;
use crate::domain::api_token::TokenStatus;
use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Why a token that exists is refused (`EXPIRED`, `REVOKED`).
    pub token_status: Option<TokenStatus>,
    /// Seconds, for 429.
    pub retry_after: Option<i64>,
    /// For 403 `insufficient_scope` (RFC 6750 §3.1): the scope needed.
    pub needs_scope: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError { status, detail: detail.into(), token_status: None, retry_after: None, needs_scope: None }
    }

    /// 403 for a token that lacks `scope`, with the challenge that makes
    /// OAuth clients ask for it (RFC 6750 §3.1).
    pub fn insufficient_scope(scope: &'static str) -> Self {
        ApiError {
            needs_scope: Some(scope),
            ..Self::new(
                StatusCode::FORBIDDEN,
                format!("the access token was not granted the {scope:?} scope, which this API requires"),
            )
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// The stable machine-readable code for a status.
    pub fn code(&self) -> &'static str {
        if self.needs_scope.is_some() {
            return "insufficient_scope";
        }
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::BAD_GATEWAY => "upstream_error",
            s if s.is_client_error() => "invalid_request",
            _ => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A body in JSON is what clients parse; status 422 from serde is a
        // plain bad request to them.
        let status = if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            self.status
        };
        let mut body = json!({"error": self.code(), "detail": self.detail});
        if let Some(token_status) = self.token_status {
            body["token_status"] = json!(token_status);
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response = retry_after(response, seconds);
        }
        if let Some(scope) = self.needs_scope {
            let challenge = format!(r#"Bearer realm="keyward", error="insufficient_scope", scope="{scope}""#);
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="keyward""#));
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let detail = e.to_string();
        match e {
            AppError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, detail),
            AppError::Unauthorized(_) => ApiError::new(StatusCode::UNAUTHORIZED, detail),
            AppError::TokenInactive { status, .. } => {
                ApiError { token_status: Some(status), ..ApiError::new(StatusCode::UNAUTHORIZED, detail) }
            }
            AppError::TooManyRequests { retry_after } => ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail)
            },
            AppError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, detail),
            AppError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, detail),
            AppError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, detail),
            AppError::Upstream(_) => ApiError::new(StatusCode::BAD_GATEWAY, detail),
            AppError::Unavailable => ApiError {
                retry_after: Some(crate::domain::oauth::UNAVAILABLE_RETRY_AFTER),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            },
            AppError::Startup(_) | AppError::Internal(_) => {
                // Logged here, once; the caller learns nothing of the cause.
                tracing::error!(error = %detail, "request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(r: $rejection) -> Self {
                ApiError::new(r.status(), r.body_text())
            }
        }
    )*};
}
from_rejection!(JsonRejection, FormRejection, PathRejection, QueryRejection);

/// `response` with `Retry-After: seconds`.
pub(super) fn retry_after(mut response: Response, seconds: i64) -> Response {
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The 405 of the two proxies (connections, gateway) for a method they do
/// not pass on, with the `Allow` header RFC 9110 §15.5.6 requires.
pub(super) fn method_not_passed_on() -> Response {
    let allowed = crate::domain::proxy::PROXY_METHODS.join(", ");
    let detail = format!("this method is not passed on; these are: {allowed}");
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, detail).into_response();
    if let Ok(allow) = HeaderValue::from_str(&allowed) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

use crate::domain::oauth::OAuthError;
use crate::store::StoreError;

/// What went wrong, in terms a caller can act on. The HTTP layer maps each
/// variant to one status; the CLI prints the message.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A token that exists but is not active; its status is part of the answer.
    #[error("{message}")]
    TokenInactive { status: crate::domain::api_token::TokenStatus, message: String },
    #[error("too many failed attempts; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: i64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Another system (a connection's provider) failed us.
    #[error("{0}")]
    Upstream(String),
    /// The database is out of reach: 503, never a verdict on the caller.
    #[error("{}", crate::domain::oauth::UNAVAILABLE)]
    Unavailable,
    #[error("{0}")]
    Startup(String),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

/// A store failure where an OAuth answer is due: logged, and for the
/// caller a 503 `temporarily_unavailable` when the database is out of
/// reach, a 500 `server_error` otherwise; never a verdict on its
/// credentials or its grant.
pub(crate) fn oauth_store_error(what: &'static str) -> impl Fn(StoreError) -> OAuthError + Copy {
    move |e| {
        tracing::error!(error = %e, "{what}");
        if e.is_unavailable() { OAuthError::temporarily_unavailable() } else { OAuthError::server_error() }
    }
}

/// An app failure where an OAuth answer is due: logged, and for the caller
/// a 503 `temporarily_unavailable` for an outage, a 500 `server_error`
/// otherwise.
pub(crate) fn oauth_app_error(what: &'static str) -> impl Fn(AppError) -> OAuthError + Copy {
    move |e| {
        tracing::error!(error = %e, "{what}");
        if matches!(e, AppError::Unavailable) {
            OAuthError::temporarily_unavailable()
        } else {
            OAuthError::server_error()
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AppError::Conflict(format!("{what} already exists")),
            StoreError::NotFound => AppError::NotFound("not found".into()),
            StoreError::LastServerAdmin => AppError::Conflict(e.to_string()),
            StoreError::LimitReached(_) => AppError::Invalid(e.to_string()),
            e if e.is_unavailable() => AppError::Unavailable,
            other => AppError::Internal(other.into()),
        }
    }
}

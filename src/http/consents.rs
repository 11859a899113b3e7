//! `/api/v2/oauth/consents/`: a signed-in user's remembered consents, which
//! the user may withdraw (revoking what the app holds).

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::ApiPath;
use crate::app::App;
use crate::domain::{Principal, from_micros};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

fn user_id(caller: &CallerExt) -> Result<i64, ApiError> {
    match &caller.principal {
        Principal::User { id, .. } => Ok(*id),
        Principal::Client { .. } => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "consents belong to users, not clients"))
        }
    }
}

#[utoipa::path(get, path = "/api/v2/oauth/consents/", tag = "Consents", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The apps the caller consented to: client_id, scope, created_at", body = [Object])))]
pub async fn list(State(app): State<Arc<App>>, caller: CallerExt) -> Result<Json<Vec<Value>>, ApiError> {
    let consents = app.consents(user_id(&caller)?).await?;
    Ok(Json(
        consents
            .into_iter()
            .map(|(client_id, scope, at)| {
                json!({"client_id": client_id, "scope": scope, "created_at": from_micros(at).format(&Rfc3339).unwrap_or_default()})
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/api/v2/oauth/consents/{client_id}/", tag = "Consents", params(("client_id" = String, Path)),
    security(("token" = []), ("bearer" = [])), responses((status = 204, description = "Consent withdrawn; the app's tokens for the caller revoked"), (status = 404, description = "No consent to this app")))]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: CallerExt,
    ApiPath(client_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.revoke_consent(user_id(&caller)?, &client_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

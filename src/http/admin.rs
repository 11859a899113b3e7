//! Admin REST API of the foundation (SPEC §5): users, config, audit.

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use crate::app::{App, UserPatch};
use crate::domain::audit::AuditRecord;
use crate::domain::settings::{SettingKind, SettingValue};
use crate::domain::{Role, User, UserId};
use crate::store::AuditQuery;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type AppState = State<Arc<App>>;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 1000.
    #[serde(default = "default_limit")]
    limit: i64,
    #[serde(default)]
    #[param(minimum = 0)]
    offset: i64,
}

fn default_limit() -> i64 {
    100
}

fn check_limit(limit: i64) -> Result<(), ApiError> {
    if (1..=1000).contains(&limit) {
        Ok(())
    } else {
        Err(ApiError::bad_request("limit must be from 1 to 1000"))
    }
}

#[utoipa::path(get, path = "/admin/api/users/", tag = "Users", params(Page),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The users, by id", body = [Object])))]
pub async fn list_users(
    State(app): AppState,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Vec<User>>, ApiError> {
    check_limit(page.limit)?;
    if page.offset < 0 {
        return Err(ApiError::bad_request("offset must not be negative"));
    }
    Ok(Json(app.store.list_users(page.limit, page.offset).await.map_err(crate::app::AppError::from)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(example = "jane@example.com")]
    username: String,
    /// Absent for an SSO-only user, who signs in elsewhere.
    password: Option<String>,
    #[schema(value_type = String, example = "steward")]
    role: Role,
}

#[utoipa::path(post, path = "/admin/api/users/", tag = "Users", request_body = CreateUserRequest,
    security(("token" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = Object), (status = 409, description = "The username is taken")))]
pub async fn create_user(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = app.create_user(caller.actor(), &body.username, body.password.as_deref(), body.role).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/admin/api/users/{id}/", tag = "Users", params(("id" = i64, Path)),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The user", body = Object), (status = 404, description = "No such user")))]
pub async fn get_user(State(app): AppState, ApiPath(id): ApiPath<UserId>) -> Result<Json<User>, ApiError> {
    Ok(Json(app.user(id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUserRequest {
    #[schema(value_type = Option<String>, example = "viewer")]
    role: Option<Role>,
    password: Option<String>,
    disabled: Option<bool>,
}

#[utoipa::path(patch, path = "/admin/api/users/{id}/", tag = "Users", params(("id" = i64, Path)),
    request_body = PatchUserRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The user as changed", body = Object), (status = 404, description = "No such user"),
        (status = 409, description = "The last server admin stays one")))]
pub async fn patch_user(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<PatchUserRequest>,
) -> Result<Json<User>, ApiError> {
    let patch =
        UserPatch { role: body.role, password: body.password, disabled: body.disabled, ..Default::default() };
    Ok(Json(app.update_user(caller.actor(), id, patch).await?))
}

#[utoipa::path(delete, path = "/admin/api/users/{id}/", tag = "Users", params(("id" = i64, Path)),
    security(("token" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such user"),
        (status = 409, description = "The last server admin stays")))]
pub async fn delete_user(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    app.delete_user(caller.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn setting_json(s: &SettingValue) -> Value {
    let value = match s.spec.kind {
        SettingKind::Integer { .. } => {
            s.as_i64().map(Value::from).unwrap_or_else(|| Value::from(s.value.clone()))
        }
        SettingKind::Bool => Value::from(s.as_bool()),
        SettingKind::Choice(_) | SettingKind::Url | SettingKind::Hosts => Value::from(s.value.clone()),
    };
    json!({
        "key": s.spec.key,
        "value": value,
        "default": s.spec.default,
        "is_default": s.is_default,
        "description": s.spec.description,
    })
}

#[utoipa::path(get, path = "/admin/api/config/", tag = "Settings",
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "Every setting: key, value, default, is_default, description", body = [Object])))]
pub async fn list_config(State(app): AppState) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(app.all_settings().await?.iter().map(setting_json).collect()))
}

#[utoipa::path(get, path = "/admin/api/config/{key}/", tag = "Settings", params(("key" = String, Path)),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The setting", body = Object), (status = 404, description = "No such setting")))]
pub async fn get_config(
    State(app): AppState,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(setting_json(&app.setting(&key).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConfigRequest {
    /// A string, number or boolean; checked against the setting's type.
    #[schema(value_type = Object)]
    value: Value,
}

#[utoipa::path(put, path = "/admin/api/config/{key}/", tag = "Settings", params(("key" = String, Path)),
    request_body = PutConfigRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The setting as changed", body = Object), (status = 404, description = "No such setting")))]
pub async fn put_config(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<PutConfigRequest>,
) -> Result<Json<Value>, ApiError> {
    let raw = match &body.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(ApiError::bad_request("value must be a string, a number or a boolean")),
    };
    Ok(Json(setting_json(&app.set_setting(caller.actor(), &key, &raw).await?)))
}

#[utoipa::path(delete, path = "/admin/api/config/{key}/", tag = "Settings", params(("key" = String, Path)),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The setting, back to its default", body = Object), (status = 404, description = "No such setting")))]
pub async fn delete_config(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(setting_json(&app.reset_setting(caller.actor(), &key).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    before_id: Option<i64>,
    #[serde(default = "default_limit")]
    limit: i64,
}

#[utoipa::path(get, path = "/admin/api/audit/", tag = "Audit log", params(AuditParams),
    security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "Audit records, newest first", body = [Object])))]
pub async fn list_audit(
    State(app): AppState,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    check_limit(p.limit)?;
    let query = AuditQuery { action: p.action, actor: p.actor, before_id: p.before_id, limit: p.limit };
    Ok(Json(app.store.audit_events(&query).await.map_err(crate::app::AppError::from)?))
}

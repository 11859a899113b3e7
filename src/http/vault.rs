//! The vault's routes: `/admin/api/data_products/` (server admin),
//! `/api/v2/auth/credentials/` (any signed-in principal, its own), and the
//! internal read `/internal/v1/credentials/` (service identities).

use super::auth::CallerExt;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use crate::app::{App, CredentialView, WarehouseLogin};
use crate::domain::vault::{DataProduct, Warehouse};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

type AppState = State<Arc<App>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataProductBody {
    dp_id: Option<String>,
    name: String,
    warehouse: Warehouse,
}

pub async fn create_data_product(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<DataProductBody>,
) -> Result<(StatusCode, Json<DataProduct>), ApiError> {
    let dp_id = b.dp_id.ok_or_else(|| ApiError::bad_request("dp_id is required"))?;
    let dp = app
        .create_data_product(caller.actor(), DataProduct { dp_id, name: b.name, warehouse: b.warehouse })
        .await?;
    Ok((StatusCode::CREATED, Json(dp)))
}

pub async fn list_data_products(State(app): AppState) -> Result<Json<Vec<DataProduct>>, ApiError> {
    Ok(Json(app.store.data_products().await.map_err(crate::app::AppError::from)?))
}

pub async fn get_data_product(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DataProduct>, ApiError> {
    Ok(Json(app.data_product(&id).await?))
}

pub async fn put_data_product(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<DataProductBody>,
) -> Result<Json<DataProduct>, ApiError> {
    if b.dp_id.as_deref().is_some_and(|d| d != id) {
        return Err(ApiError::bad_request("dp_id in the body differs from the path"));
    }
    app.data_product(&id).await?;
    Ok(Json(
        app.put_data_product(caller.actor(), DataProduct { dp_id: id, name: b.name, warehouse: b.warehouse })
            .await?,
    ))
}

pub async fn delete_data_product(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_data_product(caller.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The reference's body: `{state, username, password, dp_id}`, and
/// optionally `verify`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCredentials {
    state: Option<String>,
    username: Option<String>,
    password: Option<String>,
    dp_id: Option<String>,
    #[serde(default)]
    verify: bool,
}

pub async fn store_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<StoreCredentials>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    let required =
        |v: Option<String>, name: &str| v.ok_or_else(|| ApiError::bad_request(format!("{name} is required")));
    let (state, username, password, dp_id) = (
        required(b.state, "state")?,
        required(b.username, "username")?,
        required(b.password, "password")?,
        required(b.dp_id, "dp_id")?,
    );
    let stored = app.store_credentials(&caller, &dp_id, &state, &username, &password, b.verify).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

pub async fn list_credentials(
    State(app): AppState,
    caller: CallerExt,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    Ok(Json(app.credentials_of(&caller).await?))
}

pub async fn delete_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(dp_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_credentials(&caller, &dp_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadCredentials {
    /// `user:<id>` or `client:<client_id>`.
    principal: String,
    dp_id: String,
}

pub async fn read_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<ReadCredentials>,
) -> Result<Response, ApiError> {
    let login: WarehouseLogin = app.read_credentials(&caller, &b.principal, &b.dp_id).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(login)).into_response())
}

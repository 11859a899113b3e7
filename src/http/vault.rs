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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataProductRequest {
    /// Required to create; in a replacement, the path's if given.
    dp_id: Option<String>,
    name: String,
    /// The warehouse: `{"kind": "postgres", "host": …, "port": …, "database": …}`.
    #[schema(value_type = Object)]
    warehouse: Warehouse,
}

#[utoipa::path(post, path = "/admin/api/data_products/", tag = "Data products", request_body = DataProductRequest,
    security(("token" = []), ("bearer" = [])), responses((status = 201, description = "Created", body = Object), (status = 409, description = "The dp_id is taken")))]
pub async fn create_data_product(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<DataProductRequest>,
) -> Result<(StatusCode, Json<DataProduct>), ApiError> {
    let dp_id = b.dp_id.ok_or_else(|| ApiError::bad_request("dp_id is required"))?;
    let dp = app
        .create_data_product(caller.actor(), DataProduct { dp_id, name: b.name, warehouse: b.warehouse })
        .await?;
    Ok((StatusCode::CREATED, Json(dp)))
}

#[utoipa::path(get, path = "/admin/api/data_products/", tag = "Data products", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The data products", body = [Object])))]
pub async fn list_data_products(State(app): AppState) -> Result<Json<Vec<DataProduct>>, ApiError> {
    Ok(Json(app.store.data_products().await.map_err(crate::app::AppError::from)?))
}

#[utoipa::path(get, path = "/admin/api/data_products/{dp_id}/", tag = "Data products",
    params(("dp_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The data product", body = Object), (status = 404, description = "No such data product")))]
pub async fn get_data_product(
    State(app): AppState,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DataProduct>, ApiError> {
    Ok(Json(app.data_product(&id).await?))
}

#[utoipa::path(put, path = "/admin/api/data_products/{dp_id}/", tag = "Data products",
    params(("dp_id" = String, Path)), request_body = DataProductRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The data product as replaced", body = Object), (status = 404, description = "No such data product")))]
pub async fn put_data_product(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<DataProductRequest>,
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

#[utoipa::path(delete, path = "/admin/api/data_products/{dp_id}/", tag = "Data products",
    params(("dp_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted, with its stored credentials"), (status = 404, description = "No such data product")))]
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
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreCredentialsRequest {
    state: Option<String>,
    username: Option<String>,
    password: Option<String>,
    dp_id: Option<String>,
    #[serde(default)]
    verify: bool,
}

#[utoipa::path(post, path = "/api/v2/auth/credentials/", tag = "Warehouse credentials",
    request_body = StoreCredentialsRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 201, description = "Stored (sealed); the password is never shown again", body = Object),
        (status = 404, description = "No such data product"), (status = 422, description = "The warehouse refused the credentials (verify)")))]
pub async fn store_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<StoreCredentialsRequest>,
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

#[utoipa::path(get, path = "/api/v2/auth/credentials/", tag = "Warehouse credentials", security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The caller's stored credentials, without passwords", body = [Object])))]
pub async fn list_credentials(
    State(app): AppState,
    caller: CallerExt,
) -> Result<Json<Vec<CredentialView>>, ApiError> {
    Ok(Json(app.credentials_of(&caller).await?))
}

#[utoipa::path(delete, path = "/api/v2/auth/credentials/{dp_id}/", tag = "Warehouse credentials",
    params(("dp_id" = String, Path)), security(("token" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, description = "None stored")))]
pub async fn delete_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiPath(dp_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_credentials(&caller, &dp_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadCredentialsRequest {
    /// `user:<id>` or `client:<client_id>`.
    principal: String,
    dp_id: String,
}

#[utoipa::path(post, path = "/internal/v1/credentials/", tag = "Warehouse credentials",
    request_body = ReadCredentialsRequest, security(("token" = []), ("bearer" = [])),
    responses((status = 200, description = "The warehouse login (service identities only)", body = Object),
        (status = 404, description = "None stored")))]
pub async fn read_credentials(
    State(app): AppState,
    caller: CallerExt,
    ApiJson(b): ApiJson<ReadCredentialsRequest>,
) -> Result<Response, ApiError> {
    let login: WarehouseLogin = app.read_credentials(&caller, &b.principal, &b.dp_id).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(login)).into_response())
}

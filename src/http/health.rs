use crate::app::App;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "Health",
    responses((status = 200, description = "Up", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can reach its database within two seconds.
#[utoipa::path(get, path = "/readyz", tag = "Health",
    responses((status = 200, description = "Ready", body = Object),
        (status = 503, description = "The database is out of reach", body = Object)))]
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": "database unreachable"})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": "database did not answer in time"})),
        ),
    }
}

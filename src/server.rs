//! Serving: bind, serve with client addresses, stop gracefully.

use crate::app::App;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::metrics_handle();
    let refresher = tokio::spawn(periodic_work(app.clone()));
    let router = crate::http::router(app.clone());
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    refresher.abort();
    app.audit.flush().await;
    app.usage.flush(&app.store).await;
    served
}

/// How often a node re-reads the signing keys, to pick up a rotation made on
/// another node. (A token naming an unknown key triggers a read at once.)
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How often collected `last_used_at` times are written.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The node's periodic work: re-read signing keys, write token usage,
/// refresh connection tokens before they expire.
async fn periodic_work(app: Arc<App>) {
    let mut keys = tokio::time::interval(KEY_REFRESH_INTERVAL);
    let mut usage = tokio::time::interval(USAGE_FLUSH_INTERVAL);
    let mut next_sweep = tokio::time::Instant::now() + Duration::from_secs(5);
    keys.tick().await;
    usage.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_sweep) => {
                if let Err(e) = app.sweep_connections().await {
                    tracing::warn!(error = %e, "connection refresh round failed");
                }
                let seconds = app.setting(crate::domain::settings::CONNECTION_SWEEP_INTERVAL).await
                    .ok().and_then(|s| s.as_i64()).unwrap_or(60);
                next_sweep = tokio::time::Instant::now() + Duration::from_secs(seconds as u64);
            }
            _ = keys.tick() => {
                if let Err(e) = app.refresh_keys().await {
                    tracing::warn!(error = %e, "signing keys could not be refreshed");
                }
            }
            _ = usage.tick() => app.usage.flush(&app.store).await,
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}

//! Serving: bind, serve with client addresses, stop gracefully.

use crate::app::App;
use crate::http::client_addr::TrustedProxies;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// What one node lets its clients hold (SPEC §3: every header has a limit,
/// and so has the number of connections and the time a request head may
/// take), and whose word it takes for a caller's address.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request head must arrive within this; an idle keep-alive
    /// connection is closed after it too.
    pub head_timeout: Duration,
    pub trusted_proxies: Arc<TrustedProxies>,
}

impl ConnectionPolicy {
    /// Defaults: a request head within 10 s, connections up to three
    /// quarters of the process's file descriptor limit (the rest is for the
    /// database pool, outbound calls and files), at most 16,384, and no
    /// trusted proxy.
    pub fn for_this_process() -> Self {
        ConnectionPolicy {
            max_connections: default_max_connections(),
            head_timeout: Duration::from_secs(10),
            trusted_proxies: Arc::default(),
        }
    }
}

fn default_max_connections() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur as usize
    } else {
        1024
    };
    (soft.saturating_sub(64).saturating_mul(3) / 4).clamp(16, 16_384)
}

/// Connections beyond the cap that are still told "503" before they are
/// closed; past this many at once they are closed without a word.
const SHED_AT_ONCE: usize = 64;

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests
/// in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::metrics_handle();
    let refresher = tokio::spawn(periodic_work(app.clone()));
    let router = crate::http::service(app.clone());
    let slots = Arc::new(Semaphore::new(policy.max_connections));
    let shedding = Arc::new(Semaphore::new(SHED_AT_ONCE));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // HTTP/1.1 only: hyper has no idle limit for HTTP/2 connections (its
    // pings only find dead peers), so an idle h2c client could hold a slot
    // for ever; keyward's clients and load balancers speak HTTP/1.1. (Not
    // hyper-util's auto builder: `http1_only` does nothing for its
    // connections with upgrades, and h2c got in.)
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(policy.head_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, most likely: wait, then go on
                    // (the connections held will time out or finish).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("keyward_connections_shed_total").increment(1);
            if let Ok(permit) = shedding.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    shed(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let head_timeout = policy.head_timeout;
        let proxies = policy.trusted_proxies.clone();
        tokio::spawn(async move {
            // The first byte must come within the head timeout too.
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(head_timeout, stream.peek(&mut first)).await, Ok(Ok(1..))) {
                drop(slot);
                return;
            }
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                // Every handler reads the caller's address from here.
                let caller = proxies.caller(peer, request.headers());
                request.extensions_mut().insert(ConnectInfo(caller));
                router.clone().oneshot(request.map(axum::body::Body::new))
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        count_unparsed(&e);
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    // Let the connections finish what they are doing.
    let _ = stop_tx.send(true);
    let all = u32::try_from(policy.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(30), slots.acquire_many(all)).await;
    refresher.abort();
    app.audit.flush().await;
    app.usage.flush(&app.store).await;
    Ok(())
}

/// Counts a request hyper refused before keyward saw it (it answers 400,
/// 414 or 431 itself): such requests never reach the routes' metrics.
fn count_unparsed(error: &hyper::Error) {
    let reason = if error.is_parse_too_large() {
        "too_large"
    } else if error.is_parse() {
        "malformed"
    } else {
        return;
    };
    metrics::counter!("keyward_http_unparsed_requests_total", "reason" => reason).increment(1);
}

/// Over the cap: a short 503 and the connection is closed, without reading
/// the request (an attacker's open connections cost nothing more).
async fn shed(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":"unavailable","detail":"too many connections; try again shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// How often a node re-reads the signing keys, to pick up a rotation made on
/// another node. (A token naming an unknown key triggers a read at once.)
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How often each node deletes what has expired.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// How often collected `last_used_at` times are written.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// The node's periodic work: re-read signing keys, write token usage,
/// refresh connection tokens before they expire, purge what expired.
async fn periodic_work(app: Arc<App>) {
    let mut keys = tokio::time::interval(KEY_REFRESH_INTERVAL);
    let mut usage = tokio::time::interval(USAGE_FLUSH_INTERVAL);
    let mut purge = tokio::time::interval(PURGE_INTERVAL);
    let mut next_sweep = tokio::time::Instant::now() + Duration::from_secs(5);
    keys.tick().await;
    usage.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_sweep) => {
                let a = app.clone();
                guarded_logged("connection refresh", async move { a.sweep_connections().await }).await;
                let seconds = app.setting(crate::domain::settings::CONNECTION_SWEEP_INTERVAL).await
                    .ok().and_then(|s| s.as_i64()).unwrap_or(60);
                next_sweep = tokio::time::Instant::now() + Duration::from_secs(seconds as u64);
            }
            // On its round, or at once when a node announces a rotation.
            _ = async { tokio::select! { _ = keys.tick() => {}, _ = app.keys.changed.notified() => {} } } => {
                let a = app.clone();
                guarded_logged("signing key refresh", async move { a.refresh_keys().await }).await;
            }
            _ = usage.tick() => {
                let a = app.clone();
                guarded("usage flush", async move { a.usage.flush(&a.store).await }).await;
            }
            _ = purge.tick() => {
                let a = app.clone();
                guarded_logged("purge", async move { a.purge_expired().await }).await;
            }
        }
    }
}

/// [`guarded`], for a round that can fail: its error is logged, and the
/// next round tries again.
async fn guarded_logged<T>(
    round: &'static str,
    work: impl Future<Output = Result<T, crate::app::AppError>> + Send + 'static,
) {
    guarded(round, async move {
        if let Err(e) = work.await {
            tracing::warn!(error = %e, round, "a round of periodic work failed; the next one tries again");
        }
    })
    .await;
}

/// Runs one round of periodic work as a task of its own, so that a panic in
/// it (a bug, say on a provider's odd answer) ends that round only: the loop
/// and every later refresh, flush and purge go on. Whether it panicked.
async fn guarded(round: &'static str, work: impl Future<Output = ()> + Send + 'static) -> bool {
    /// Stopping the periodic loop (shutdown) stops its round too.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(tokio::spawn(work));
    let panicked = (&mut task.0).await.is_err_and(|e| e.is_panic());
    if panicked {
        metrics::counter!("keyward_periodic_panics_total").increment(1);
        tracing::error!(round, "a round of periodic work panicked; the next one runs as planned");
    }
    panicked
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled: a signal arriving while the node is still
/// starting up (after it said it listens) stops it gracefully too, instead
/// of killing it with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let received = async |signal: Option<tokio::signal::unix::Signal>| match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            };
            tokio::select! {
                _ = received(interrupt) => {},
                _ = received(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing requests in flight");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panicking_round_is_contained() {
        assert!(super::guarded("test", async { panic!("a provider's odd answer") }).await);
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        assert!(
            !super::guarded("test", async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) })
                .await
        );
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst), "the next round runs");
    }

    #[tokio::test]
    async fn stopping_the_loop_stops_its_round() {
        struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Dropped(dropped.clone());
        let round = super::guarded("test", async move {
            let _held = held;
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        });
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), round).await.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst), "the round was aborted, not left running");
    }
}

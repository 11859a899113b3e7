//! Request metrics, request logs, the header-size limit, and the edge
//! screen (`edge.rs`) before anything else sees the request.
//!
//! Logs carry method, route template, status and latency only: never the
//! raw URI (query strings carry codes and tokens) nor any header.

use super::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Instant;

/// All request headers together may not exceed this.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

const DURATION: &str = "keyward_http_request_duration_seconds";
const REQUESTS: &str = "keyward_http_requests_total";

/// How often recorded durations are folded into their histogram's buckets.
/// Until then the recorder keeps every sample (8 bytes a request), so
/// without this a keyward nobody scrapes grew with every request it served.
pub const METRICS_UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder (one per process, as `metrics` wants),
/// with a thread that does its upkeep every [`METRICS_UPKEEP_PERIOD`].
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), &buckets)
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may exist when keyward is embedded; then ours
        // only renders what it sees, which is still correct for /metrics.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        let started = std::thread::Builder::new().name("keyward-metrics".into()).spawn(move || {
            loop {
                std::thread::sleep(METRICS_UPKEEP_PERIOD);
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "the metrics upkeep thread could not start; /metrics scrapes do its work");
        }
        handle
    })
}

pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let header_bytes: usize = request.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let response = if header_bytes > MAX_HEADER_BYTES {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers exceed {MAX_HEADER_BYTES} bytes"),
        )
        .into_response()
    } else {
        match super::edge::screen(&mut request).await {
            Ok(()) => next.run(request).await,
            Err(refused) => refused,
        }
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let series = series(method, route, status_label(response.status()));
    series.requests.increment(1);
    series.duration.record(elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The metrics of one (method, route, status) series.
#[derive(Clone)]
struct Series {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Every series seen, by route: made once, as labelling a key and finding
/// it in the recorder cost ~3 µs a request (a fifth of `/healthz`'s CPU,
/// docs/performance.md step 10). Bounded as the labels are: route
/// templates, known methods, standard statuses.
type SeriesByRoute = HashMap<String, Vec<(&'static str, Option<u16>, Series)>>;
static SERIES: LazyLock<RwLock<SeriesByRoute>> = LazyLock::new(Default::default);

fn series(method: &'static str, route: &str, status: Option<u16>) -> Series {
    let find = |by_route: &SeriesByRoute| {
        let known = by_route.get(route)?.iter().find(|(m, s, _)| *m == method && *s == status)?;
        Some(known.2.clone())
    };
    if let Some(known) = SERIES.read().ok().as_deref().and_then(find) {
        return known;
    }
    // Handles made before the recorder exists would count nowhere, forever.
    metrics_handle();
    let status_text = status.map_or_else(|| "other".to_owned(), |s| s.to_string());
    let labels = [("method", method.to_owned()), ("route", route.to_owned()), ("status", status_text)];
    let made = Series {
        requests: metrics::counter!(REQUESTS, &labels),
        duration: metrics::histogram!(DURATION, &labels),
    };
    if let Ok(mut by_route) = SERIES.write()
        && find(&by_route).is_none()
    {
        by_route.entry(route.to_owned()).or_default().push((method, status, made.clone()));
    }
    made
}

/// The status as a metric label: a proxied answer carries its upstream's
/// status, any number from 100 to 999, so those without a standard meaning
/// count as one (`None`, shown as `other`) and an upstream cannot add series.
fn status_label(status: StatusCode) -> Option<u16> {
    status.canonical_reason().map(|_| status.as_u16())
}

/// The method as a metric label: the standard ones by name, any other as
/// `other`, so that a client cannot add series (memory) at will.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    const NAMES: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
    KNOWN.iter().position(|m| m == method).map_or("other", |i| NAMES[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_methods_share_one_label() {
        let m = |s: &str| super::method_label(&axum::http::Method::from_bytes(s.as_bytes()).unwrap());
        assert_eq!(m("GET"), "GET");
        assert_eq!(m("PROPFIND"), "other");
        assert_eq!(m(&"Z".repeat(1000)), "other");
    }
}

pub async fn render_metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics_handle().render())
}

//! Health, readiness, metrics and the error shape of unknown routes.

use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;

async fn health_ready_and_metrics(backend: Backend) {
    let s = TestServer::start(backend).await;
    let body = json_with_status(s.http.get(s.url("/healthz")).send().await.unwrap(), 200).await;
    assert_eq!(body["status"], "ok");
    let body = json_with_status(s.http.get(s.url("/readyz")).send().await.unwrap(), 200).await;
    assert_eq!(body["status"], "ready");

    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"keyward_http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{text}"
    );
    assert!(text.contains(
        r#"keyward_http_request_duration_seconds_bucket{method="GET",route="/readyz",status="200",le="#
    ));

    // Each request counts once in its series (one no other test asks for:
    // the two backends' runs of this test each take their own route).
    let route = match backend {
        Backend::Sqlite => "/healthz",
        Backend::Postgres => "/readyz",
    };
    let series = format!(r#"keyward_http_requests_total{{method="TRACE",route="{route}",status="405"}} "#);
    let count = |text: String| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(series.as_str())).map_or(0, |n| n.trim().parse().unwrap())
    };
    let before = count(s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap());
    for _ in 0..3 {
        let r = s.http.request(reqwest::Method::TRACE, s.url(route)).send().await.unwrap();
        assert_eq!(r.status(), 405);
    }
    let after = count(s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap());
    assert_eq!(after, before + 3);
}

async fn readiness_fails_when_the_database_is_gone(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.store.close().await;
    let body = json_with_status(s.http.get(s.url("/readyz")).send().await.unwrap(), 503).await;
    assert_eq!(body["status"], "unavailable");
    // Liveness does not depend on the database.
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200);
}

async fn unknown_routes_and_methods_get_json_errors(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = s.http.get(s.url("/no/such/route/")).send().await.unwrap();
    api_error(r, 404, "not_found").await;
    // Paths are exact: the trailing slash matters.
    let r = s.http.get(s.url("/admin/api/users")).send().await.unwrap();
    api_error(r, 404, "not_found").await;
    let r = s.http.post(s.url("/healthz")).send().await.unwrap();
    api_error(r, 405, "method_not_allowed").await;
}

async fn oversized_headers_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = s.http.get(s.url("/healthz")).header("x-filler", "a".repeat(20_000)).send().await.unwrap();
    api_error(r, 431, "headers_too_large").await;
}

/// What hyper refuses before routing (a NUL byte in a header, too many
/// headers) is answered by hyper itself and counted by keyward.
async fn requests_refused_before_routing_are_counted(backend: Backend) {
    let s = TestServer::start(backend).await;
    let count = |text: &str, reason: &str| -> u64 {
        let series = format!(r#"keyward_http_unparsed_requests_total{{reason="{reason}"}} "#);
        text.lines().find_map(|l| l.strip_prefix(series.as_str())).map_or(0, |n| n.trim().parse().unwrap())
    };
    let metrics = || async { s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let before = metrics().await;
    let many_headers: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    for (request, status) in [
        ("GET /healthz HTTP/1.1\r\nhost: k\r\nx-a: a\0b\r\n\r\n".to_string(), "400"),
        (format!("GET /healthz HTTP/1.1\r\nhost: k\r\n{many_headers}\r\n"), "431"),
    ] {
        let answer = s.raw_exchange(request.as_bytes()).await.expect("the connection is closed");
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{answer}");
    }
    // The connection task ends just after the answer is written.
    let mut after = metrics().await;
    for _ in 0..50 {
        if count(&after, "malformed") > count(&before, "malformed")
            && count(&after, "too_large") > count(&before, "too_large")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        after = metrics().await;
    }
    assert!(count(&after, "malformed") > count(&before, "malformed"), "{after}");
    assert!(count(&after, "too_large") > count(&before, "too_large"), "{after}");
}

/// A chunked body whose framing is broken is the caller's error (400), not
/// a body too large (413).
async fn a_malformed_chunked_body_is_400(backend: Backend) {
    let s = TestServer::start(backend).await;
    for path in ["/oauth/v2/token/", "/integration/v1/createRefreshToken/"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: k\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             transfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
        );
        let answer = s.raw_exchange(request.as_bytes()).await.expect("the connection is closed");
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("malformed"), "{path}: {answer}");
    }
}

on_both_backends!(
    a_malformed_chunked_body_is_400,
    requests_refused_before_routing_are_counted,
    health_ready_and_metrics,
    readiness_fails_when_the_database_is_gone,
    unknown_routes_and_methods_get_json_errors,
    oversized_headers_are_refused,
);

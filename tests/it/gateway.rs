//! Protected resources and the gateway (RFC 8707, RFC 9728, RFC 6750): the
//! admin API, scopes checked against the audience, and a real upstream
//! behind `<issuer>/r/<name>/` that must never see the caller's token.

use crate::delegated_oauth::{Browser, authorize_url, param};
use crate::harness::{Backend, TestServer, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

on_both_backends!(
    resources_admin_api,
    the_gateway_checks_tokens_and_hides_them,
    request_bodies_stream_to_the_upstream,
    a_trickled_body_is_cut_off_even_after_an_early_answer,
    a_refusal_leaves_the_connection_usable_or_says_it_closes,
    scopes_fit_the_audience,
    the_token_endpoint_never_widens_the_resource,
    a_changed_resource_applies_on_every_node,
    idle_upstream_connections_are_bounded,
);

/// Open TCP connections of this process to `port` on 127.0.0.1.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{port:04X}");
    // Columns: slot, local address, remote address, state (01: established).
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            columns.get(2) == Some(&remote.as_str()) && columns.get(3) == Some(&"01")
        })
        .count()
}

/// A burst of callers opens as many connections to the upstream; once it
/// is over, only a bounded number stay open for the next requests.
async fn idle_upstream_connections_are_bounded(backend: Backend) {
    let s = TestServer::start(backend).await;
    let slow = || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "ok"
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(slow)).await.unwrap() });
    let (gateway, token) = demo_behind_the_gateway(&s, &format!("http://127.0.0.1:{port}/mcp")).await;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..150 {
        all.spawn(s.http.get(&gateway).bearer_auth(&token).send());
    }
    while let Some(r) = all.join_next().await {
        assert_eq!(r.unwrap().unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open = connections_to(port);
    assert!(open <= 64, "{open} idle connections to the upstream stay open");
}

const RESOURCES: &str = "/admin/api/resources/";

/// The headers of the last request the upstream saw.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A trivial upstream on loopback: `/mcp` echoes, `/mcp/events` streams two
/// server-sent events, the second after a pause.
async fn upstream() -> (String, Seen) {
    use axum::routing::any;
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let echo = move |headers: axum::http::HeaderMap, body: String| {
        let record = record.clone();
        async move {
            *record.lock().unwrap() = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            (
                [("content-type", "application/json"), ("mcp-session-id", "s-1")],
                json!({"echo": body}).to_string(),
            )
        }
    };
    let events = || async {
        let stream = futures_util::stream::unfold(0, |n| async move {
            match n {
                0 => Some((Ok::<_, std::io::Error>("data: one\n\n"), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Some((Ok("data: two\n\n"), 2))
                }
                _ => None,
            }
        });
        ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream))
    };
    // Any status the caller names, standard or not.
    let status = |axum::extract::Path(code): axum::extract::Path<u16>| async move {
        axum::http::StatusCode::from_u16(code).unwrap()
    };
    let app = axum::Router::new()
        .route("/mcp", any(echo))
        .route("/mcp/events", any(events))
        .route("/mcp/status/{code}", any(status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), seen)
}

/// An upstream that says (through the returned receiver) when the first
/// part of a request's body reached it, then reads the rest and answers
/// its length.
async fn upload_upstream() -> (String, tokio::sync::mpsc::Receiver<()>) {
    use axum::routing::post;
    use futures_util::StreamExt;
    let (first_part, told) = tokio::sync::mpsc::channel(1);
    let upload = move |body: axum::body::Body| {
        let first_part = first_part.clone();
        async move {
            let mut stream = body.into_data_stream();
            let mut length = 0;
            while let Some(chunk) = stream.next().await {
                if length == 0 {
                    // Told once; later requests must not wait on the test.
                    let _ = first_part.try_send(());
                }
                length += chunk.map(|c| c.len()).unwrap_or(0);
            }
            length.to_string()
        }
    };
    let app = axum::Router::new().route("/mcp", post(upload));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), told)
}

impl TestServer {
    pub(crate) async fn declare(&self, body: Value) -> Value {
        let admin = self.admin_token().await;
        json_with_status(self.send(Method::POST, RESOURCES, &admin).json(&body).send().await.unwrap(), 201)
            .await
    }
}

pub(crate) fn demo(upstream: &str) -> Value {
    json!({
        "name": "demo",
        "display_name": "Demo MCP server",
        "scopes": [{"name": "tools:read", "description": "list and call tools"}, {"name": "tools:admin"}],
        "required_scopes": ["tools:read"],
        "upstream_url": upstream,
    })
}

async fn resources_admin_api(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    // 50 at once: one is created, the others conflict.
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..50 {
        all.spawn(s.send(Method::POST, RESOURCES, &admin).json(&demo("http://127.0.0.1:9/mcp")).send());
    }
    let mut statuses = Vec::new();
    while let Some(r) = all.join_next().await {
        statuses.push(r.unwrap().unwrap().status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&c| c == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|&c| c == 201 || c == 409), "{statuses:?}");
    let created =
        json_with_status(s.get("/admin/api/resources/demo/", &admin).send().await.unwrap(), 200).await;
    assert_eq!(created["resource"], s.url("/r/demo"));
    // A NUL, or a body far too large: refused.
    let mut nul = demo("http://127.0.0.1:9/mcp");
    nul["name"] = json!("nul");
    nul["display_name"] = json!("a\u{0}b");
    assert_eq!(s.send(Method::POST, RESOURCES, &admin).json(&nul).send().await.unwrap().status(), 400);
    let mut huge = demo("http://127.0.0.1:9/mcp");
    huge["name"] = json!("huge");
    huge["display_name"] = json!("x".repeat(100_000));
    assert_eq!(s.send(Method::POST, RESOURCES, &admin).json(&huge).send().await.unwrap().status(), 413);
    // A delegated app's token with only `mcp` cannot manage resources.
    let (mcp_client, mcp_secret) = s.m2m_client("server_admin", 900).await;
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &mcp_client),
            ("client_secret", &mcp_secret),
            ("scope", "mcp"),
        ])
        .await;
    let mcp_only = json_with_status(r, 200).await["access_token"].as_str().unwrap().to_string();
    let r = s.http.get(s.url(RESOURCES)).bearer_auth(&mcp_only).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Others may not.
    for role in [Role::Viewer, Role::CatalogAdmin] {
        let t = s.token_for_role(role).await;
        assert_eq!(
            s.send(Method::POST, RESOURCES, &t).json(&demo("http://x/")).send().await.unwrap().status(),
            403
        );
        assert_eq!(s.get(RESOURCES, &t).send().await.unwrap().status(), 403);
    }
    assert_eq!(s.http.get(s.url(RESOURCES)).send().await.unwrap().status(), 401);
    // Bad declarations change nothing.
    let mut bad = vec![];
    for (field, value) in [
        ("name", json!("Demo/../x")),
        ("name", json!("demo")),
        ("upstream_url", json!("ftp://x/")),
        ("upstream_url", json!("http://user@x/")),
        ("required_scopes", json!(["nope"])),
        ("scopes", json!([{"name": "offline_access"}])),
        ("display_name", json!("")),
        ("extra", json!(1)),
    ] {
        let mut body = demo("http://127.0.0.1:9/mcp");
        body["name"] = json!("other");
        body[field] = value;
        bad.push(body);
    }
    for body in bad {
        let r = s.send(Method::POST, RESOURCES, &admin).json(&body).send().await.unwrap();
        assert!(r.status() == 400 || r.status() == 409, "{body}: {}", r.status());
    }
    let list = json_with_status(s.get(RESOURCES, &admin).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A resource server elsewhere, by its URL; the metadata lists every scope.
    s.declare(
        json!({"name": "reports", "display_name": "Reports API", "resource": "https://reports.example/",
                     "scopes": [{"name": "reports:read"}]}),
    )
    .await;
    let meta = json_with_status(
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap(),
        200,
    )
    .await;
    for scope in ["api", "mcp", "offline_access", "openid", "tools:read", "reports:read"] {
        assert!(meta["scopes_supported"].as_array().unwrap().contains(&json!(scope)), "{scope}");
    }
    let reports =
        json_with_status(s.get("/admin/api/resources/reports/", &admin).send().await.unwrap(), 200).await;
    assert_eq!(reports["resource"], "https://reports.example");
    // Replace and delete.
    let mut replaced = demo("http://127.0.0.1:9/v2");
    replaced.as_object_mut().unwrap().remove("name");
    let r = s.send(Method::PUT, "/admin/api/resources/demo/", &admin).json(&replaced).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["upstream_url"], "http://127.0.0.1:9/v2");
    let r = s.send(Method::PUT, "/admin/api/resources/ghost/", &admin).json(&replaced).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        s.send(Method::DELETE, "/admin/api/resources/demo/", &admin).send().await.unwrap().status(),
        204
    );
    assert_eq!(s.get("/admin/api/resources/demo/", &admin).send().await.unwrap().status(), 404);
    assert_eq!(s.http.get(s.url("/r/demo")).send().await.unwrap().status(), 404);
}

/// A client-credentials token for `resource` with `scope`.
async fn m2m_token(
    s: &TestServer,
    id: &str,
    secret: &str,
    resource: &str,
    scope: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
        ("resource", resource),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    s.token_request(&form).await
}

async fn the_gateway_checks_tokens_and_hides_them(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (upstream_url, seen) = upstream().await;
    s.declare(demo(&upstream_url)).await;
    let gateway = s.url("/r/demo");
    let metadata_url = s.url("/.well-known/oauth-protected-resource/r/demo");

    // RFC 9728 metadata, also below the resource's path.
    for path in
        ["/.well-known/oauth-protected-resource/r/demo", "/.well-known/oauth-protected-resource/r/demo/mcp"]
    {
        let prm = json_with_status(s.http.get(s.url(path)).send().await.unwrap(), 200).await;
        assert_eq!(prm["resource"], gateway);
        assert_eq!(prm["authorization_servers"], json!([s.url("").trim_end_matches('/')]));
        assert_eq!(prm["scopes_supported"], json!(["tools:read", "tools:admin"]));
    }
    assert_eq!(
        s.http.get(s.url("/.well-known/oauth-protected-resource/r/ghost")).send().await.unwrap().status(),
        404
    );

    // No token: 401 pointing at the metadata and the scope.
    let r = s.http.post(&gateway).json(&json!({"jsonrpc": "2.0"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"tools:read\""), "{challenge}");
    // Garbage, and a token for keyward itself (wrong aud): invalid_token.
    let (id, secret) = s.m2m_client("viewer", 3600).await;
    let keyward_token = s.client_jwt(&id, &secret).await;
    for token in ["garbage", keyward_token.as_str()] {
        let r = s.http.get(&gateway).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    }
    // The right audience without the required scope: 403 naming it.
    let weak = json_with_status(m2m_token(&s, &id, &secret, &gateway, Some("tools:admin")).await, 200).await;
    let weak = weak["access_token"].as_str().unwrap();
    let r = s.http.get(&gateway).bearer_auth(weak).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"tools:read\""),
        "{challenge}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the upstream yet");

    // A method never passed on: the token is checked first (401 without
    // one), then a 405 that says what is passed on; nothing goes upstream.
    let good = json_with_status(m2m_token(&s, &id, &secret, &gateway, None).await, 200).await;
    let good = good["access_token"].as_str().unwrap().to_string();
    let trace = || s.http.request(reqwest::Method::TRACE, &gateway);
    assert_eq!(trace().send().await.unwrap().status(), 401);
    let r = trace().bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    assert!(r.text().await.unwrap().contains("not passed on"));
    // A token without the required scope is refused for that first (403);
    // 50 at once with a good one are all checked and refused alike.
    let r = trace().bearer_auth(weak).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..50 {
        all.spawn(trace().bearer_auth(&good).send());
    }
    while let Some(r) = all.join_next().await {
        assert_eq!(r.unwrap().unwrap().status(), 405);
    }
    assert!(seen.lock().unwrap().is_empty(), "a TRACE reached the upstream");

    // A good token: passed on with who it is for, never the token itself,
    // and a caller's own identity headers are dropped.
    let granted = json_with_status(m2m_token(&s, &id, &secret, &gateway, None).await, 200).await;
    assert_eq!(granted["scope"], "tools:read");
    let r = s
        .http
        .post(&gateway)
        .bearer_auth(&good)
        .header("x-keyward-subject", "someone-else")
        .header("cookie", "a=b")
        .header("mcp-session-id", "s-1")
        .json(&json!({"jsonrpc": "2.0", "method": "tools/list", "params": {"text": "two\nlines"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["mcp-session-id"], "s-1");
    // An answer of known length is passed on with it, not re-chunked.
    assert!(r.headers().get("transfer-encoding").is_none(), "{:?}", r.headers());
    assert!(r.headers().contains_key("content-length"), "{:?}", r.headers());
    let echoed = r.json::<Value>().await.unwrap();
    assert!(echoed["echo"].as_str().unwrap().contains("tools/list"));
    let seen_now = seen.lock().unwrap().clone();
    let header =
        |name: &str| seen_now.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(header("x-keyward-subject"), [id.clone()]);
    assert_eq!(header("x-keyward-client-id"), [id.clone()]);
    assert_eq!(header("x-keyward-scope"), ["tools:read"]);
    assert!(header("x-keyward-username").is_empty(), "a machine has no username");
    assert_eq!(header("mcp-session-id"), ["s-1"]);
    assert!(header("authorization").is_empty() && header("cookie").is_empty());
    assert!(!seen_now.iter().any(|(_, v)| v.contains(&good)));

    // An upstream's statuses pass through; in the metrics, those without a
    // standard meaning count as one series, so an upstream cannot add
    // series (memory) at will.
    for code in [277u16, 477, 599, 418] {
        let r = s.http.get(s.url(&format!("/r/demo/status/{code}"))).bearer_auth(&good).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code);
    }
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let gateway_series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("keyward_http_requests_total") && l.contains("/r/"))
        .collect();
    assert!(gateway_series.iter().any(|l| l.contains(r#"status="other""#)), "{gateway_series:?}");
    assert!(gateway_series.iter().any(|l| l.contains(r#"status="418""#)), "{gateway_series:?}");
    for odd in ["277", "477", "599"] {
        assert!(!metrics.contains(&format!(r#"status="{odd}""#)), "{odd}: {gateway_series:?}");
    }

    // Server-sent events arrive as they are sent.
    let started = std::time::Instant::now();
    let mut r = s.http.get(s.url("/r/demo/events")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    assert!(started.elapsed() < Duration::from_millis(1200), "the first event was held back");
    let second = r.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"data: two\n\n");

    // A body far over the limit is refused before anything reaches the upstream.
    crate::harness::refused_as_too_large(
        s.http
            .post(&gateway)
            .bearer_auth(&good)
            .header("content-type", "application/json")
            .body(vec![b' '; keyward::http::GATEWAY_MAX_BODY_BYTES + 1])
            .send()
            .await,
    );
    // The resource's root with a trailing slash reaches the upstream too.
    assert_ne!(s.http.get(s.url("/r/demo/")).bearer_auth(&good).send().await.unwrap().status(), 404);
    // A request without a body reaches it without one, and the caller's
    // connection stays open (it was closed after every GET).
    let r = s.http.get(&gateway).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("connection").is_none(), "{:?}", r.headers());
    let seen_now = seen.lock().unwrap().clone();
    assert!(!seen_now.iter().any(|(k, _)| k == "transfer-encoding" || k == "content-length"), "{seen_now:?}");
    // Paths stay below the upstream; revoked tokens stop at once.
    let r = s.http.get(s.url("/r/demo/..%2f..%2fetc")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .http
        .post(s.url("/oauth/v2/revoke/"))
        .form(&[("token", good.as_str()), ("client_id", &id), ("client_secret", &secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.http.get(&gateway).bearer_auth(&good).send().await.unwrap().status(), 401);
    // 50 at once with good tokens all pass.
    let fresh =
        json_with_status(m2m_token(&s, &id, &secret, &gateway, None).await, 200).await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..50 {
        all.spawn(
            s.http
                .post(&gateway)
                .bearer_auth(&fresh)
                .body("{}")
                .header("content-type", "application/json")
                .send(),
        );
    }
    while let Some(r) = all.join_next().await {
        assert_eq!(r.unwrap().unwrap().status(), 200);
    }
}

/// The demo resource served at the gateway from `upstream_url`, and a
/// token for it: (gateway URL, token).
async fn demo_behind_the_gateway(s: &TestServer, upstream_url: &str) -> (String, String) {
    s.declare(demo(upstream_url)).await;
    let gateway = s.url("/r/demo");
    let (id, secret) = s.m2m_client("viewer", 3600).await;
    let token = json_with_status(m2m_token(s, &id, &secret, &gateway, None).await, 200).await;
    (gateway, token["access_token"].as_str().unwrap().to_string())
}

/// Each node keeps the resources its gateway served in memory, yet a
/// resource declared again or deleted applies at once on the node that
/// changed it, and on the others once PostgreSQL delivers the notice.
async fn a_changed_resource_applies_on_every_node(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let (upstream_url, _) = upstream().await;
    let (_, token) = demo_behind_the_gateway(&a, &upstream_url).await;
    let status = async |node: &TestServer| {
        let r = node.http.post(node.url("/r/demo")).bearer_auth(&token).json(&json!({})).send().await;
        r.unwrap().status().as_u16()
    };
    let soon = async |node: &TestServer, expected: u16| {
        for _ in 0..40 {
            if status(node).await == expected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    for node in [&a, &b] {
        for _ in 0..2 {
            assert_eq!(status(node).await, 200);
        }
    }
    // Declared again, now requiring a scope the token lacks.
    let admin = a.admin_token().await;
    let mut stricter = demo(&upstream_url);
    stricter.as_object_mut().unwrap().remove("name");
    stricter["required_scopes"] = json!(["tools:admin"]);
    let r = a.send(Method::PUT, &format!("{RESOURCES}demo/"), &admin).json(&stricter).send().await;
    json_with_status(r.unwrap(), 200).await;
    assert_eq!(status(&a).await, 403, "at once on the node that changed it");
    assert!(soon(&b, 403).await, "on the other node");
    let r = a.send(Method::DELETE, &format!("{RESOURCES}demo/"), &admin).send().await;
    assert_eq!(r.unwrap().status(), 204);
    assert_eq!(status(&a).await, 404);
    assert!(soon(&b, 404).await);
}

type BodyPart = Result<Vec<u8>, std::io::Error>;

/// A request body sent part by part, as the test feeds it.
fn fed_body() -> (tokio::sync::mpsc::Sender<BodyPart>, reqwest::Body) {
    let (parts, sent) = tokio::sync::mpsc::channel::<BodyPart>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(sent, |mut sent| async move {
        sent.recv().await.map(|part| (part, sent))
    }));
    (parts, body)
}

/// A request's body reaches the upstream as it is sent: the second part is
/// sent only once the upstream has the first, which a gateway that read
/// the whole body first would never pass on.
async fn request_bodies_stream_to_the_upstream(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (upstream_url, mut first_part_arrived) = upload_upstream().await;
    let (gateway, token) = demo_behind_the_gateway(&s, &upstream_url).await;
    let (parts, body) = fed_body();
    let request = tokio::spawn(s.http.post(&gateway).bearer_auth(&token).body(body).send());
    parts.send(Ok(vec![b'a'; 1000])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), first_part_arrived.recv())
        .await
        .expect("the first part of the body was held back")
        .unwrap();
    parts.send(Ok(vec![b'b'; 500])).await.unwrap();
    drop(parts);
    let answer = request.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "1500");

    // A stream that goes on past the cap is cut off, and nothing more of
    // it is passed on; the caller gets no success.
    let endless = futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let r = s.http.post(&gateway).bearer_auth(&token).body(reqwest::Body::wrap_stream(endless)).send().await;
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
    // One that ends just past it, of no declared length (chunked): the
    // caller's fault, a 413, not the upstream's (502).
    let parts = (0..(keyward::http::GATEWAY_MAX_BODY_BYTES / (64 * 1024) + 2))
        .map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024]));
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    crate::harness::refused_as_too_large(
        s.http.post(&gateway).bearer_auth(&token).body(chunked).send().await,
    );
}

/// An upstream that answers at once and reads the body on its own (found
/// by an outside review): the caller cannot hold both connections open by
/// trickling, as the body has a deadline of its own.
async fn a_trickled_body_is_cut_off_even_after_an_early_answer(backend: Backend) {
    use axum::routing::post;
    use futures_util::StreamExt;
    let s = TestServer::start(backend).await;
    let early = |body: axum::body::Body| async move {
        tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            while let Some(Ok(_)) = stream.next().await {}
        });
        "answered early"
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/mcp", post(early))).await });
    let (gateway, token) = demo_behind_the_gateway(&s, &format!("http://{addr}/mcp")).await;
    let (parts, body) = fed_body();
    let request = tokio::spawn(s.http.post(&gateway).bearer_auth(&token).body(body).send());
    let started = std::time::Instant::now();
    // One byte a second, until keyward stops taking them.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if parts.send(Ok(vec![b'x'])).await.is_err() {
            break;
        }
        assert!(
            started.elapsed() < keyward::http::GATEWAY_BODY_TIMEOUT + Duration::from_secs(15),
            "the trickled body was never cut off"
        );
    }
    assert!(started.elapsed() >= keyward::http::GATEWAY_BODY_TIMEOUT - Duration::from_secs(1));
    let _ = request.await;
}

async fn scopes_fit_the_audience(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.declare(demo("http://127.0.0.1:9/mcp")).await;
    let gateway = s.url("/r/demo");
    let (id, secret) = s.m2m_client("viewer", 3600).await;
    // keyward's own API scope is not for the resource, nor the resource's for keyward.
    oauth_error(m2m_token(&s, &id, &secret, &gateway, Some("api")).await, 400, "invalid_scope").await;
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "tools:read"),
        ])
        .await;
    oauth_error(r, 400, "invalid_scope").await;
    // Keyward (or an undeclared server) and a declared resource in one token: refused.
    let issuer = s.url("").trim_end_matches('/').to_string();
    for other in [issuer.as_str(), "https://platform.example/api"] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("resource", gateway.as_str()),
            ("resource", other),
            ("scope", "api tools:read"),
        ];
        oauth_error(s.token_request(&form).await, 400, "invalid_target").await;
    }
    // Declaring keyward's own scopes or keyward itself: refused.
    let admin = s.admin_token().await;
    for bad in [
        json!({"name": "x", "display_name": "X", "resource": "https://x.example/", "scopes": [{"name": "api"}]}),
        json!({"name": "y", "display_name": "Y", "resource": issuer.clone()}),
    ] {
        let r = s.send(Method::POST, RESOURCES, &admin).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    // Undeclared resources keep keyward's scopes.
    let t =
        json_with_status(m2m_token(&s, &id, &secret, "https://platform.example/api", None).await, 200).await;
    assert_eq!(t["scope"], "api mcp");
    // openid is accepted (no ID token is issued).
    let t =
        json_with_status(m2m_token(&s, &id, &secret, &gateway, Some("openid tools:read")).await, 200).await;
    assert_eq!(t["scope"], "openid tools:read");
    // At the authorization endpoint too: the error goes back to the client.
    let (client_id, _) = s.register_client(crate::delegated_oauth::public("http://127.0.0.1/cb")).await;
    let resource = url::form_urlencoded::byte_serialize(gateway.as_bytes()).collect::<String>();
    let (url, _) =
        authorize_url(&s, &client_id, "http://127.0.0.1/cb", &format!("&scope=api&resource={resource}"));
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), 303);
    let back = crate::delegated_oauth::location(&r);
    assert_eq!(param(&back, "error").as_deref(), Some("invalid_scope"));
}

async fn the_token_endpoint_never_widens_the_resource(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (upstream_url, seen) = upstream().await;
    s.declare(demo(&upstream_url)).await;
    let gateway = s.url("/r/demo");
    let (client_id, _) = s.register_client(crate::delegated_oauth::public("http://127.0.0.1/cb")).await;
    // Authorized for keyward alone; the token request names the gateway.
    let (url, verifier) = authorize_url(&s, &client_id, "http://127.0.0.1/cb", "&scope=mcp");
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    oauth_error(redeem(&s, &client_id, &code, &verifier, Some(&gateway)).await, 400, "invalid_target").await;
    // Naming keyward itself is what that grant means: fine.
    let (url, verifier) = authorize_url(&s, &client_id, "http://127.0.0.1/cb", "&scope=mcp");
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    let issuer = s.url("").trim_end_matches('/').to_string();
    json_with_status(redeem(&s, &client_id, &code, &verifier, Some(&issuer)).await, 200).await;
    // Authorized for the gateway: the token's aud is the gateway.
    let resource = url::form_urlencoded::byte_serialize(gateway.as_bytes()).collect::<String>();
    let (url, verifier) =
        authorize_url(&s, &client_id, "http://127.0.0.1/cb", &format!("&resource={resource}"));
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    let t = json_with_status(redeem(&s, &client_id, &code, &verifier, Some(&gateway)).await, 200).await;
    assert_eq!(t["scope"], "tools:read");
    let jwt = t["access_token"].as_str().unwrap();
    let payload: Value = {
        use base64::Engine;
        let part = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap())
            .unwrap()
    };
    assert_eq!(payload["aud"], gateway);
    // The upstream learns the user's name with the request (an M2M
    // client's requests carry none).
    let r = s.http.post(&gateway).bearer_auth(jwt).json(&json!({"jsonrpc": "2.0"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let user_headers: Vec<(String, String)> =
        seen.lock().unwrap().iter().filter(|(k, _)| k.starts_with("x-keyward-")).cloned().collect();
    assert!(user_headers.contains(&("x-keyward-username".into(), "admin".into())), "{user_headers:?}");
    assert!(user_headers.contains(&("x-keyward-subject".into(), payload["sub"].as_str().unwrap().into())));

    // A grant for two resources, refreshed for one: the other's scopes go.
    s.declare(json!({"name": "reports", "display_name": "Reports", "resource": "https://reports.example/",
                     "scopes": [{"name": "reports:read"}]}))
        .await;
    let enc = |u: &str| url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>();
    let extra = format!(
        "&resource={}&resource={}&scope=tools:read%20reports:read%20offline_access",
        enc(&gateway),
        enc("https://reports.example")
    );
    let (url, verifier) = authorize_url(&s, &client_id, "http://127.0.0.1/cb", &extra);
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    let t = json_with_status(redeem(&s, &client_id, &code, &verifier, None).await, 200).await;
    assert_eq!(t["scope"], "offline_access reports:read tools:read");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ("client_id", client_id.as_str()),
        ("resource", gateway.as_str()),
    ];
    let narrowed = json_with_status(s.token_request(&form).await, 200).await;
    assert_eq!(narrowed["scope"], "offline_access tools:read");
}

/// Redeems a code of the public test client (optionally for `resource`).
async fn redeem(
    s: &TestServer,
    client_id: &str,
    code: &str,
    verifier: &str,
    resource: Option<&str>,
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1/cb"),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    s.token_request(&form).await
}

/// Reads one HTTP/1.1 answer (with a Content-Length) from `stream`: its
/// head, lower-cased, or None when the connection ends first.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(head)
}

/// An MCP client's first request is refused for want of a token and its
/// retry follows on the same connection. The refusal comes before the
/// body is read; the connection must still serve the retry (a small body
/// is read and dropped) or say `Connection: close` (a large one), never be
/// cut without a word.
async fn a_refusal_leaves_the_connection_usable_or_says_it_closes(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start(backend).await;
    let (upstream_url, _) = upstream().await;
    s.declare(demo(&upstream_url)).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let head = |length: usize| {
        format!(
            "POST /r/demo HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };

    // A small body that arrives after the head, so after the refusal.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head(1000).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(&[b' '; 1000]).await.unwrap();
    let first = read_answer(&mut stream).await.expect("the refusal");
    assert!(first.starts_with("http/1.1 401") && !first.contains("connection: close"), "{first}");
    let retry = format!("GET /r/demo HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(retry.as_bytes()).await.unwrap();
    let second = read_answer(&mut stream).await.expect("the connection still serves");
    assert!(second.starts_with("http/1.1 401"), "{second}");

    // A large one is not read: the refusal says the connection closes.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(head(1_000_000).as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; 200_000]).await.unwrap();
    let refused = read_answer(&mut stream).await.expect("the refusal");
    assert!(refused.starts_with("http/1.1 401") && refused.contains("connection: close"), "{refused}");

    // A client that waits to be asked for its body is not asked for it.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let waiting = head(1000).replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n");
    stream.write_all(waiting.as_bytes()).await.unwrap();
    let refused = read_answer(&mut stream).await.expect("the refusal");
    assert!(refused.starts_with("http/1.1 401") && refused.contains("connection: close"), "{refused}");

    // Passed on but not read to its end (the upstream is down): the answer
    // says the connection closes too.
    let s = TestServer::start(backend).await;
    let (gateway, token) = demo_behind_the_gateway(&s, "http://127.0.0.1:9/mcp").await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let path = gateway.trim_start_matches(&s.base);
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 1000]).await.unwrap();
    let failed = read_answer(&mut stream).await.expect("the upstream's failure");
    assert!(failed.starts_with("http/1.1 502") && failed.contains("connection: close"), "{failed}");

    // A broken chunk is the caller's fault (400), not the upstream's (found
    // by an outside attack: it was a 502).
    let (upstream_url, _) = upstream().await;
    let s = TestServer::start(backend).await;
    let (gateway, token) = demo_behind_the_gateway(&s, &upstream_url).await;
    let addr = gateway.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /r/demo HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let refused = read_answer(&mut stream).await.expect("the refusal");
    assert!(refused.starts_with("http/1.1 400") && refused.contains("connection: close"), "{refused}");
}

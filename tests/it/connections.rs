//! `/api/v2/connections/`: client-credentials connections against a real
//! provider (another keyward), fetched exactly once under concurrency.

use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::domain::Role;
use keyward::store::AuditQuery;
use reqwest::Method;
use serde_json::{Value, json};

pub(crate) const CONNECTIONS: &str = "/api/v2/connections/";

/// A provider with an M2M client, and an outbound client at `s` for it.
pub(crate) async fn provider_and_outbound(
    s: &TestServer,
    backend: Backend,
    extra: Value,
) -> (TestServer, String, String) {
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let (m2m_id, m2m_secret) = provider.m2m_client("viewer", 600).await;
    let mut body = json!({
        "name": "Provider", "grant_type": "client_credentials", "client_id": m2m_id, "client_secret": m2m_secret,
        "token_url": provider.url("/oauth/v2/token/"), "scopes": ["api"], "api_base_url": format!("{}/", provider.base)
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let admin = s.admin_token().await;
    let r = s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap();
    let outbound = json_with_status(r, 201).await["id"].as_str().unwrap().to_string();
    // These tests read tokens as their owner; the default (off) is in agents.rs.
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    (provider, outbound, m2m_id)
}

pub(crate) async fn connect(s: &TestServer, token: &str, outbound: &str) -> String {
    let r = s
        .send(Method::POST, CONNECTIONS, token)
        .json(&json!({"outbound_client_id": outbound, "name": "reports"}))
        .send()
        .await
        .unwrap();
    let created = json_with_status(r, 201).await;
    assert_eq!(created["status"], "pending");
    created["id"].as_str().unwrap().to_string()
}

/// How many tokens the provider issued to `client_id`.
async fn issued_by(provider: &TestServer, client_id: &str) -> usize {
    provider.app.audit.flush().await;
    let q = AuditQuery {
        action: Some("token.issued".into()),
        actor: Some(format!("client:{client_id}")),
        limit: 1000,
        ..Default::default()
    };
    provider.app.store.audit_events(&q).await.unwrap().len()
}

async fn a_token_on_demand_and_held_until_it_expires(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (provider, outbound, m2m_id) = provider_and_outbound(&s, backend, json!({})).await;
    let user = s.admin_token().await;
    let id = connect(&s, &user, &outbound).await;
    let path = format!("{CONNECTIONS}{id}/token/");
    let r = s.get(&path, &user).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let first = json_with_status(r, 200).await;
    assert_eq!(first["token_type"], "Bearer");
    let access = first["access_token"].as_str().unwrap().to_string();
    // It is the provider's token, for the scope configured.
    let intro = provider.app.introspect(&access).await.unwrap();
    assert_eq!((intro["active"].clone(), intro["scope"].clone()), (json!(true), json!("api")));
    let again = json_with_status(s.get(&path, &user).send().await.unwrap(), 200).await;
    assert_eq!(again["access_token"], access.as_str(), "held while fresh");
    assert_eq!(issued_by(&provider, &m2m_id).await, 1);
    let got = json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &user).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "active");
    assert!(!got.to_string().contains(&access));
    let list = json_with_status(s.get(CONNECTIONS, &user).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    // At rest the token is sealed.
    assert!(!crate::harness::database_dump(&s).contains(&access));
}

async fn a_short_lifetime_is_renewed_before_it_ends(backend: Backend) {
    let s = TestServer::start(backend).await;
    // The admin's override (the provider's own expires_in is 600 s).
    let (provider, outbound, m2m_id) =
        provider_and_outbound(&s, backend, json!({"access_token_lifetime_ms": 1500})).await;
    let user = s.admin_token().await;
    let id = connect(&s, &user, &outbound).await;
    let path = format!("{CONNECTIONS}{id}/token/");
    let first = json_with_status(s.get(&path, &user).send().await.unwrap(), 200).await;
    let expires = first["expires_at"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let second = json_with_status(s.get(&path, &user).send().await.unwrap(), 200).await;
    assert_ne!(second["access_token"], first["access_token"], "renewed within the margin");
    assert!(second["expires_at"].as_i64().unwrap() > expires);
    assert_eq!(issued_by(&provider, &m2m_id).await, 2);
}

async fn a_hundred_callers_on_two_nodes_cause_one_fetch(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let (provider, outbound, m2m_id) = provider_and_outbound(&a, backend, json!({})).await;
    let user = a.admin_token().await;
    let id = connect(&a, &user, &outbound).await;
    let path = format!("{CONNECTIONS}{id}/token/");
    let calls = (0..100).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.get(&path, &user).send()
    });
    let responses = futures_join_all(calls).await;
    let mut tokens = std::collections::HashSet::new();
    for r in responses {
        tokens.insert(json_with_status(r.unwrap(), 200).await["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    assert_eq!(issued_by(&provider, &m2m_id).await, 1, "the provider saw exactly one request");
}

/// Runs futures concurrently (the crate has no `futures` dependency).
pub(crate) async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
    F: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn a_refusal_marks_the_connection_for_reauthorization(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (provider, outbound, m2m_id) = provider_and_outbound(&s, backend, json!({})).await;
    let user = s.admin_token().await;
    let id = connect(&s, &user, &outbound).await;
    let patch = keyward::app::ClientPatch { disabled: Some(true), ..Default::default() };
    provider.app.update_m2m_client(keyward::domain::Actor::System, &m2m_id, patch).await.unwrap();
    let d =
        api_error(s.get(&format!("{CONNECTIONS}{id}/token/"), &user).send().await.unwrap(), 409, "conflict")
            .await;
    assert!(d.contains("invalid_client"), "{d}");
    let got = json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &user).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "needs_reauth");
    assert!(got["status_detail"].as_str().unwrap().contains("invalid_client"));
    let d =
        api_error(s.get(&format!("{CONNECTIONS}{id}/token/"), &user).send().await.unwrap(), 409, "conflict")
            .await;
    assert!(d.contains("authorized again"), "{d}");
    let events = s
        .app
        .store
        .audit_events(&AuditQuery {
            action: Some("connection.needs_reauth".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

async fn an_unreachable_provider_is_a_502_and_no_hang(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // dropped: nobody listens
    let body = json!({"name": "Gone", "grant_type": "client_credentials", "client_id": "x", "client_secret": "y",
        "token_url": format!("http://{closed}/token"), "api_base_url": format!("http://{closed}/")});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    for _ in 0..2 {
        api_error(
            s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(),
            502,
            "upstream_error",
        )
        .await;
    }
    let got =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &admin).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "pending");
}

async fn connections_are_their_owners(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_provider, outbound, _) = provider_and_outbound(&s, backend, json!({})).await;
    let owner = s.admin_token().await;
    let id = connect(&s, &owner, &outbound).await;
    let other = s.token_for_role(Role::ServerAdmin).await;
    for path in [format!("{CONNECTIONS}{id}/"), format!("{CONNECTIONS}{id}/token/")] {
        api_error(s.get(&path, &other).send().await.unwrap(), 404, "not_found").await;
    }
    // Starting or revoking someone else's connection, by GET or POST, is the
    // same 404; nobody's is a 401.
    let authorize = format!("{CONNECTIONS}{id}/authorize/");
    for (method, path) in [
        (Method::GET, authorize.clone()),
        (Method::POST, authorize.clone()),
        (Method::POST, format!("{CONNECTIONS}{id}/revoke/")),
    ] {
        api_error(s.send(method.clone(), &path, &other).send().await.unwrap(), 404, "not_found").await;
        assert_eq!(s.http.request(method, s.url(&path)).send().await.unwrap().status(), 401);
    }
    api_error(
        s.send(Method::DELETE, &format!("{CONNECTIONS}{id}/"), &other).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let r = s
        .send(Method::POST, CONNECTIONS, &owner)
        .json(&json!({"outbound_client_id": "obc_nope", "name": "x"}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .send(Method::POST, CONNECTIONS, &owner)
        .json(&json!({"outbound_client_id": outbound}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    assert_eq!(
        s.send(Method::DELETE, &format!("{CONNECTIONS}{id}/"), &owner).send().await.unwrap().status(),
        204
    );
    api_error(s.get(&format!("{CONNECTIONS}{id}/"), &owner).send().await.unwrap(), 404, "not_found").await;
}

async fn authorization_code_connections_wait_for_authorization(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let body = json!({"name": "End system", "grant_type": "authorization_code", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://account.endsystem.com/authorize", "token_url": "https://api.endsystem.com/token",
        "api_base_url": "https://api.endsystem.com/v1/"});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let d =
        api_error(s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(), 409, "conflict")
            .await;
    assert!(d.contains("authorize it first"), "{d}");
    // The link keyward hands out starts at keyward, which sends the browser on
    // to the provider with state, PKCE and the admin's extra parameters.
    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let link = started["authorization_url"].as_str().unwrap();
    assert!(link.starts_with(&format!("{}/oauth/v1/connections/start/?state=", s.app.issuer)), "{link}");
    let browser = crate::delegated_oauth::Browser::new();
    let url = start_in_browser(&browser, &s, link).await;
    assert!(
        url.starts_with("https://account.endsystem.com/authorize?response_type=code&client_id=c"),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256") && url.contains("redirect_uri="), "{url}");
    // The link works once.
    assert_eq!(browser.get(link).await.status(), 400);
    // A browser asking the API directly is redirected to the link.
    let r = s
        .get(&format!("{CONNECTIONS}{id}/authorize/"), &admin)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    // Unknown states are refused at both ends, without a redirect.
    assert_eq!(
        s.http.get(s.url("/oauth/v1/connections/callback/?state=nope&code=x")).send().await.unwrap().status(),
        400
    );
    assert_eq!(browser.get(&s.url("/oauth/v1/connections/start/?state=nope")).await.status(), 400);
    // Without a keyward session, the start link asks to sign in first.
    let r = s.http.get(s.url("/oauth/v1/connections/start/?state=nope")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign in"));
}

/// The authorization code flow end to end, with keyward as the provider:
/// authorize → the provider's login and consent → callback → token →
/// refresh → the provider revokes → needs_reauth.
async fn authorization_code_with_keyward_as_the_provider(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Another host, as a provider is: browsers keep cookies per host.
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let callback = format!("{}/oauth/v1/connections/callback/", s.app.issuer);
    let (pid, psecret) = provider
        .register_client(
            json!({"name": "Platform connector", "redirect_uris": [callback], "grant_type": "confidential",
            "refresh_token_lifetime": 259200, "access_token_lifetime": 3600, "pkce_enabled": true}),
        )
        .await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Keyward provider", "grant_type": "authorization_code", "client_id": pid, "client_secret": psecret,
        "authorization_url": provider.url("/oauth/v1/authorize/"), "token_url": provider.url("/oauth/v1/token/"),
        "scopes": ["api", "offline_access"], "api_base_url": format!("{}/", provider.base), "access_token_lifetime_ms": 1500});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let token_path = format!("{CONNECTIONS}{id}/token/");
    api_error(s.get(&token_path, &admin).send().await.unwrap(), 409, "conflict").await;

    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let browser = crate::delegated_oauth::Browser::new();
    let url = start_in_browser(&browser, &s, started["authorization_url"].as_str().unwrap()).await;
    assert!(url.contains("code_challenge=") && url.contains("state="), "{url}");
    let back = browser.authorize(&provider, &url).await;
    assert!(back.starts_with(&callback), "{back}");
    // The same answer arriving in another browser (an attacker's link) is refused.
    assert_eq!(s.http.get(&back).send().await.unwrap().status(), 403);
    // Start again: the state above is used up.
    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let url = start_in_browser(&browser, &s, started["authorization_url"].as_str().unwrap()).await;
    let back = browser.authorize(&provider, &url).await;
    let page = browser.get(&back).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Connected"));
    // The state is single use.
    assert_eq!(browser.get(&back).await.status(), 400);
    let got =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &admin).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "active");

    let first = json_with_status(s.get(&token_path, &admin).send().await.unwrap(), 200).await;
    let access = first["access_token"].as_str().unwrap().to_string();
    let intro = provider.app.introspect(&access).await.unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["sub"], provider.user_named("admin").await.id.to_string());
    // Expiring (the 1.5 s override): refreshed with the refresh token; the
    // provider rotates it and keyward keeps the new one.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let second = json_with_status(s.get(&token_path, &admin).send().await.unwrap(), 200).await;
    assert_ne!(second["access_token"], access.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let third = json_with_status(s.get(&token_path, &admin).send().await.unwrap(), 200).await;
    assert_ne!(third["access_token"], second["access_token"], "the rotated refresh token was kept");
    assert!(!crate::harness::database_dump(&s).contains(third["access_token"].as_str().unwrap()));

    // The user withdraws consent at the provider: the next refresh fails for good.
    let provider_admin = provider.admin_token().await;
    let r = provider
        .send(Method::DELETE, &format!("/api/v2/oauth/consents/{pid}/"), &provider_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let d = api_error(s.get(&token_path, &admin).send().await.unwrap(), 409, "conflict").await;
    assert!(d.contains("invalid_grant"), "{d}");
    let got =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &admin).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "needs_reauth");
    // Revoked by its owner: no token until authorized again.
    let revoked = json_with_status(
        s.send(Method::POST, &format!("{CONNECTIONS}{id}/revoke/"), &admin).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(revoked["status"], "revoked");
    let d = api_error(s.get(&token_path, &admin).send().await.unwrap(), 409, "conflict").await;
    assert!(d.contains("revoked"), "{d}");
    // A new authorization recovers it.
    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let url = start_in_browser(&browser, &s, started["authorization_url"].as_str().unwrap()).await;
    let back = browser.authorize(&provider, &url).await;
    assert_eq!(browser.get(&back).await.status(), 200);
    json_with_status(s.get(&token_path, &admin).send().await.unwrap(), 200).await;
}

/// A raw HTTP/1.1 request, so that the path reaches keyward exactly as
/// written (HTTP clients normalize `..` away); the status code.
async fn raw_status(s: &TestServer, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nTOKEN: {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn the_proxy_injects_the_token_and_stays_below_the_base(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Another host, as a provider is: browsers keep cookies per host.
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let (m2m_id, m2m_secret) = provider.m2m_client("server_admin", 600).await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Provider API", "grant_type": "client_credentials", "client_id": m2m_id, "client_secret": m2m_secret,
        "token_url": provider.url("/oauth/v2/token/"), "api_base_url": provider.url("/admin/api/")});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let proxy = |rest: &str| format!("{CONNECTIONS}{id}/proxy/{rest}");

    let users = json_with_status(s.get(&proxy("users/"), &admin).send().await.unwrap(), 200).await;
    assert!(users.as_array().unwrap().iter().any(|u| u["username"] == "admin"));
    let one = json_with_status(s.get(&proxy("users/?limit=1"), &admin).send().await.unwrap(), 200).await;
    assert_eq!(one.as_array().unwrap().len(), 1, "the query passes through");
    let put = s
        .send(Method::PUT, &proxy("config/alation.authentication.token.refresh_token_lifespan/"), &admin)
        .json(&json!({"value": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(put, 200).await["value"], 9);
    assert_eq!(
        provider.app.setting("alation.authentication.token.refresh_token_lifespan").await.unwrap().value,
        "9"
    );
    // The upstream's own errors come back as they are.
    assert_eq!(s.get(&proxy("users/999999/"), &admin).send().await.unwrap().status(), 404);

    // The API refuses the held token: one refresh, one retry.
    let held =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(), 200)
            .await;
    let r = provider
        .http
        .post(provider.url("/oauth/v2/revoke/"))
        .basic_auth(&m2m_id, Some(&m2m_secret))
        .form(&[("token", held["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    json_with_status(s.get(&proxy("users/"), &admin).send().await.unwrap(), 200).await;
    assert_eq!(issued_by(&provider, &m2m_id).await, 2);

    // No way out of the base URL.
    for path in [
        "../../healthz",
        "users/../../../healthz",
        "%2e%2e/%2e%2e/healthz",
        "%2E%2E/x",
        "users%2F..%2F..%2Fhealthz",
        "..%5c..%5chealthz",
        "/evil.example/x",
        "https://evil.example/x",
        "http:/evil.example/",
    ] {
        assert_eq!(raw_status(&s, &proxy(path), &admin).await, 400, "{path}");
    }
    // Only the owner.
    let other = s.token_for_role(Role::ServerAdmin).await;
    api_error(s.get(&proxy("users/"), &other).send().await.unwrap(), 404, "not_found").await;
}

async fn the_proxy_follows_no_redirect_and_forwards_no_credentials(backend: Backend) {
    use std::sync::{Arc, Mutex};
    // A tiny API that redirects elsewhere and records what it was sent.
    let seen: Arc<Mutex<Vec<Vec<(String, String)>>>> = Arc::default();
    let record = seen.clone();
    let api = axum::Router::new().route(
        "/api/redirect",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(
                    headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                );
                (
                    axum::http::StatusCode::FOUND,
                    [
                        ("location", "http://127.0.0.2:9/elsewhere"),
                        ("set-cookie", "upstream=1"),
                        ("cache-control", "public, max-age=3600"),
                    ],
                    "",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });

    let s = TestServer::start(backend).await;
    let (provider, _, _) = provider_and_outbound(&s, backend, json!({})).await;
    let (m2m_id, m2m_secret) = provider.m2m_client("viewer", 600).await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Redirecting API", "grant_type": "client_credentials", "client_id": m2m_id, "client_secret": m2m_secret,
        "token_url": provider.url("/oauth/v2/token/"), "api_base_url": format!("http://{api_addr}/api/")});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let r = s
        .get(&format!("{CONNECTIONS}{id}/proxy/redirect"), &admin)
        .header("cookie", "kw_session=secret-cookie")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "passed back, not followed");
    assert_eq!(r.headers()["location"], "http://127.0.0.2:9/elsewhere");
    assert_eq!(r.headers()["cache-control"], "no-store", "one user's answer, never kept by a shared cache");
    assert!(r.headers().get("set-cookie").is_none(), "upstream cookies stay upstream");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0];
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert!(get("authorization").unwrap().starts_with("Bearer ey"), "the connection's token is injected");
    assert_eq!(get("cookie"), None);
    assert_eq!(get("token"), None, "the caller's own credential is not forwarded");
}

async fn transient_provider_failures_are_retried(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A provider whose token endpoint fails once, then answers with quirks:
    // expires_in as a string, and no refresh token.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let provider = axum::Router::new().route(
        "/token",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(json!({"error": "temporarily_unavailable"})),
                    )
                } else {
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(
                            json!({"access_token": "tok-1", "token_type": "bearer", "expires_in": "3600"}),
                        ),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, provider).await.unwrap() });

    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Flaky", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
        "token_url": format!("http://{addr}/token"), "token_endpoint_auth": "post", "api_base_url": format!("http://{addr}/")});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let token =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(), 200)
            .await;
    assert_eq!(token["access_token"], "tok-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one failure, one retry");
    let lifetime = token["expires_at"].as_i64().unwrap()
        - ((time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64);
    assert!((3_500_000..=3_600_000).contains(&lifetime), "expires_in given as a string: {lifetime}");
}

/// A provider whose answers are hostile, each to the client id it names:
/// an expiry past any integer, a token past any size, an error description
/// of 100 KB. Each is a clear answer; nothing huge is stored or shown.
async fn a_providers_absurd_answers_are_bounded(backend: Backend) {
    let provider = axum::Router::new().route(
        "/token",
        axum::routing::post(|form: axum::Form<std::collections::HashMap<String, String>>| async move {
            let ok = axum::http::StatusCode::OK;
            match form.get("client_id").map(String::as_str) {
                Some("huge-expiry") => (
                    ok,
                    r#"{"access_token":"tok-1","token_type":"bearer","expires_in":18446744073709551615}"#
                        .to_string(),
                ),
                Some("huge-token") => (ok, json!({"access_token": "x".repeat(300 * 1024)}).to_string()),
                _ => (
                    axum::http::StatusCode::BAD_REQUEST,
                    json!({"error": "invalid_client", "error_description": "y".repeat(100 * 1000)})
                        .to_string(),
                ),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, provider).await.unwrap() });

    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let connection_to = |client_id: &str| {
        let body = json!({"name": client_id, "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": "s", "token_url": format!("http://{addr}/token"), "token_endpoint_auth": "post",
            "api_base_url": format!("http://{addr}/")});
        let (s, admin) = (&s, &admin);
        async move {
            let r =
                s.send(Method::POST, "/admin/api/outbound_clients/", admin).json(&body).send().await.unwrap();
            let outbound = json_with_status(r, 201).await;
            connect(s, admin, outbound["id"].as_str().unwrap()).await
        }
    };
    let now_ms = || (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let read = |id: &str, what: &str| s.get(&format!("{CONNECTIONS}{id}/{what}"), &admin).send();

    let id = connection_to("huge-expiry").await;
    let token = json_with_status(read(&id, "token/").await.unwrap(), 200).await;
    assert_eq!(token["access_token"], "tok-1");
    let year = keyward::domain::connection::MAX_ACCESS_LIFETIME_MS;
    let lifetime = token["expires_at"].as_i64().unwrap() - now_ms();
    assert!((year - 60_000..=year).contains(&lifetime), "believed for a year at most: {lifetime}");
    // The background refresher takes the connection in its stride.
    s.app.sweep_connections().await.unwrap();

    let id = connection_to("huge-token").await;
    let d = api_error(read(&id, "token/").await.unwrap(), 502, "upstream_error").await;
    assert!(d.contains("larger than 256 KiB"), "{d}");
    let got = json_with_status(read(&id, "").await.unwrap(), 200).await;
    assert_eq!(got["status"], "pending", "nothing stored: {got}");

    let id = connection_to("huge-error").await;
    let d = api_error(read(&id, "token/").await.unwrap(), 409, "conflict").await;
    assert!(d.contains("invalid_client: yyy") && d.len() < 400, "the description is cut: {} chars", d.len());
    let got = json_with_status(read(&id, "").await.unwrap(), 200).await;
    assert_eq!(got["status"], "needs_reauth");
    assert!(got["status_detail"].as_str().unwrap().len() < 400, "and stored cut");
}

/// The browser follows keyward's start link, signing in to `s` as its
/// admin (the connection's owner) first; the provider URL it is sent to.
pub(crate) async fn start_in_browser(
    browser: &crate::delegated_oauth::Browser,
    s: &TestServer,
    start_url: &str,
) -> String {
    start_in_browser_as(browser, s, start_url, "admin", ADMIN_PASSWORD).await
}

/// Follows a start link in `browser`, signing in as `username` first if
/// asked: where it sends the browser (the provider).
pub(crate) async fn start_in_browser_as(
    browser: &crate::delegated_oauth::Browser,
    s: &TestServer,
    start_url: &str,
    username: &str,
    password: &str,
) -> String {
    let mut r = browser.get(start_url).await;
    if r.status() == 200 {
        let signed_in = browser.sign_in(s, start_url, username, password).await;
        assert_eq!(signed_in.status(), 303, "signed in");
        assert_eq!(
            signed_in.headers()["location"].to_str().unwrap(),
            start_url.strip_prefix(&s.base).unwrap()
        );
        r = browser.get(start_url).await;
    }
    assert_eq!(r.status(), 303, "the start link redirects to the provider");
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Connects `s` to `provider` through the authorization code flow; the
/// connection id and the provider's client id.
pub(crate) async fn authorized_connection(
    s: &TestServer,
    provider: &TestServer,
    lifetime_ms: i64,
) -> (String, String) {
    let callback = format!("{}/oauth/v1/connections/callback/", s.app.issuer);
    let (pid, psecret) = provider
        .register_client(
            json!({"name": "Platform connector", "redirect_uris": [callback], "grant_type": "confidential",
            "refresh_token_lifetime": 259200, "access_token_lifetime": 3600, "pkce_enabled": true}),
        )
        .await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Keyward provider", "grant_type": "authorization_code", "client_id": pid, "client_secret": psecret,
        "authorization_url": provider.url("/oauth/v1/authorize/"), "token_url": provider.url("/oauth/v1/token/"),
        "scopes": ["api", "offline_access"], "api_base_url": format!("{}/", provider.base), "access_token_lifetime_ms": lifetime_ms});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(s, &admin, outbound["id"].as_str().unwrap()).await;
    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let browser = crate::delegated_oauth::Browser::new();
    let to_provider = start_in_browser(&browser, s, started["authorization_url"].as_str().unwrap()).await;
    let back = browser.authorize(provider, &to_provider).await;
    assert_eq!(browser.get(&back).await.status(), 200);
    (id, pid)
}

async fn an_expired_token_is_refreshed_once_for_a_hundred_callers(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let provider = TestServer::start_at(backend, "127.0.0.2").await;
    let (id, _) = authorized_connection(&a, &provider, 1500).await;
    let admin = a.admin_token().await;
    let path = format!("{CONNECTIONS}{id}/token/");
    let first = json_with_status(a.get(&path, &admin).send().await.unwrap(), 200).await;
    let user = provider.user_named("admin").await;
    let issued = || async {
        provider.app.audit.flush().await;
        let q = AuditQuery {
            action: Some("token.issued".into()),
            actor: Some(format!("user:{}", user.id)),
            limit: 1000,
            ..Default::default()
        };
        provider.app.store.audit_events(&q).await.unwrap().len()
    };
    let before = issued().await;
    tokio::time::sleep(std::time::Duration::from_millis(900)).await; // within the renewal margin now
    let calls =
        (0..100).map(|i| if i % 2 == 0 { a.get(&path, &admin).send() } else { b.get(&path, &admin).send() });
    let mut tokens = std::collections::HashSet::new();
    for r in futures_join_all(calls).await {
        tokens.insert(json_with_status(r.unwrap(), 200).await["access_token"].as_str().unwrap().to_string());
    }
    assert_eq!(tokens.len(), 1, "every caller got the same new token");
    assert!(!tokens.contains(first["access_token"].as_str().unwrap()));
    assert_eq!(issued().await - before, 1, "the provider saw exactly one refresh");
}

async fn the_background_refresher_renews_before_expiry(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (provider, outbound, m2m_id) =
        provider_and_outbound(&s, backend, json!({"access_token_lifetime_ms": 1500})).await;
    let user = s.admin_token().await;
    let id = connect(&s, &user, &outbound).await;
    let path = format!("{CONNECTIONS}{id}/token/");
    let first = json_with_status(s.get(&path, &user).send().await.unwrap(), 200).await;
    // A round of the refresher: the token expires before the next round.
    assert_eq!(s.app.sweep_connections().await.unwrap(), 1);
    assert_eq!(issued_by(&provider, &m2m_id).await, 2);
    let after = json_with_status(s.get(&path, &user).send().await.unwrap(), 200).await;
    assert_ne!(after["access_token"], first["access_token"], "renewed with no caller asking");
    assert_eq!(issued_by(&provider, &m2m_id).await, 2, "and served without asking the provider again");
    // A connection without tokens yet is left alone.
    connect(&s, &user, &outbound).await;
    assert_eq!(s.app.sweep_connections().await.unwrap(), 1, "only the active connection");
}

async fn needs_reauth_posts_a_signed_webhook(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let record = record.clone();
            async move {
                let signature = headers
                    .get("keyward-signature")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                record.lock().unwrap().push((signature, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let r = s
        .send(Method::PUT, "/admin/api/config/keyward.connections.webhook_url/", &admin)
        .json(&json!({"value": "http://example.com/not-https"}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .send(Method::PUT, "/admin/api/config/keyward.connections.webhook_url/", &admin)
        .json(&json!({"value": format!("http://{addr}/hook")}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let (provider, outbound, m2m_id) = provider_and_outbound(&s, backend, json!({})).await;
    let id = connect(&s, &admin, &outbound).await;
    let patch = keyward::app::ClientPatch { disabled: Some(true), ..Default::default() };
    provider.app.update_m2m_client(keyward::domain::Actor::System, &m2m_id, patch).await.unwrap();
    api_error(s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(), 409, "conflict")
        .await;

    let mut delivered = None;
    for _ in 0..100 {
        if let Some(first) = received.lock().unwrap().first().cloned() {
            delivered = Some(first);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (signature, body) = delivered.expect("the webhook was called");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["event"].clone(), event["connection_id"].clone()),
        (json!("connection.needs_reauth"), json!(id))
    );
    // The signature verifies with the published JWKS and covers this body.
    let jwks = json_with_status(s.http.get(s.url("/.well-known/jwks.json")).send().await.unwrap(), 200).await;
    let header = jsonwebtoken::decode_header(&signature).unwrap();
    assert_eq!(header.typ.as_deref(), Some("keyward-webhook+jwt"));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"].as_str() == header.kid.as_deref())
            .unwrap()
            .clone(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_required_spec_claims(&["iss"]);
    validation.set_issuer(&[&s.app.issuer]);
    let claims = jsonwebtoken::decode::<Value>(
        &signature,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    assert_eq!(
        claims["body_sha256"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    );
    // Never usable as an access token.
    api_error(
        s.http.get(s.url("/admin/api/users/")).bearer_auth(&signature).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

const KEPT_REFRESH: &str = "refresh-token-of-a-terse-provider-7f3a9c";

/// A provider that omits `expires_in` everywhere and sends no new refresh
/// token on refresh: keyward keeps the old one and uses it again.
async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one(backend: Backend) {
    use std::sync::{Arc, Mutex};
    let refreshed_with: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = refreshed_with.clone();
    let provider = axum::Router::new()
        .route(
            "/authorize",
            axum::routing::get(|axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                let params: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
                let back = format!("{}?code=c1&state={}", params["redirect_uri"], params["state"]);
                axum::response::Redirect::to(&back)
            }),
        )
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let record = record.clone();
                async move {
                    let form: std::collections::HashMap<String, String> =
                        url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                    if form["grant_type"] == "authorization_code" {
                        return axum::Json(
                            json!({"access_token": "a1", "refresh_token": KEPT_REFRESH, "token_type": "bearer"}),
                        );
                    }
                    let mut seen = record.lock().unwrap();
                    seen.push(form["refresh_token"].clone());
                    axum::Json(
                        json!({"access_token": format!("a{}", seen.len() + 1), "token_type": "bearer"}),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, provider).await.unwrap() });

    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let body = json!({"name": "Terse provider", "grant_type": "authorization_code", "client_id": "c", "client_secret": "s",
        "authorization_url": format!("http://{addr}/authorize"), "token_url": format!("http://{addr}/token"),
        "token_endpoint_auth": "post", "api_base_url": format!("http://{addr}/"), "access_token_lifetime_ms": 1500});
    let outbound = json_with_status(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(&s, &admin, outbound["id"].as_str().unwrap()).await;
    let started =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/authorize/"), &admin).send().await.unwrap(), 200)
            .await;
    let browser = crate::delegated_oauth::Browser::new();
    let to_provider = start_in_browser(&browser, &s, started["authorization_url"].as_str().unwrap()).await;
    let at_provider = browser.get(&to_provider).await;
    let back = at_provider.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(browser.get(&back).await.status(), 200);

    let path = format!("{CONNECTIONS}{id}/token/");
    let first = json_with_status(s.get(&path, &admin).send().await.unwrap(), 200).await;
    assert_eq!(first["access_token"], "a1");
    let lifetime = first["expires_at"].as_i64().unwrap()
        - (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    assert!((0..=1500).contains(&lifetime), "no expires_in: the admin's override applies ({lifetime} ms)");
    for expected in ["a2", "a3"] {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        let next = json_with_status(s.get(&path, &admin).send().await.unwrap(), 200).await;
        assert_eq!(next["access_token"], expected);
    }
    assert_eq!(
        *refreshed_with.lock().unwrap(),
        vec![KEPT_REFRESH.to_string(), KEPT_REFRESH.to_string()],
        "the old refresh token was kept"
    );
    assert!(!crate::harness::database_dump(&s).contains(KEPT_REFRESH), "refresh tokens are sealed at rest");
}

async fn service_identities_read_connection_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_provider, outbound, _) = provider_and_outbound(&s, backend, json!({})).await;
    let user = s.admin_token().await;
    let id = connect(&s, &user, &outbound).await;
    let own =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/token/"), &user).send().await.unwrap(), 200).await;

    let (tool_id, tool_secret) = s.m2m_client("viewer", 600).await;
    let tool = s.client_jwt(&tool_id, &tool_secret).await;
    let read = || s.http.get(s.url(&format!("{CONNECTIONS}{id}/token/"))).bearer_auth(&tool).send();
    api_error(read().await.unwrap(), 403, "forbidden").await;

    let r = s.patch_m2m_client(&tool_id, &user, json!({"is_service": true})).await;
    assert_eq!(json_with_status(r, 200).await["is_service"], true);
    let token = json_with_status(read().await.unwrap(), 200).await;
    assert_eq!(token["access_token"], own["access_token"]);
    s.app.audit.flush().await;
    let events = s
        .app
        .store
        .audit_events(&AuditQuery {
            action: Some("connection.token_read_by_service".into()),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, format!("client:{tool_id}"));
    assert_eq!(events[0].detail["for_user"], s.user_named("admin").await.id);
}

on_both_backends!(
    a_providers_absurd_answers_are_bounded,
    service_identities_read_connection_tokens,
    a_refresh_without_a_new_refresh_token_keeps_the_old_one,
    needs_reauth_posts_a_signed_webhook,
    the_background_refresher_renews_before_expiry,
    transient_provider_failures_are_retried,
    an_expired_token_is_refreshed_once_for_a_hundred_callers,
    the_proxy_injects_the_token_and_stays_below_the_base,
    the_proxy_follows_no_redirect_and_forwards_no_credentials,
    authorization_code_with_keyward_as_the_provider,
    a_token_on_demand_and_held_until_it_expires,
    a_short_lifetime_is_renewed_before_it_ends,
    a_hundred_callers_on_two_nodes_cause_one_fetch,
    a_refusal_marks_the_connection_for_reauthorization,
    an_unreachable_provider_is_a_502_and_no_hang,
    connections_are_their_owners,
    authorization_code_connections_wait_for_authorization,
);

//! Dynamic client registration (RFC 7591) and its management (RFC 7592):
//! the policy setting, the redirect-URI policy, abuse limits, and the code
//! flow of a client that registered itself.

use crate::delegated_oauth::{Browser, authorize_url, hidden, location, param};
use crate::harness::{Backend, TestServer, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::{Actor, Role};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    open_registration_then_the_code_flow,
    confidential_when_asked,
    policy_off_and_initial_access_tokens,
    redirect_policy_and_bad_input,
    unapproved_clients_are_capped_and_expire,
    one_network_cannot_fill_the_cap,
    quotas_and_concurrent_registrations,
    grace_window_up_to_the_access_lifetime,
    offline_access_always_for_admin_clients,
    metadata_document_urls_are_checked,
    self_registered_clients_get_no_redirect_before_consent_and_keep_to_their_registration,
);

const DCR: &str = "/oauth/v2/register/";
const LOOPBACK: &str = "http://127.0.0.1:33418/callback";

impl TestServer {
    async fn register_dynamic(&self, body: &Value) -> reqwest::Response {
        self.http.post(self.url(DCR)).json(body).send().await.unwrap()
    }

    async fn as_metadata(&self) -> Value {
        let r = self.http.get(self.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
        json_with_status(r, 200).await
    }
}

/// What VS Code sends: several redirect URIs, a grant it will not get and
/// members keyward does not know.
fn vscode_like() -> Value {
    json!({
        "client_name": "Visual Studio Code",
        "redirect_uris": ["https://vscode.dev/redirect", LOOPBACK],
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "software_statement_ignored": {"nested": true},
        "resource": "https://mcp.example/"
    })
}

async fn code_exchange(s: &TestServer, form: &[(&str, &str)]) -> reqwest::Response {
    s.http.post(s.url("/oauth/v2/token/")).form(form).send().await.unwrap()
}

async fn open_registration_then_the_code_flow(backend: Backend) {
    let s = TestServer::start(backend).await;
    let meta = s.as_metadata().await;
    assert_eq!(meta["registration_endpoint"], s.url(DCR));

    let r = s.register_dynamic(&vscode_like()).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created = json_with_status(r, 201).await;
    let id = created["client_id"].as_str().unwrap().to_string();
    assert_eq!(created["token_endpoint_auth_method"], "none");
    assert!(created.get("client_secret").is_none());
    assert_eq!(created["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert!(created.get("software_statement_ignored").is_none() && created.get("resource").is_none());
    let token = created["registration_access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kwra_"));
    let manage = created["registration_client_uri"].as_str().unwrap().to_string();
    assert_eq!(manage, s.url(&format!("{DCR}{id}/")));
    // The admin API marks it.
    let admin = s.admin_token().await;
    let listed =
        json_with_status(s.get(&format!("/oauth/v1/register/{id}/"), &admin).send().await.unwrap(), 200)
            .await;
    assert_eq!(listed["registration"], "dynamic");

    // The code flow: consent names the client as self-registered, and is
    // asked for every time.
    for round in 0..2 {
        // Registered for refresh tokens: offline access comes without asking.
        let scope = if round == 0 { "&scope=mcp%20offline_access" } else { "&scope=mcp" };
        let (url, verifier) = authorize_url(&s, &id, LOOPBACK, scope);
        let browser = Browser::new();
        let r = browser.sign_in(&s, &url, "admin", crate::harness::ADMIN_PASSWORD).await;
        assert_eq!(r.status(), 303);
        let page = browser.get(&s.url(&location(&r))).await;
        assert_eq!(page.status(), 200, "round {round}: consent is shown again");
        let html = page.text().await.unwrap();
        assert!(html.contains("registered itself") && html.contains("on this computer"), "{html}");
        assert!(html.contains("offline_access"), "{html}");
        let back = browser.consent(&s, &html, "approve").await;
        let code = param(&back, "code").unwrap();
        let tokens = json_with_status(
            code_exchange(
                &s,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", LOOPBACK),
                    ("client_id", &id),
                    ("code_verifier", &verifier),
                ],
            )
            .await,
            200,
        )
        .await;
        assert!(tokens["refresh_token"].as_str().unwrap().starts_with("kwor_"));
    }

    // RFC 7592: read with the token; nothing without it or with another's.
    let read = json_with_status(s.http.get(&manage).bearer_auth(&token).send().await.unwrap(), 200).await;
    assert_eq!(read["client_id"], id.as_str());
    assert!(read.get("registration_access_token").is_none());
    let r = s.http.get(&manage).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    oauth_error(r, 401, "invalid_token").await;
    let other = json_with_status(s.register_dynamic(&vscode_like()).await, 201).await;
    let other_token = other["registration_access_token"].as_str().unwrap();
    oauth_error(s.http.get(&manage).bearer_auth(other_token).send().await.unwrap(), 401, "invalid_token")
        .await;
    // An admin-registered client is not reachable here at all.
    let (admin_client, _) = s.register_client(crate::delegated_oauth::public(LOOPBACK)).await;
    oauth_error(
        s.http.get(s.url(&format!("{DCR}{admin_client}/"))).bearer_auth(&token).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;

    // Update: new redirect URIs; the client's type cannot change.
    let mut changed = vscode_like();
    changed["redirect_uris"] = json!(["http://localhost/cb"]);
    changed["client_id"] = json!(id);
    let updated =
        json_with_status(s.http.put(&manage).bearer_auth(&token).json(&changed).send().await.unwrap(), 200)
            .await;
    assert_eq!(updated["redirect_uris"], json!(["http://localhost/cb"]));
    changed["token_endpoint_auth_method"] = json!("client_secret_basic");
    oauth_error(
        s.http.put(&manage).bearer_auth(&token).json(&changed).send().await.unwrap(),
        400,
        "invalid_client_metadata",
    )
    .await;
    changed["token_endpoint_auth_method"] = json!("none");
    changed["client_id"] = json!(other["client_id"]);
    oauth_error(
        s.http.put(&manage).bearer_auth(&token).json(&changed).send().await.unwrap(),
        400,
        "invalid_client_metadata",
    )
    .await;

    // Delete: gone, and its tokens with it.
    let r = s.http.delete(&manage).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    oauth_error(s.http.get(&manage).bearer_auth(&token).send().await.unwrap(), 401, "invalid_token").await;
    let (url, _) = authorize_url(&s, &id, "http://localhost/cb", "");
    let page = Browser::new().get(&url).await;
    assert_eq!(page.status(), 400);
}

async fn confidential_when_asked(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Claude asks for client_secret_post from its hosted callback.
    let body = json!({
        "client_name": "Claude",
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token"]
    });
    let created = json_with_status(s.register_dynamic(&body).await, 201).await;
    let id = created["client_id"].as_str().unwrap();
    let secret = created["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("kwcs_"));
    assert_eq!(created["client_secret_expires_at"], 0);
    // A code of another client cannot be had; the secret authenticates.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "kwac_nope"),
        ("client_id", id),
        ("client_secret", "kwcs_wrong"),
    ];
    oauth_error(code_exchange(&s, &form).await, 401, "invalid_client").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "kwac_nope"),
        ("client_id", id),
        ("client_secret", secret),
    ];
    oauth_error(code_exchange(&s, &form).await, 400, "invalid_grant").await;
    // The secret is stored only as a hash.
    let dump = crate::harness::database_dump(&s);
    assert!(!dump.contains(secret) && !dump.contains(created["registration_access_token"].as_str().unwrap()));
}

async fn policy_off_and_initial_access_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.set("keyward.oauth.dynamic_registration", "off").await;
    let meta = s.as_metadata().await;
    assert!(meta.get("registration_endpoint").is_none(), "not advertised while off");
    oauth_error(s.register_dynamic(&vscode_like()).await, 403, "access_denied").await;

    s.set("keyward.oauth.dynamic_registration", "initial_access_token").await;
    oauth_error(s.register_dynamic(&vscode_like()).await, 401, "invalid_token").await;
    let bad = s.http.post(s.url(DCR)).bearer_auth("kwia_madeup").json(&vscode_like()).send().await.unwrap();
    oauth_error(bad, 401, "invalid_token").await;
    // Only a server admin issues them.
    const TOKENS: &str = "/admin/api/initial_access_tokens/";
    for role in [Role::Viewer, Role::CatalogAdmin] {
        let t = s.token_for_role(role).await;
        let r = s.send(Method::POST, TOKENS, &t).json(&json!({"name": "x"})).send().await.unwrap();
        assert_eq!(r.status(), 403, "{role:?}");
    }
    let r = s.http.post(s.url(TOKENS)).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let admin = s.admin_token().await;
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "uses": 0}),
        json!({"name": "x", "expires_in": 10}),
        json!({"name": "x", "extra": 1}),
    ] {
        let r = s.send(Method::POST, TOKENS, &admin).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let issued = json_with_status(
        s.send(Method::POST, TOKENS, &admin)
            .json(&json!({"name": "partner", "uses": 1}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let iat = issued["initial_access_token"].as_str().unwrap();
    assert!(iat.starts_with("kwia_"));
    let ok = s.http.post(s.url(DCR)).bearer_auth(iat).json(&vscode_like()).send().await.unwrap();
    json_with_status(ok, 201).await;
    // Used up.
    let again = s.http.post(s.url(DCR)).bearer_auth(iat).json(&vscode_like()).send().await.unwrap();
    oauth_error(again, 401, "invalid_token").await;
    assert!(!crate::harness::database_dump(&s).contains(iat));
    // Bad metadata does not spend a use.
    let issued = json_with_status(
        s.send(Method::POST, TOKENS, &admin)
            .json(&json!({"name": "careful", "uses": 1}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let iat2 = issued["initial_access_token"].as_str().unwrap();
    let bad = json!({"redirect_uris": ["https://evil.example/cb"]});
    let r = s.http.post(s.url(DCR)).bearer_auth(iat2).json(&bad).send().await.unwrap();
    oauth_error(r, 400, "invalid_redirect_uri").await;
    let r = s.http.post(s.url(DCR)).bearer_auth(iat2).json(&vscode_like()).send().await.unwrap();
    let managed = json_with_status(r, 201).await;
    // Switched off: self-registered clients cannot change themselves either.
    s.set("keyward.oauth.dynamic_registration", "off").await;
    let r = s
        .http
        .get(managed["registration_client_uri"].as_str().unwrap())
        .bearer_auth(managed["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    oauth_error(r, 403, "access_denied").await;
}

async fn redirect_policy_and_bad_input(backend: Backend) {
    let s = TestServer::start(backend).await;
    let with = |uri: &str| json!({"redirect_uris": [uri], "token_endpoint_auth_method": "none"});
    for bad in [
        "https://evil.example/cb",
        "javascript:alert(1)",
        "http://localhost.evil.test/cb",
        "https://claude.ai/cb#x",
        "microsoft-edge:https://evil.example/cb",
        "search-ms:query=x",
    ] {
        oauth_error(s.register_dynamic(&with(bad)).await, 400, "invalid_redirect_uri").await;
    }
    // An admin trusts the host: then it registers.
    s.set("keyward.oauth.dynamic_registration.trusted_redirect_hosts", "app.partner.example claude.ai").await;
    json_with_status(s.register_dynamic(&with("https://app.partner.example/cb")).await, 201).await;
    json_with_status(s.register_dynamic(&with("com.example.app:/oauth2redirect")).await, 201).await;

    // Not JSON, not an object, wrong types: invalid_client_metadata.
    let r = s
        .http
        .post(s.url(DCR))
        .body("redirect_uris=x")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_client_metadata").await;
    for body in [
        "[]",
        "{\"redirect_uris\": \"http://localhost/\"}",
        "{\"client_name\": 5, \"redirect_uris\": []}",
        "{",
    ] {
        let r = s
            .http
            .post(s.url(DCR))
            .body(body)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    // A key twice and a NUL are refused at the edge; oversized is 413.
    let r = s
        .http
        .post(s.url(DCR))
        .body(r#"{"redirect_uris":["http://localhost/"],"redirect_uris":["https://evil.example/"]}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r =
        s.register_dynamic(&json!({"redirect_uris": ["http://localhost/"], "client_name": "a\u{0}b"})).await;
    assert_eq!(r.status(), 400);
    let huge = json!({"redirect_uris": ["http://localhost/"], "client_name": "x".repeat(100_000)});
    assert_eq!(s.register_dynamic(&huge).await.status(), 413);
    // Nothing of that was registered.
    let admin = s.admin_token().await;
    let all = json_with_status(s.get("/oauth/v1/register/", &admin).send().await.unwrap(), 200).await;
    assert_eq!(all.as_array().unwrap().len(), 2);

    // Browser clients: the preflight is answered.
    let r = s
        .http
        .request(Method::OPTIONS, s.url(DCR))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

async fn unapproved_clients_are_capped_and_expire(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.set("keyward.oauth.dynamic_registration.max_unapproved_clients", "3").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let c = json_with_status(s.register_dynamic(&vscode_like()).await, 201).await;
        ids.push(c["client_id"].as_str().unwrap().to_string());
    }
    let r = s.register_dynamic(&vscode_like()).await;
    assert_eq!(r.headers()["retry-after"], "3600");
    oauth_error(r, 429, "temporarily_unavailable").await;

    // Many at once cannot pass the cap either.
    s.set("keyward.oauth.dynamic_registration.max_unapproved_clients", "8").await;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..30 {
        all.spawn(s.http.post(s.url(DCR)).json(&vscode_like()).send());
    }
    let mut created = 0;
    while let Some(r) = all.join_next().await {
        if r.unwrap().unwrap().status() == 201 {
            created += 1;
        }
    }
    assert_eq!(created, 5, "the cap of 8 with 3 waiting leaves room for 5");
    // A user approves one: it no longer counts, and it stays.
    let (url, _) = authorize_url(&s, &ids[0], LOOPBACK, "&scope=mcp");
    let back = Browser::new().authorize(&s, &url).await;
    assert!(param(&back, "code").is_some());
    json_with_status(s.register_dynamic(&vscode_like()).await, 201).await;

    // A day later the unapproved ones are gone.
    let later = keyward::domain::to_micros(keyward::domain::now()) + 1;
    assert_eq!(s.app.store.purge_unapproved_dynamic_clients(later).await.unwrap(), 8);
    assert!(s.app.store.oauth_client(&ids[0]).await.unwrap().is_some());
    assert!(s.app.store.oauth_client(&ids[1]).await.unwrap().is_none());
}

/// An anonymous caller used to fill the cap of unapproved clients in three
/// seconds, and registration was closed to everyone for a day (an outside
/// probe). Each network now has an hourly share; others keep theirs.
async fn one_network_cannot_fill_the_cap(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.set("keyward.oauth.dynamic_registration.per_network_hourly", "5").await;
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..12 {
        all.spawn(s.http.post(s.url(DCR)).json(&vscode_like()).send());
    }
    let (mut created, mut waiting) = (0, 0);
    while let Some(r) = all.join_next().await {
        let r = r.unwrap().unwrap();
        if r.status() == 201 {
            created += 1;
        } else {
            let wait = r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap();
            assert!((1..=3600).contains(&wait), "until the clock hour ends: {wait}");
            let d = oauth_error(r, 429, "temporarily_unavailable").await;
            assert!(d.contains("from this network"), "{d}");
            waiting += 1;
        }
    }
    assert_eq!((created, waiting), (5, 7), "five of twelve at once");
    // Another network is not affected.
    let elsewhere = reqwest::Client::builder().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let r = elsewhere.post(s.url(DCR)).json(&vscode_like()).send().await.unwrap();
    json_with_status(r, 201).await;
    // Registrations with an initial access token are an admin's to count.
    s.set("keyward.oauth.dynamic_registration", "initial_access_token").await;
    let admin = s.admin_token().await;
    let r = s
        .send(Method::POST, "/admin/api/initial_access_tokens/", &admin)
        .json(&json!({"name": "rollout", "uses": 3}))
        .send()
        .await
        .unwrap();
    let iat = json_with_status(r, 201).await["initial_access_token"].as_str().unwrap().to_string();
    let r = s.http.post(s.url(DCR)).bearer_auth(&iat).json(&vscode_like()).send().await.unwrap();
    json_with_status(r, 201).await;
    // 0 turns the share off.
    s.set("keyward.oauth.dynamic_registration", "open").await;
    s.set("keyward.oauth.dynamic_registration.per_network_hourly", "0").await;
    json_with_status(s.register_dynamic(&vscode_like()).await, 201).await;
}

async fn quotas_and_concurrent_registrations(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Hosted clients register from shared egress, several at once.
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..30 {
        all.spawn(s.http.post(s.url(DCR)).json(&vscode_like()).send());
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(r) = all.join_next().await {
        let c = json_with_status(r.unwrap().unwrap(), 201).await;
        ids.insert(c["client_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 30);

    // One client may hold only so many unexpired codes.
    s.set("keyward.oauth.dynamic_registration.codes_per_client", "1").await;
    let id = ids.iter().next().unwrap().clone();
    let browser = Browser::new();
    let (url, _) = authorize_url(&s, &id, LOOPBACK, "&scope=mcp");
    let back = browser.authorize(&s, &url).await;
    assert!(param(&back, "code").is_some());
    let page = browser.get(&url).await;
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", hidden(&html, "csrf")),
        ("request", hidden(&html, "request")),
        ("decision", "approve".into()),
    ];
    let r = browser.client().post(s.url("/oauth/v1/authorize/")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("too many authorizations"));
}

async fn grace_window_up_to_the_access_lifetime(backend: Backend) {
    let s = TestServer::start(backend).await;
    // Multi-process agents keep stale generations: an hour is allowed.
    s.set("keyward.oauth.refresh_token_reuse_grace", "3600").await;
    assert!(
        s.app.set_setting(Actor::Cli, "keyward.oauth.refresh_token_reuse_grace", "259201").await.is_err()
    );
    let created = json_with_status(s.register_dynamic(&vscode_like()).await, 201).await;
    let id = created["client_id"].as_str().unwrap();
    let (url, verifier) = authorize_url(&s, id, LOOPBACK, "&scope=mcp%20offline_access");
    let back = Browser::new().authorize(&s, &url).await;
    let code = param(&back, "code").unwrap();
    let first = json_with_status(
        code_exchange(
            &s,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", LOOPBACK),
                ("client_id", id),
                ("code_verifier", &verifier),
            ],
        )
        .await,
        200,
    )
    .await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", id)];
    let a = json_with_status(code_exchange(&s, &refresh).await, 200).await;
    // A stale generation used again within the window: the same pair.
    let b = json_with_status(code_exchange(&s, &refresh).await, 200).await;
    assert_eq!(a["refresh_token"], b["refresh_token"]);
}

async fn offline_access_always_for_admin_clients(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let mut body = crate::delegated_oauth::public(LOOPBACK);
    body["offline_access"] = json!("sometimes");
    let r = s.send(Method::POST, "/oauth/v1/register/", &admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    body["offline_access"] = json!("always");
    let (id, _) = s.register_client(body).await;
    // The app asks for `mcp` only; the consent page shows what it gets.
    let (url, verifier) = authorize_url(&s, &id, LOOPBACK, "&scope=mcp");
    let browser = Browser::new();
    let r = browser.sign_in(&s, &url, "admin", crate::harness::ADMIN_PASSWORD).await;
    let html = browser.get(&s.url(&location(&r))).await.text().await.unwrap();
    assert!(html.contains("offline_access"), "{html}");
    let back = browser.consent(&s, &html, "approve").await;
    let code = param(&back, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", LOOPBACK),
        ("client_id", id.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let tokens = json_with_status(code_exchange(&s, &form).await, 200).await;
    assert_eq!(tokens["scope"], "mcp offline_access");
    assert!(tokens["refresh_token"].is_string());
}

async fn metadata_document_urls_are_checked(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(s.as_metadata().await["client_id_metadata_document_supported"], true);
    let page = |client_id: String| {
        let (url, _) = authorize_url(
            &s,
            &url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect::<String>(),
            LOOPBACK,
            "",
        );
        async move {
            let r = Browser::new().get(&url).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // A loopback document is refused by default (no fetch to private addresses).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let local = format!("https://127.0.0.1:{port}/client.json");
    let (status, html) = page(local.clone()).await;
    assert_eq!(status, 400);
    assert!(html.contains("does not call this address"), "{html}");
    // Allowed for development: a server that does not speak TLS is an error, not a 500.
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        }
    });
    s.set("keyward.oauth.client_metadata.allow_private_addresses", "true").await;
    let (status, html) = page(local.clone()).await;
    assert_eq!(status, 400);
    assert!(html.contains("could not be fetched"), "{html}");
    // Not a document URL: http, no path, a fragment.
    for bad in ["http://client.example/m.json", "https://client.example/", "https://client.example/m.json#x"]
    {
        let (status, _) = page(bad.to_string()).await;
        assert_eq!(status, 400, "{bad}");
    }
    // Denied hosts, and switched off.
    s.set("keyward.oauth.client_metadata.denied_hosts", "127.0.0.1").await;
    assert!(page(local.clone()).await.1.contains("not accepted"));
    s.set("keyward.oauth.client_metadata.denied_hosts", "").await;
    s.set("keyward.oauth.client_metadata.allowed_hosts", "clients.example").await;
    assert!(page(local.clone()).await.1.contains("not accepted"));
    s.set("keyward.oauth.client_metadata.enabled", "false").await;
    assert!(page(local.clone()).await.1.contains("not accepted here"));
    assert!(s.as_metadata().await.get("client_id_metadata_document_supported").is_none());
    // At the token endpoint: invalid_client, never a 500.
    let form = [("grant_type", "authorization_code"), ("code", "kwac_x"), ("client_id", local.as_str())];
    oauth_error(code_exchange(&s, &form).await, 401, "invalid_client").await;
}

async fn self_registered_clients_get_no_redirect_before_consent_and_keep_to_their_registration(
    backend: Backend,
) {
    let s = TestServer::start(backend).await;
    let mut body = vscode_like();
    body["scope"] = json!("mcp");
    body["grant_types"] = json!(["authorization_code"]);
    let created = json_with_status(s.register_dynamic(&body).await, 201).await;
    let id = created["client_id"].as_str().unwrap();
    // An error before anyone approved it: a page, not a redirect.
    let (url, _) = authorize_url(&s, id, LOOPBACK, "&scope=mcp");
    let r = Browser::new().get(&url.replace("response_type=code", "response_type=token")).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // Outside its registered scope, or a refresh token it did not register for.
    for scope in ["api", "mcp%20offline_access"] {
        let (url, _) = authorize_url(&s, id, LOOPBACK, &format!("&scope={scope}"));
        let r = Browser::new().get(&url).await;
        assert_eq!(r.status(), 400, "{scope}");
        assert!(r.text().await.unwrap().contains("outside what this client registered for"));
    }
    let (url, _) = authorize_url(&s, id, LOOPBACK, "&scope=mcp");
    let back = Browser::new().authorize(&s, &url).await;
    assert!(param(&back, "code").is_some());
}

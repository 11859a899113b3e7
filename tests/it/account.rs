//! `/account/auth`: a signed-in user's refresh tokens and API access tokens
//! in the browser (SPEC §1.3), with the same rules as `/integration/v1`.

use crate::delegated_oauth::{Browser, hidden, location};
use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, json_with_status};
use crate::on_both_backends;
use keyward::domain::Role;
use serde_json::json;

on_both_backends!(
    tokens_from_the_account_page,
    the_account_page_refuses_what_it_should,
    consents_and_connections_on_the_account_page,
);

impl Browser {
    /// Signs in through the account page; its HTML.
    async fn account(&self, s: &TestServer, username: &str, password: &str) -> String {
        let r = self.sign_in(s, &s.url("/account/auth"), username, password).await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), "/account/auth");
        let page = self.get(&s.url("/account/auth")).await;
        assert_eq!(page.status(), 200);
        page.text().await.unwrap()
    }

    async fn act(&self, s: &TestServer, form: &[(&str, &str)]) -> reqwest::Response {
        self.client().post(s.url("/account/auth")).form(form).send().await.unwrap()
    }
}

fn shown(html: &str) -> String {
    let marker = "id=\"new-secret\" type=\"text\" readonly value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("no secret shown: {html}")) + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

async fn tokens_from_the_account_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    // `/` signs a browser in, then sends it on by role (tests/it/console.rs).
    let r = Browser::new().get(&s.url("/")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Sign in"));
    let browser = Browser::new();
    let html = browser.account(&s, "admin", ADMIN_PASSWORD).await;
    assert!(html.contains("no refresh tokens yet"), "{html}");
    let csrf = hidden(&html, "csrf");
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "create_refresh_token"), ("name", "laptop")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let refresh = shown(&html);
    assert!(refresh.starts_with("kwrt_"));
    assert!(html.contains("laptop") && html.contains("ACTIVE"), "{html}");
    // The reference's API takes it as any refresh token.
    let user_id = s.user_named("admin").await.id.to_string();
    let r = s
        .http
        .post(s.url("/integration/v1/createAPIAccessToken/"))
        .form(&[("refresh_token", refresh.as_str()), ("user_id", user_id.as_str())])
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    // An API access token from the page, which authenticates.
    let id = hidden(&html, "id");
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "create_api_access_token"), ("id", &id)]).await;
    let access = shown(&r.text().await.unwrap());
    assert!(access.starts_with("kwat_"));
    let r = s.http.get(s.url("/admin/api/users/")).header("TOKEN", &access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Revoked: the refresh token and its access tokens stop.
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "revoke_refresh_token"), ("id", &id)]).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("REVOKED") && !html.contains("new-secret"), "{html}");
    let r = s.http.get(s.url("/admin/api/users/")).header("TOKEN", &access).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Signing out ends the session.
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "sign_out")]).await;
    assert_eq!(r.status(), 303);
    let page = browser.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(page.contains("Sign in"), "{page}");
}

async fn the_account_page_refuses_what_it_should(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let r = s
        .send(reqwest::Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": "vera", "password": "password-vera-1", "role": Role::Viewer}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let admins = Browser::new();
    let html = admins.account(&s, "admin", ADMIN_PASSWORD).await;
    let admin_csrf = hidden(&html, "csrf");
    let r =
        admins.act(&s, &[("csrf", &admin_csrf), ("action", "create_refresh_token"), ("name", "mine")]).await;
    let admin_token_id = hidden(&r.text().await.unwrap(), "id");

    // A viewer signs in too: the page is every user's.
    let vera = Browser::new();
    let html = vera.account(&s, "vera", "password-vera-1").await;
    let csrf = hidden(&html, "csrf");
    // Someone else's token id, a made-up one, none: refused, nothing made.
    for id in [admin_token_id.as_str(), "999999", "abc", ""] {
        let r = vera.act(&s, &[("csrf", &csrf), ("action", "create_api_access_token"), ("id", id)]).await;
        assert_eq!(r.status(), 400, "{id}");
        assert!(!r.text().await.unwrap().contains("new-secret"));
        let r = vera.act(&s, &[("csrf", &csrf), ("action", "revoke_refresh_token"), ("id", id)]).await;
        assert_eq!(r.status(), 400, "{id}");
    }
    // The admin's token is untouched.
    let html = admins.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(html.contains("ACTIVE"), "{html}");
    // Without the form's token, with another user's, without a session.
    for bad in ["", "forged", admin_csrf.as_str()] {
        let r = vera.act(&s, &[("csrf", bad), ("action", "create_refresh_token"), ("name", "x")]).await;
        assert_eq!(r.status(), 403, "{bad}");
    }
    let r =
        Browser::new().act(&s, &[("csrf", &csrf), ("action", "create_refresh_token"), ("name", "x")]).await;
    assert!(r.text().await.unwrap().contains("Sign in"));
    // Bad names, an unknown action, a field twice, a NUL.
    for name in ["", "x".repeat(300).as_str()] {
        let r = vera.act(&s, &[("csrf", &csrf), ("action", "create_refresh_token"), ("name", name)]).await;
        assert_eq!(r.status(), 400);
    }
    assert_eq!(vera.act(&s, &[("csrf", &csrf), ("action", "explode")]).await.status(), 400);
    let huge = "x".repeat(100 * 64 * 1024);
    let form = [("csrf", csrf.as_str()), ("action", "create_refresh_token"), ("name", huge.as_str())];
    crate::harness::refused_as_too_large(vera.client().post(s.url("/account/auth")).form(&form).send().await);
    let r = vera
        .act(&s, &[("csrf", &csrf), ("action", "create_refresh_token"), ("name", "a"), ("name", "b")])
        .await;
    assert_eq!(r.status(), 400);
    let r = vera.act(&s, &[("csrf", &csrf), ("action", "create_refresh_token"), ("name", "a\u{0}b")]).await;
    assert_eq!(r.status(), 400);
    // Vera made nothing in all that.
    let html = vera.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(html.contains("no refresh tokens yet"), "{html}");
    // 50 at once (one browser, one session): each makes one token, nothing breaks.
    let mut all = tokio::task::JoinSet::new();
    for i in 0..50 {
        let form = vec![
            ("csrf".to_string(), csrf.clone()),
            ("action".to_string(), "create_refresh_token".to_string()),
            ("name".to_string(), format!("burst-{i}")),
        ];
        all.spawn(vera.client().post(s.url("/account/auth")).form(&form).send());
    }
    while let Some(r) = all.join_next().await {
        assert_eq!(r.unwrap().unwrap().status(), 200);
    }
    let vera_id = s.user_named("vera").await.id;
    assert_eq!(s.app.refresh_tokens_of(vera_id).await.unwrap().len(), 50);
    // Pages cannot be framed, and run only keyward's own script.
    let r = vera.get(&s.url("/account/auth")).await;
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
}

async fn consents_and_connections_on_the_account_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    // An app the admin allowed, and a connection of the admin's.
    let (client_id, _) = s.register_client(crate::delegated_oauth::public("http://127.0.0.1/cb")).await;
    let (url, _) = crate::delegated_oauth::authorize_url(&s, &client_id, "http://127.0.0.1/cb", "&scope=mcp");
    let browser = Browser::new();
    browser.authorize(&s, &url).await;
    let body = json!({"name": "End system", "grant_type": "authorization_code", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://account.endsystem.com/authorize", "token_url": "https://api.endsystem.com/token",
        "api_base_url": "https://api.endsystem.com/v1/"});
    let outbound = json_with_status(
        s.send(reqwest::Method::POST, "/admin/api/outbound_clients/", &admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let connection = json_with_status(
        s.send(reqwest::Method::POST, "/api/v2/connections/", &admin)
            .json(&json!({"outbound_client_id": outbound["id"], "name": "my end system"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap();
    let html = browser.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(
        html.contains(&client_id) && html.contains("my end system") && html.contains("pending"),
        "{html}"
    );
    let csrf = hidden(&html, "csrf");
    // Authorizing gives a link through keyward (followed by the person).
    let r =
        browser.act(&s, &[("csrf", &csrf), ("action", "authorize_connection"), ("id", connection_id)]).await;
    let html = r.text().await.unwrap();
    assert!(html.contains(&s.url("/oauth/v1/connections/start/?state=")), "{html}");
    // Someone else cannot touch them.
    let r = s
        .send(reqwest::Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": "olga", "password": "password-olga-1", "role": Role::ServerAdmin}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let olga = Browser::new();
    let olga_csrf = hidden(&olga.account(&s, "olga", "password-olga-1").await, "csrf");
    for action in ["authorize_connection", "revoke_connection"] {
        let r = olga.act(&s, &[("csrf", &olga_csrf), ("action", action), ("id", connection_id)]).await;
        assert_eq!(r.status(), 400, "{action}");
    }
    let r = olga
        .act(&s, &[("csrf", &olga_csrf), ("action", "withdraw_consent"), ("client_id", &client_id)])
        .await;
    assert!(r.text().await.unwrap().contains("nothing to withdraw"));
    let html = browser.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(html.contains(&client_id), "the owner's consent stays: {html}");
    // Warehouse credentials: stored, listed without the password, only the
    // owner's deleted.
    let dp = json!({"dp_id": "sales", "name": "Sales", "warehouse": {"kind": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "sales"}});
    let r =
        s.send(reqwest::Method::POST, "/admin/api/data_products/", &admin).json(&dp).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = browser
        .act(
            &s,
            &[
                ("csrf", &csrf),
                ("action", "store_credentials"),
                ("dp_id", "sales"),
                ("state", "default"),
                ("username", "analyst"),
                ("password", "warehouse-secret-1"),
            ],
        )
        .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("analyst") && !html.contains("warehouse-secret-1"), "{html}");
    let r = olga.act(&s, &[("csrf", &olga_csrf), ("action", "delete_credentials"), ("dp_id", "sales")]).await;
    assert_eq!(r.status(), 400);
    let r = browser
        .act(
            &s,
            &[
                ("csrf", &csrf),
                ("action", "store_credentials"),
                ("dp_id", "nope"),
                ("state", "x"),
                ("username", "a"),
                ("password", "b"),
            ],
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "delete_credentials"), ("dp_id", "sales")]).await;
    assert!(!r.text().await.unwrap().contains("analyst"));
    // The owner revokes the connection and withdraws the consent.
    let r = browser.act(&s, &[("csrf", &csrf), ("action", "revoke_connection"), ("id", connection_id)]).await;
    assert!(r.text().await.unwrap().contains("revoked"));
    let r =
        browser.act(&s, &[("csrf", &csrf), ("action", "withdraw_consent"), ("client_id", &client_id)]).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("No app acts for you"), "{html}");
}

//! The admin console (`/admin/`): role gates on every page and form, CSRF
//! on every form, someone else's and unknown objects, malformed and
//! oversized input, concurrency, and the pages' security headers. The
//! browser's view is in tests/interop/test_console.py.

use crate::delegated_oauth::{Browser, hidden, location};
use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, json_with_status, refused_as_too_large};
use crate::on_both_backends;
use keyward::domain::Role;
use serde_json::json;

on_both_backends!(
    every_page_and_form_is_gated_by_role_and_csrf,
    an_m2m_app_from_the_console_gets_tokens,
    the_console_refuses_bad_input_and_changes_nothing,
    concurrent_console_forms,
    home_sends_each_role_where_it_belongs,
    a_connectors_authorize_button_leads_to_the_provider,
    of_concurrent_password_changes_one_holds,
);

const PAGES: &[(&str, Role)] = &[
    ("", Role::CatalogAdmin),
    ("users/", Role::ServerAdmin),
    ("oauth_clients/", Role::ServerAdmin),
    ("sso/", Role::ServerAdmin),
    ("connectors/", Role::CatalogAdmin),
    ("data_products/", Role::ServerAdmin),
    ("settings/", Role::ServerAdmin),
    ("keys/", Role::ServerAdmin),
    ("audit/", Role::ServerAdmin),
];

/// The actions each page's forms take, with fields that would succeed.
fn forms() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    vec![
        ("users/", vec![("action", "create"), ("username", "made-by-form"), ("role", "viewer")]),
        (
            "oauth_clients/",
            vec![
                ("action", "m2m_create"),
                ("name", "made-by-form"),
                ("access_token_duration", "60"),
                ("role", "viewer"),
            ],
        ),
        (
            "connectors/",
            vec![
                ("action", "create"),
                ("name", "made-by-form"),
                ("grant_type", "client_credentials"),
                ("client_id", "c"),
                ("token_url", "https://provider.example/token"),
                ("token_endpoint_auth", "basic"),
                ("api_base_url", "https://provider.example/"),
            ],
        ),
        (
            "data_products/",
            vec![
                ("action", "create"),
                ("dp_id", "made-by-form"),
                ("name", "x"),
                ("host", "db"),
                ("port", "5432"),
                ("database", "d"),
            ],
        ),
        (
            "settings/",
            vec![("action", "set"), ("key", "alation.feature_flags.enable_swagger"), ("value", "true")],
        ),
        ("keys/", vec![("action", "rotate")]),
    ]
}

async fn user(s: &TestServer, name: &str, role: Role) {
    let admin = s.admin_token().await;
    let r = s
        .send(reqwest::Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": name, "password": format!("password-of-{name}"), "role": role}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
}

/// A browser signed in as `name`, and the console's CSRF token.
async fn console(s: &TestServer, name: &str, password: &str) -> (Browser, String) {
    let browser = Browser::new();
    let r = browser.sign_in(s, &s.url("/admin/connectors/"), name, password).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/admin/connectors/");
    let page = browser.get(&s.url("/admin/connectors/")).await;
    let html = page.text().await.unwrap();
    let csrf = if html.contains("name=\"csrf\"") { hidden(&html, "csrf") } else { String::new() };
    (browser, csrf)
}

async fn post(browser: &Browser, s: &TestServer, page: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser.client().post(s.url(&format!("/admin/{page}"))).form(form).send().await.unwrap()
}

/// How many audit records there are, once the sink has written what it holds.
async fn audit_count(s: &TestServer) -> usize {
    s.app.audit.flush().await;
    let q = keyward::store::AuditQuery { action: None, actor: None, before_id: None, limit: 10_000 };
    s.app.store.audit_events(&q).await.unwrap().len()
}

async fn every_page_and_form_is_gated_by_role_and_csrf(backend: Backend) {
    let s = TestServer::start(backend).await;
    user(&s, "vic", Role::Viewer).await;
    user(&s, "cat", Role::CatalogAdmin).await;
    // Not signed in: the sign-in page, continuing at the page asked for.
    for (page, _) in PAGES {
        let r = Browser::new().get(&s.url(&format!("/admin/{page}"))).await;
        assert_eq!(r.status(), 200, "{page}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Sign in"), "{page}");
        assert_eq!(hidden(&html, "return_to"), format!("/admin/{page}"));
    }
    let viewer = Browser::new();
    let r = viewer.sign_in(&s, &s.url("/account/auth"), "vic", "password-of-vic").await;
    assert_eq!(r.status(), 303);
    let viewer_csrf = hidden(&viewer.get(&s.url("/account/auth")).await.text().await.unwrap(), "csrf");
    let (catalog, catalog_csrf) = console(&s, "cat", "password-of-cat").await;
    let (admin, admin_csrf) = console(&s, "admin", ADMIN_PASSWORD).await;
    for (page, role) in PAGES {
        let url = s.url(&format!("/admin/{page}"));
        assert_eq!(viewer.get(&url).await.status(), 403, "viewer, {page}");
        let expected = if Role::CatalogAdmin.satisfies(*role) { 200 } else { 403 };
        assert_eq!(catalog.get(&url).await.status(), expected, "catalog admin, {page}");
        let r = admin.get(&url).await;
        assert_eq!(r.status(), 200, "admin, {page}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    }
    let before = audit_count(&s).await;
    for (page, form) in forms() {
        // A viewer, even with a token of its own session: refused.
        let mut with = form.clone();
        with.push(("csrf", &viewer_csrf));
        assert_eq!(post(&viewer, &s, page, &with).await.status(), 403, "viewer, {page}");
        // Without a token, with a forged one, with another user's.
        for bad in ["", "forged", catalog_csrf.as_str()] {
            let mut with = form.clone();
            with.push(("csrf", bad));
            assert_eq!(post(&admin, &s, page, &with).await.status(), 403, "csrf {bad:?}, {page}");
        }
        // Without a session at all.
        let mut with = form.clone();
        with.push(("csrf", &admin_csrf));
        let r =
            Browser::new().client().post(s.url(&format!("/admin/{page}"))).form(&with).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(r.text().await.unwrap().contains("Sign in"));
        if page != "connectors/" {
            let mut with = form.clone();
            with.push(("csrf", &catalog_csrf));
            assert_eq!(post(&catalog, &s, page, &with).await.status(), 403, "catalog admin, {page}");
        }
    }
    assert_eq!(audit_count(&s).await, before, "a refused form changed something");
    // The admin's own forms go through.
    for (page, form) in forms() {
        let mut with = form.clone();
        with.push(("csrf", &admin_csrf));
        let r = post(&admin, &s, page, &with).await;
        let status = r.status();
        let html = r.text().await.unwrap();
        assert_eq!(status, 200, "{page}: {html}");
        assert!(!html.contains("class=\"error\""), "{page}: {html}");
    }
    assert!(s.app.store.user_credentials("made-by-form").await.unwrap().is_some());
    // A form from another site: the page cannot be framed, and the cookie is SameSite.
    let r = admin.get(&s.url("/admin/users/")).await;
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("form-action 'self'"));
}

async fn an_m2m_app_from_the_console_gets_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (admin, csrf) = console(&s, "admin", ADMIN_PASSWORD).await;
    let r = post(
        &admin,
        &s,
        "oauth_clients/",
        &[
            ("csrf", &csrf),
            ("action", "m2m_create"),
            ("name", "etl"),
            ("access_token_duration", "15"),
            ("role", "steward"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let marker = "id=\"new-secret\" type=\"text\" readonly value=\"";
    let start = html.find(marker).expect("secret shown") + marker.len();
    let secret = &html[start..start + html[start..].find('"').unwrap()];
    let client_id =
        html[html.find("client id m2m_").unwrap() + "client id ".len()..].split('.').next().unwrap();
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .await;
    let token = json_with_status(r, 200).await;
    assert_eq!(token["expires_in"], 900);
    // Shown once: the page does not show it again, and the store keeps a hash.
    let again = admin.get(&s.url("/admin/oauth_clients/")).await.text().await.unwrap();
    assert!(!again.contains(secret) && again.contains(client_id));
    assert!(!crate::harness::database_dump(&s).contains(secret));
    // Rotated from the console: the new secret works too.
    let r = post(
        &admin,
        &s,
        "oauth_clients/",
        &[("csrf", &csrf), ("action", "m2m_rotate"), ("client_id", client_id)],
    )
    .await;
    let html = r.text().await.unwrap();
    let start = html.find(marker).expect("new secret shown") + marker.len();
    let rotated = &html[start..start + html[start..].find('"').unwrap()];
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", rotated),
        ])
        .await;
    json_with_status(r, 200).await;
    // Allowed to exchange users' tokens, then not.
    let r = post(
        &admin,
        &s,
        "oauth_clients/",
        &[("csrf", &csrf), ("action", "m2m_exchange_on"), ("client_id", client_id)],
    )
    .await;
    assert!(r.text().await.unwrap().contains("may now exchange"));
    assert!(s.app.m2m_client(client_id).await.unwrap().token_exchange);
    let page = admin.get(&s.url("/admin/oauth_clients/")).await.text().await.unwrap();
    assert!(page.contains("active, exchanges users&#39; tokens"), "{page}");
    post(
        &admin,
        &s,
        "oauth_clients/",
        &[("csrf", &csrf), ("action", "m2m_exchange_off"), ("client_id", client_id)],
    )
    .await;
    assert!(!s.app.m2m_client(client_id).await.unwrap().token_exchange);
    // Disabled: no more tokens.
    let r = post(
        &admin,
        &s,
        "oauth_clients/",
        &[("csrf", &csrf), ("action", "m2m_disable"), ("client_id", client_id)],
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", rotated),
        ])
        .await;
    assert_eq!(r.status(), 401);
}

async fn the_console_refuses_bad_input_and_changes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (admin, csrf) = console(&s, "admin", ADMIN_PASSWORD).await;
    let before = audit_count(&s).await;
    let long = "x".repeat(5000);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("users/", vec![("action", "nonsense")]),
        ("users/", vec![("action", "create"), ("username", "has space"), ("role", "viewer")]),
        ("users/", vec![("action", "create"), ("username", "ok"), ("role", "emperor")]),
        ("users/", vec![("action", "create"), ("username", "ok"), ("role", "viewer"), ("password", "short")]),
        ("users/", vec![("action", "set_role"), ("id", "99999"), ("role", "viewer")]),
        ("users/", vec![("action", "set_role"), ("id", "abc"), ("role", "viewer")]),
        ("users/", vec![("action", "delete"), ("id", "1")]),
        (
            "oauth_clients/",
            vec![("action", "m2m_create"), ("name", "x"), ("access_token_duration", "1"), ("role", "viewer")],
        ),
        (
            "oauth_clients/",
            vec![
                ("action", "m2m_create"),
                ("name", "x"),
                ("access_token_duration", "9999999999999999999"),
                ("role", "viewer"),
            ],
        ),
        (
            "oauth_clients/",
            vec![
                ("action", "m2m_create"),
                ("name", &long),
                ("access_token_duration", "60"),
                ("role", "viewer"),
            ],
        ),
        ("oauth_clients/", vec![("action", "m2m_delete"), ("client_id", "m2m_nope")]),
        ("oauth_clients/", vec![("action", "m2m_exchange_on"), ("client_id", "m2m_nope")]),
        (
            "oauth_clients/",
            vec![
                ("action", "app_register"),
                ("name", "x"),
                ("grant_type", "sideways"),
                ("access_token_lifetime", "1"),
                ("refresh_token_lifetime", "30"),
            ],
        ),
        (
            "oauth_clients/",
            vec![
                ("action", "app_register"),
                ("name", "x"),
                ("grant_type", "public"),
                ("redirect_uris", "javascript:alert(1)"),
                ("access_token_lifetime", "1"),
                ("refresh_token_lifetime", "30"),
            ],
        ),
        ("oauth_clients/", vec![("action", "app_rotate"), ("client_id", "oac_nope")]),
        (
            "sso/",
            vec![
                ("action", "create"),
                ("id", "Bad Id"),
                ("display_name", "x"),
                ("issuer", "https://x.example"),
                ("client_id", "c"),
            ],
        ),
        (
            "sso/",
            vec![
                ("action", "create"),
                ("id", "ok"),
                ("display_name", "x"),
                ("issuer", "https://x.example"),
                ("client_id", "c"),
                ("group_roles", "no equals sign"),
            ],
        ),
        ("sso/", vec![("action", "delete"), ("id", "nope")]),
        ("connectors/", vec![("action", "create"), ("name", "x"), ("grant_type", "teleport")]),
        ("connectors/", vec![("action", "authorize"), ("id", "obc_nope")]),
        (
            "data_products/",
            vec![
                ("action", "create"),
                ("dp_id", "a b"),
                ("name", "x"),
                ("host", "h"),
                ("port", "5432"),
                ("database", "d"),
            ],
        ),
        (
            "data_products/",
            vec![
                ("action", "create"),
                ("dp_id", "ok"),
                ("name", "x"),
                ("host", "h"),
                ("port", "70000"),
                ("database", "d"),
            ],
        ),
        ("settings/", vec![("action", "set"), ("key", "no.such.key"), ("value", "1")]),
        ("settings/", vec![("action", "set"), ("key", "keyward.sessions.idle_timeout"), ("value", "-5")]),
        ("keys/", vec![("action", "nonsense")]),
    ];
    for (page, form) in cases {
        let mut with = form.clone();
        with.push(("csrf", &csrf));
        let r = post(&admin, &s, page, &with).await;
        let status = r.status().as_u16();
        let html = r.text().await.unwrap();
        assert!(matches!(status, 400 | 403 | 404 | 409), "{page} {form:?}: {status}");
        assert!(html.contains("class=\"error\"") && html.contains(&csrf), "{page} {form:?}: {html}");
        assert!(!html.contains("<script>alert"), "{page}");
    }
    // Repeated fields, a body that is not a form, an oversized one.
    let r = raw_form(&admin, &s, "/admin/users/", format!("csrf={csrf}&action=create&action=delete"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = admin.client().post(s.url("/admin/users/")).json(&json!({"csrf": csrf})).send().await.unwrap();
    assert_eq!(r.status(), 415);
    // A NUL in a field.
    let r = raw_form(
        &admin,
        &s,
        "/admin/users/",
        format!("csrf={csrf}&action=create&username=a%00b&role=viewer"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // The password page: nobody signed in, a body far too large, a field twice.
    let r =
        Browser::new().client().post(s.url("/account/password")).form(&[("csrf", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    refused_as_too_large(
        raw_form(&admin, &s, "/account/password", format!("csrf={csrf}&new={}", "x".repeat(100 * 64 * 1024)))
            .await,
    );
    let r =
        raw_form(&admin, &s, "/account/password", "csrf=a&csrf=b&current=x&new=y&confirm=y").await.unwrap();
    assert_eq!(r.status(), 400);
    // Bytes that are not UTF-8 are refused, not replaced.
    let r = raw_form(
        &admin,
        &s,
        "/admin/users/",
        format!("csrf={csrf}&action=create&username=%ff%fe&role=viewer&password=password-123"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    // … in a page's query too.
    let r = admin.get(&s.url("/admin/audit/?actor=%ff")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("UTF-8"));
    refused_as_too_large(
        raw_form(
            &admin,
            &s,
            "/admin/users/",
            format!("csrf={csrf}&username={}", "x".repeat(100 * 64 * 1024)),
        )
        .await,
    );
    // Unknown pages, and a query with a NUL or far too long.
    assert_eq!(admin.get(&s.url("/admin/nope/")).await.status(), 404);
    assert_eq!(admin.get(&s.url("/admin/audit/?action=%00")).await.status(), 400);
    assert_eq!(admin.get(&s.url(&format!("/admin/audit/?action={}", "a".repeat(5000)))).await.status(), 400);
    assert_eq!(admin.get(&s.url("/admin/users/?page=-3")).await.status(), 200);
    assert_eq!(audit_count(&s).await, before, "refused input changed something");
    // Escaping: a name with markup is shown as text.
    let r = post(
        &admin,
        &s,
        "oauth_clients/",
        &[
            ("csrf", &csrf),
            ("action", "m2m_create"),
            ("name", "<img src=x onerror=alert(1)>"),
            ("access_token_duration", "60"),
            ("role", "viewer"),
        ],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(!html.contains("<img src=x") && html.contains("img src=x onerror=alert(1)"), "{html}");
}

async fn concurrent_console_forms(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (admin, csrf) = console(&s, "admin", ADMIN_PASSWORD).await;
    // Fifty M2M apps at once: fifty distinct clients, each with its own secret.
    let posts = (0..50).map(|i| {
        let name = format!("app-{i}");
        let csrf = csrf.clone();
        let admin = &admin;
        let s = &s;
        async move {
            post(
                admin,
                s,
                "oauth_clients/",
                &[
                    ("csrf", &csrf),
                    ("action", "m2m_create"),
                    ("name", &name),
                    ("access_token_duration", "60"),
                    ("role", "viewer"),
                ],
            )
            .await
            .status()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.app.store.list_m2m_clients().await.unwrap().len(), 50);
    // Fifty creations of one data product: one wins, the others are told.
    let posts = (0..50).map(|_| {
        let csrf = csrf.clone();
        let admin = &admin;
        let s = &s;
        async move {
            post(
                admin,
                s,
                "data_products/",
                &[
                    ("csrf", &csrf),
                    ("action", "create"),
                    ("dp_id", "same"),
                    ("name", "x"),
                    ("host", "h"),
                    ("port", "5432"),
                    ("database", "d"),
                ],
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(posts).await;
    assert!(statuses.iter().all(|s| matches!(s, 200 | 409)), "{statuses:?}");
    assert_eq!(s.app.data_products().await.unwrap().len(), 1);
}

async fn home_sends_each_role_where_it_belongs(backend: Backend) {
    let s = TestServer::start(backend).await;
    user(&s, "vic", Role::Viewer).await;
    user(&s, "cat", Role::CatalogAdmin).await;
    // Signed out: `/` is the sign-in page, continuing at `/`.
    let html = Browser::new().get(&s.url("/")).await.text().await.unwrap();
    assert_eq!(hidden(&html, "return_to"), "/");
    for (name, password, to) in [
        ("vic", "password-of-vic", "/account/auth"),
        ("cat", "password-of-cat", "/admin/"),
        ("admin", ADMIN_PASSWORD, "/admin/"),
    ] {
        let browser = Browser::new();
        let r = browser.sign_in(&s, &s.url("/"), name, password).await;
        assert_eq!(location(&r), "/", "{name}");
        let r = browser.get(&s.url("/")).await;
        assert_eq!(r.status(), 303);
        assert_eq!(location(&r), to, "{name}");
    }
    // The catalog admin's console shows only what it may use.
    let (catalog, _) = console(&s, "cat", "password-of-cat").await;
    let html = catalog.get(&s.url("/admin/")).await.text().await.unwrap();
    assert!(html.contains("Connectors") && !html.contains("Users and roles"), "{html}");
    // A password change with a wrong current password, mismatched new ones, a short one.
    let (browser, _) = console(&s, "vic", "password-of-vic").await;
    let page = browser.get(&s.url("/account/password")).await.text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    for (current, new, confirm) in [
        ("wrong-password", "new-password-1", "new-password-1"),
        ("password-of-vic", "new-password-1", "new-password-2"),
        ("password-of-vic", "short", "short"),
        ("password-of-vic", "password-of-vic", "password-of-vic"),
    ] {
        let r = browser
            .client()
            .post(s.url("/account/password"))
            .form(&[("csrf", csrf.as_str()), ("current", current), ("new", new), ("confirm", confirm)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{current} {new} {confirm}");
    }
    let r = browser
        .client()
        .post(s.url("/account/password"))
        .form(&[
            ("csrf", "forged"),
            ("current", "password-of-vic"),
            ("new", "new-password-1"),
            ("confirm", "new-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = browser
        .client()
        .post(s.url("/account/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current", "password-of-vic"),
            ("new", "new-password-1"),
            ("confirm", "new-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // The new password signs in; the old one no longer does.
    let r = Browser::new().sign_in(&s, &s.url("/"), "vic", "password-of-vic").await;
    assert_eq!(r.status(), 401);
    let r = Browser::new().sign_in(&s, &s.url("/"), "vic", "new-password-1").await;
    assert_eq!(r.status(), 303);
}

async fn a_connectors_authorize_button_leads_to_the_provider(backend: Backend) {
    let s = TestServer::start(backend).await;
    user(&s, "cat", Role::CatalogAdmin).await;
    let (catalog, csrf) = console(&s, "cat", "password-of-cat").await;
    let r = post(
        &catalog,
        &s,
        "connectors/",
        &[
            ("csrf", &csrf),
            ("action", "create"),
            ("name", "Salesforce"),
            ("grant_type", "authorization_code"),
            ("client_id", "c"),
            ("client_secret", "s3cret-of-the-provider"),
            ("authorization_url", "https://provider.example/authorize"),
            ("token_url", "https://provider.example/token"),
            ("token_endpoint_auth", "basic"),
            ("api_base_url", "https://provider.example/api/"),
            ("pkce_enabled", "true"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let id = s.app.outbound_clients().await.unwrap()[0].id.clone();
    let r = post(&catalog, &s, "connectors/", &[("csrf", &csrf), ("action", "authorize"), ("id", &id)]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let marker = "id=\"next-link\"";
    assert!(html.contains(marker), "{html}");
    let at = html.find(marker).unwrap();
    let anchor = &html[html[..at].rfind("<a ").unwrap()..at];
    let link = crate::delegated_oauth::hidden(&anchor.replacen("href=", "name=\"link\" value=", 1), "link");
    assert!(link.starts_with(&s.url("/oauth/v1/connections/start/?state=")), "{link}");
    // The link, in this browser, goes on to the provider with PKCE.
    let r = catalog.get(&link).await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.starts_with("https://provider.example/authorize?") && to.contains("code_challenge="), "{to}");
    // The connection is the catalog admin's own, on their account page.
    let account = catalog.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(account.contains("Salesforce"), "{account}");
    assert!(!crate::harness::database_dump(&s).contains("s3cret-of-the-provider"));
}

/// Ten changes made at once with the same (right) current password: one
/// holds, the others are told, and only the winner's password signs in.
async fn of_concurrent_password_changes_one_holds(backend: Backend) {
    let s = TestServer::start(backend).await;
    user(&s, "pat", Role::Viewer).await;
    let (browser, _) = console(&s, "pat", "password-of-pat").await;
    let page = browser.get(&s.url("/account/password")).await.text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let changes = (0..10).map(|i| {
        let new = format!("new-password-of-pat-{i}");
        let form = [
            ("csrf", csrf.clone()),
            ("current", "password-of-pat".into()),
            ("new", new.clone()),
            ("confirm", new),
        ];
        let request = browser.client().post(s.url("/account/password")).form(&form);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(changes).await;
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 303 | 400 | 429)), "{statuses:?}");
    let winner = statuses.iter().position(|s| *s == 303).unwrap();
    let sign_in = async |i: usize| {
        let r = Browser::new().sign_in(&s, &s.url("/"), "pat", &format!("new-password-of-pat-{i}")).await;
        r.status().as_u16()
    };
    assert_eq!(sign_in(winner).await, 303);
    assert_eq!(sign_in((winner + 1) % 10).await, 401);
}

/// A form body sent as it is (repeated fields, raw bytes, any size).
async fn raw_form(
    browser: &Browser,
    s: &TestServer,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> Result<reqwest::Response, reqwest::Error> {
    browser
        .client()
        .post(s.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
}

//! Single sign-on against a provider whose answers each test chooses (a
//! real HTTP server on loopback serving discovery, keys and a token
//! endpoint): forged, expired, misaddressed and replayed ID tokens, a wrong
//! nonce, a mixed-up state, and the admin API's refusals. The real
//! provider (npm oidc-provider, in Chromium) is in tests/interop/test_sso.py.

use crate::delegated_oauth::{Browser, location, param};
use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::crypto::{SigningAlgorithm, SigningKey};
use keyward::domain::Role;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

on_both_backends!(
    a_good_id_token_signs_in_and_provisions,
    bad_id_tokens_are_refused,
    a_sign_in_belongs_to_the_browser_that_started_it,
    the_admin_api_of_providers_refuses_what_it_should,
    sign_ins_are_listed_and_revocable,
    an_account_has_one_upstream_account,
    identity_assertions_are_checked,
    a_callback_for_a_huge_provider_id_is_audited_short,
);

/// Anyone may call a callback with any provider id (a path parameter of up
/// to 64 KiB): refused, and its audit record holds a bounded part of it.
async fn a_callback_for_a_huge_provider_id_is_audited_short(backend: Backend) {
    let s = TestServer::start(backend).await;
    let id = "p".repeat(60_000);
    let r = s.http.get(s.url(&format!("/login/sso/{id}/callback/?state=x&code=y"))).send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let body = r.text().await.unwrap();
    assert!(!body.contains(&"p".repeat(100)), "the page repeats the id");
    s.app.audit.flush().await;
    let query =
        keyward::store::AuditQuery { action: Some("login.failed".into()), limit: 10, ..Default::default() };
    let failed = s.app.store.audit_events(&query).await.unwrap();
    let record = failed
        .iter()
        .find(|e| e.target.as_deref().is_some_and(|t| t.starts_with("sso_provider:ppp")))
        .expect("the refusal is audited");
    let kept = record.target.as_ref().unwrap().chars().count();
    assert!(kept <= 200, "{kept} characters kept");
    assert!(record.detail.to_string().len() < 500, "{}", record.detail);
}

/// The fake provider: its issuer, and the claims (or raw token) its token
/// endpoint answers with next.
struct Provider {
    issuer: String,
    next: Arc<Mutex<Answer>>,
    key: Arc<SigningKey>,
    /// A key the provider never published.
    stranger: SigningKey,
}

#[derive(Clone, Default)]
enum Answer {
    #[default]
    Nothing,
    Token(String),
}

fn key(kid: &str) -> SigningKey {
    SigningKey::from_pkcs8(kid, SigningAlgorithm::Es256, &SigningKey::generate_pkcs8(SigningAlgorithm::Es256))
        .unwrap()
}

async fn provider() -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let published = Arc::new(key("idp-1"));
    let next = Arc::new(Mutex::new(Answer::Nothing));
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    });
    let jwks = json!({"keys": [published.public_jwk()]});
    let answer = next.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }))
        .route(
            "/token",
            axum::routing::post(move |body: String| async move {
                // The client authenticates as its discovery document asks.
                assert!(body.contains("client_secret=fake-secret"), "{body}");
                assert!(body.contains("code_verifier="), "{body}");
                match answer.lock().unwrap().clone() {
                    Answer::Token(t) => {
                        axum::Json(json!({"access_token": "x", "token_type": "Bearer", "id_token": t}))
                    }
                    Answer::Nothing => axum::Json(json!({"access_token": "x", "token_type": "Bearer"})),
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Provider { issuer, next, key: published, stranger: key("idp-1") }
}

impl Provider {
    fn claims(&self, nonce: &str, subject: &str, email: &str) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": self.issuer, "aud": "keyward", "sub": subject, "iat": now, "exp": now + 300,
            "nonce": nonce, "email": email, "email_verified": true, "groups": ["staff"],
        })
    }

    fn answer(&self, token: String) {
        *self.next.lock().unwrap() = Answer::Token(token);
    }
}

async fn declare(s: &TestServer, p: &Provider, extra: Value) -> Value {
    let body = json!({
        "id": "fake", "display_name": "Fake IdP", "issuer": p.issuer, "client_id": "keyward",
        "client_secret": "fake-secret", "groups_claim": "groups", "default_role": "viewer",
    });
    send_provider(s, reqwest::Method::POST, "/admin/api/sso_providers/", body, extra, 201).await
}

/// Sends provider settings `body` with `extra` on top; the answer, which
/// must have `status`.
async fn send_provider(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    mut body: Value,
    extra: Value,
    status: u16,
) -> Value {
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let r = s.send(method, path, &s.admin_token().await).json(&body).send().await.unwrap();
    json_with_status(r, status).await
}

/// Starts a sign-in in `browser`: the `state` and `nonce` sent to the provider.
async fn start(s: &TestServer, browser: &Browser) -> (String, String) {
    start_at(s, browser, "fake").await
}

async fn start_at(s: &TestServer, browser: &Browser, id: &str) -> (String, String) {
    let r = browser.get(&s.url(&format!("/login/sso/{id}/?return_to=%2Faccount%2Fauth"))).await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(param(&to, "code_challenge_method").as_deref(), Some("S256"));
    assert!(param(&to, "code_challenge").is_some());
    assert_eq!(param(&to, "redirect_uri").unwrap(), s.url(&format!("/login/sso/{id}/callback/")));
    (param(&to, "state").unwrap(), param(&to, "nonce").unwrap())
}

async fn finish(s: &TestServer, browser: &Browser, state: &str) -> reqwest::Response {
    finish_at(s, browser, state, "fake").await
}

async fn finish_at(s: &TestServer, browser: &Browser, state: &str, id: &str) -> reqwest::Response {
    let callback = s.url(&format!("/login/sso/{id}/callback/"));
    let url = reqwest::Url::parse_with_params(&callback, &[("code", "c0de"), ("state", state)]).unwrap();
    browser.get(url.as_str()).await
}

async fn signed_in(s: &TestServer, browser: &Browser) -> bool {
    let html = browser.get(&s.url("/account/auth")).await.text().await.unwrap();
    html.contains("Refresh tokens")
}

async fn a_good_id_token_signs_in_and_provisions(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    let declared = declare(&s, &p, json!({"group_roles": {"stewards": "steward"}})).await;
    assert_eq!(declared["has_client_secret"], true);
    assert!(!declared.to_string().contains("fake-secret"));
    let browser = Browser::new();
    let (state, nonce) = start(&s, &browser).await;
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "sub-1", "erin@example.test")));
    let r = finish(&s, &browser, &state).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/account/auth");
    assert!(signed_in(&s, &browser).await);
    let erin = s.user_named("erin@example.test").await;
    assert_eq!(erin.role, keyward::domain::Role::Viewer);
    assert_eq!(erin.auth_source, keyward::domain::AuthSource::Sso);
    // The groups claim now says steward: the role follows at the next sign-in.
    let again = Browser::new();
    let (state, nonce) = start(&s, &again).await;
    let mut claims = p.claims(&nonce, "sub-1", "erin@example.test");
    claims["groups"] = json!(["stewards"]);
    p.answer(p.key.sign_jwt(&claims));
    assert_eq!(finish(&s, &again, &state).await.status(), 303);
    assert_eq!(s.user_named("erin@example.test").await.role, keyward::domain::Role::Steward);
    // A provider that does not provision refuses a stranger.
    let r = s
        .send(reqwest::Method::PUT, "/admin/api/sso_providers/fake/", &s.admin_token().await)
        .json(&json!({"display_name": "Fake IdP", "issuer": p.issuer, "client_id": "keyward"}))
        .send()
        .await
        .unwrap();
    let replaced = json_with_status(r, 200).await;
    assert_eq!(replaced["has_client_secret"], true, "a replacement without a secret keeps it");
    let third = Browser::new();
    let (state, nonce) = start(&s, &third).await;
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "sub-2", "stranger@example.test")));
    let r = finish(&s, &third, &state).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("no keyward account for"));
    assert!(s.app.store.user_credentials("stranger@example.test").await.unwrap().is_none());
    // Signing in through the provider continues where the sign-in page was:
    // here the authorize flow of an app acting for the user.
    let app_request =
        "/oauth/v1/authorize/?response_type=code&client_id=oac_x&redirect_uri=https%3A%2F%2Fapp.example%2Fcb";
    let browser = Browser::new();
    let start_url = format!(
        "/login/sso/fake/?{}",
        form_urlencoded::Serializer::new(String::new()).append_pair("return_to", app_request).finish()
    );
    let r = browser.get(&s.url(&start_url)).await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    let (state, nonce) = (param(&to, "state").unwrap(), param(&to, "nonce").unwrap());
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "sub-1", "erin@example.test")));
    let r = finish(&s, &browser, &state).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), app_request);
}

async fn bad_id_tokens_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    declare(&s, &p, json!({})).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    type Tamper = Box<dyn Fn(&Provider, &mut Value) -> String>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        ("forged", Box::new(|p, c| p.stranger.sign_jwt(c)), "signature"),
        (
            "expired",
            Box::new(move |p, c| {
                c["exp"] = json!(now - 600);
                c["iat"] = json!(now - 900);
                p.key.sign_jwt(c)
            }),
            "expired",
        ),
        (
            "wrong nonce",
            Box::new(|p, c| {
                c["nonce"] = json!("another");
                p.key.sign_jwt(c)
            }),
            "nonce",
        ),
        (
            "no nonce",
            Box::new(|p, c| {
                c.as_object_mut().unwrap().remove("nonce");
                p.key.sign_jwt(c)
            }),
            "nonce",
        ),
        (
            "other audience",
            Box::new(|p, c| {
                c["aud"] = json!("someone-else");
                p.key.sign_jwt(c)
            }),
            "another client",
        ),
        (
            "other issuer",
            Box::new(|p, c| {
                c["iss"] = json!("https://evil.example");
                p.key.sign_jwt(c)
            }),
            "another issuer",
        ),
        (
            "several audiences, no azp",
            Box::new(|p, c| {
                c["aud"] = json!(["keyward", "x"]);
                p.key.sign_jwt(c)
            }),
            "azp",
        ),
        (
            "issued in the future",
            Box::new(move |p, c| {
                c["iat"] = json!(now + 3600);
                p.key.sign_jwt(c)
            }),
            "future",
        ),
        (
            "unverified email",
            Box::new(|p, c| {
                c["email_verified"] = json!(false);
                p.key.sign_jwt(c)
            }),
            "email_verified",
        ),
        (
            "alg none",
            Box::new(|_, c| {
                use base64::Engine;
                let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
                format!("{}.{}.", b64(&json!({"alg": "none"})), b64(c))
            }),
            "not a signed JWT",
        ),
        ("not a JWT", Box::new(|_, _| "garbage".to_string()), "not a signed JWT"),
    ];
    for (case, tamper, why) in cases {
        let browser = Browser::new();
        let (state, nonce) = start(&s, &browser).await;
        let mut claims = p.claims(&nonce, "sub-x", "x@example.test");
        p.answer(tamper(&p, &mut claims));
        let r = finish(&s, &browser, &state).await;
        assert_eq!(r.status(), 403, "{case}");
        let cookies: Vec<_> =
            r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        assert!(!cookies.iter().any(|c| c.starts_with("kw_session=")), "{case}: {cookies:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains(why), "{case}: {page}");
        assert!(!signed_in(&s, &browser).await, "{case}");
    }
    assert!(s.app.store.user_credentials("x@example.test").await.unwrap().is_none());
    // No ID token at all.
    *p.next.lock().unwrap() = Answer::Nothing;
    let browser = Browser::new();
    let (state, _) = start(&s, &browser).await;
    assert_eq!(finish(&s, &browser, &state).await.status(), 502);
}

async fn a_sign_in_belongs_to_the_browser_that_started_it(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    declare(&s, &p, json!({})).await;
    // An attacker's answer (code and state) in a victim's browser: the
    // victim's browser holds no matching sign-in, so nobody is signed in.
    let attacker = Browser::new();
    let (state, nonce) = start(&s, &attacker).await;
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "attacker", "attacker@example.test")));
    let victim = Browser::new();
    let (_, _) = start(&s, &victim).await;
    let r = finish(&s, &victim, &state).await;
    assert_eq!(r.status(), 400);
    assert!(!signed_in(&s, &victim).await);
    // No sign-in under way at all; a made-up state; a repeated state.
    let fresh = Browser::new();
    assert_eq!(finish(&s, &fresh, &state).await.status(), 400);
    let url = s.url(&format!("/login/sso/fake/callback/?code=c&state={state}&state={state}"));
    assert_eq!(attacker.get(&url).await.status(), 400);
    // The answer, once used, cannot be used again in that browser: the
    // cookie is cleared whatever the outcome.
    let (state, nonce) = start(&s, &attacker).await;
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "attacker", "attacker@example.test")));
    assert_eq!(finish(&s, &attacker, &state).await.status(), 303);
    assert_eq!(finish(&s, &attacker, &state).await.status(), 400);
    // Nor with the cookie kept from before (a client that ignores the
    // clearing): a pending sign-in answers once.
    let r = s.http.get(s.url("/login/sso/fake/?return_to=%2Faccount%2Fauth")).send().await.unwrap();
    let kept = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let to = location(&r);
    let (state, nonce) = (param(&to, "state").unwrap(), param(&to, "nonce").unwrap());
    let callback = reqwest::Url::parse_with_params(
        &s.url("/login/sso/fake/callback/"),
        &[("code", "c0de"), ("state", state.as_str())],
    )
    .unwrap();
    for expected in [303, 400] {
        p.answer(p.key.sign_jwt(&p.claims(&nonce, "attacker", "attacker@example.test")));
        let r = s.http.get(callback.clone()).header("cookie", &kept).send().await.unwrap();
        assert_eq!(r.status(), expected);
    }
    // An answer that names another issuer (RFC 9207), and a provider error.
    let (state, _) = start(&s, &attacker).await;
    let url = reqwest::Url::parse_with_params(
        &s.url("/login/sso/fake/callback/"),
        &[("code", "c"), ("state", state.as_str()), ("iss", "https://evil.example")],
    )
    .unwrap();
    assert_eq!(attacker.get(url.as_str()).await.status(), 400);
    let (state, _) = start(&s, &attacker).await;
    let url = reqwest::Url::parse_with_params(
        &s.url("/login/sso/fake/callback/"),
        &[("error", "access_denied"), ("state", state.as_str())],
    )
    .unwrap();
    let r = attacker.get(url.as_str()).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("access_denied"));
    // Where a sign-in may continue: this server's pages only.
    for bad in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example", "%2Fadmin%2Fapi%2Fusers%2F"] {
        let r = attacker.get(&s.url(&format!("/login/sso/fake/?return_to={bad}"))).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(attacker.get(&s.url("/login/sso/nope/")).await.status(), 404);
}

async fn the_admin_api_of_providers_refuses_what_it_should(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    let admin = s.admin_token().await;
    let post =
        |body: Value| s.send(reqwest::Method::POST, "/admin/api/sso_providers/", &admin).json(&body).send();
    let base = json!({"id": "x", "display_name": "X", "issuer": p.issuer, "client_id": "c"});
    for (bad, field) in [
        (json!({"id": "Bad Id"}), "provider id"),
        (json!({"scopes": ["email"]}), "openid"),
        (json!({"issuer": "ftp://x.example"}), "issuer"),
        (json!({"issuer": "http://127.0.0.1:9/nothing-here"}), "could not be fetched"),
        (json!({"display_name": ""}), "display_name"),
        (json!({"client_secret": "s".repeat(2000)}), "client_secret"),
        (json!({"unknown": 1}), "unknown field"),
        (json!({"default_role": "emperor"}), "invalid SSO provider"),
    ] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let message = api_error(post(body).await.unwrap(), 400, "invalid_request").await;
        assert!(message.contains(field), "{field}: {message}");
    }
    // A discovery document that names another issuer.
    let mut body = base.clone();
    body["issuer"] = json!(format!("{}/", p.issuer.replace("127.0.0.1", "localhost")));
    let message = api_error(post(body).await.unwrap(), 400, "invalid_request").await;
    assert!(message.contains("names issuer"), "{message}");
    json_with_status(post(base.clone()).await.unwrap(), 201).await;
    assert_eq!(post(base.clone()).await.unwrap().status(), 409);
    // Not for other roles; nothing of someone else's to reach.
    let viewer = s.token_for_role(keyward::domain::Role::Viewer).await;
    let r = s.get("/admin/api/sso_providers/", &viewer).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.send(reqwest::Method::DELETE, "/admin/api/sso_providers/x/", &viewer).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // A catalog admin, a server admin's app holding only `mcp`, nobody at all.
    let catalog = s.token_for_role(keyward::domain::Role::CatalogAdmin).await;
    assert_eq!(s.get("/admin/api/sso_providers/x/", &catalog).send().await.unwrap().status(), 403);
    let (app_id, app_secret) = s.m2m_client("server_admin", 900).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app_id.as_str()),
        ("client_secret", app_secret.as_str()),
        ("scope", "mcp"),
    ];
    let mcp_only = json_with_status(s.token_request(&form).await, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.http.get(s.url("/admin/api/sso_providers/")).bearer_auth(&mcp_only).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.http.get(s.url("/admin/api/sso_providers/")).send().await.unwrap().status(), 401);
    // A body 100 times too large, a NUL, a field twice: refused, nothing made.
    let mut huge = base.clone();
    huge["id"] = json!("huge");
    huge["display_name"] = json!("x".repeat(100 * 64 * 1024));
    crate::harness::refused_as_too_large(post(huge).await);
    let mut nul = base.clone();
    nul["id"] = json!("nul");
    nul["display_name"] = json!("a\u{0}b");
    assert_eq!(post(nul).await.unwrap().status(), 400);
    let twice = format!(
        r#"{{"id": "twice", "id": "again", "display_name": "X", "issuer": "{}", "client_id": "c"}}"#,
        p.issuer
    );
    let r = s
        .send(reqwest::Method::POST, "/admin/api/sso_providers/", &admin)
        .header("content-type", "application/json")
        .body(twice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for id in ["huge", "nul", "twice", "again"] {
        let r = s.get(&format!("/admin/api/sso_providers/{id}/"), &admin).send().await.unwrap();
        assert_eq!(r.status(), 404, "{id}");
    }
    // The browser's routes: a query far too long, a NUL.
    let browser = Browser::new();
    let long = format!("/login/sso/x/?return_to={}", "a".repeat(10_000));
    assert_eq!(browser.get(&s.url(&long)).await.status(), 400);
    assert_eq!(browser.get(&s.url("/login/sso/x/callback/?state=%00&code=c")).await.status(), 400);
    let r = s.send(reqwest::Method::DELETE, "/admin/api/sso_providers/x/", &admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = s.send(reqwest::Method::DELETE, "/admin/api/sso_providers/x/", &admin).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Fifty concurrent creations of one id: one wins.
    let mut body = base.clone();
    body["id"] = json!("race");
    let all = futures_util::future::join_all((0..50).map(|_| post(body.clone()))).await;
    let created = all.iter().filter(|r| r.as_ref().unwrap().status() == 201).count();
    assert_eq!(created, 1);
    assert!(all.iter().all(|r| matches!(r.as_ref().unwrap().status().as_u16(), 201 | 409)));
}

async fn sign_ins_are_listed_and_revocable(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    declare(&s, &p, json!({})).await;
    let laptop = Browser::new();
    let phone = Browser::new();
    for browser in [&laptop, &phone] {
        let (state, nonce) = start(&s, browser).await;
        p.answer(p.key.sign_jwt(&p.claims(&nonce, "sub-9", "gil@example.test")));
        assert_eq!(finish(&s, browser, &state).await.status(), 303);
    }
    let html = laptop.get(&s.url("/account/auth")).await.text().await.unwrap();
    assert!(html.contains("sso:fake") && html.contains("this browser"), "{html}");
    // The laptop ends the phone's sign-in.
    let csrf = crate::delegated_oauth::hidden(&html, "csrf");
    let marker = "name=\"session\" value=\"";
    let sessions: Vec<&str> = html
        .match_indices(marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(sessions.len(), 2, "{html}");
    let phone_session = sessions
        .iter()
        .find(|id| !html[html.find(*id).unwrap()..].split("</tr>").next().unwrap().contains("this browser"))
        .unwrap()
        .to_string();
    let r = laptop
        .client()
        .post(s.url("/account/auth"))
        .form(&[("csrf", csrf.as_str()), ("action", "end_sign_in"), ("session", phone_session.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!signed_in(&s, &phone).await);
    assert!(signed_in(&s, &laptop).await);
    // Someone else's (a made-up one): refused.
    let r = laptop
        .client()
        .post(s.url("/account/auth"))
        .form(&[("csrf", csrf.as_str()), ("action", "end_sign_in"), ("session", "0".repeat(43).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Another user's real sign-in: refused, and it stays.
    let admin = s.admin_token().await;
    let r = s
        .send(reqwest::Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": "olga", "password": "password-of-olga", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let olga = Browser::new();
    assert_eq!(olga.sign_in(&s, &s.url("/account/auth"), "olga", "password-of-olga").await.status(), 303);
    let olga_page = olga.get(&s.url("/account/auth")).await.text().await.unwrap();
    let olga_session = crate::delegated_oauth::hidden(&olga_page, "session");
    let r = laptop
        .client()
        .post(s.url("/account/auth"))
        .form(&[("csrf", csrf.as_str()), ("action", "end_sign_in"), ("session", olga_session.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(signed_in(&s, &olga).await);
    // Idle past the timeout: the sign-in ends.
    s.app.set_setting(keyward::domain::Actor::Cli, "keyward.sessions.idle_timeout", "60").await.unwrap();
    s.app.store.touch_session(&phone_session, 0).await.unwrap();
    let hash_of_laptop = sessions.iter().find(|id| **id != phone_session).unwrap();
    s.app.store.touch_session(hash_of_laptop, 1).await.unwrap();
    assert!(!signed_in(&s, &laptop).await);
}

async fn an_account_has_one_upstream_account(backend: Backend) {
    let s = TestServer::start(backend).await;
    let p = provider().await;
    declare(&s, &p, json!({"group_roles": {"admins": "server_admin"}})).await;
    let other = provider().await;
    declare(&s, &other, json!({"id": "other", "group_roles": {"admins": "server_admin"}})).await;
    // An admin creates an SSO-only user; its first sign-in links it.
    let admin = s.admin_token().await;
    let r = s
        .send(reqwest::Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": "alice@example.test", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let sign_in = async |provider: &Provider, id: &str, subject: &str, email: &str, groups: Value| {
        let browser = Browser::new();
        let (state, nonce) = start_at(&s, &browser, id).await;
        let mut claims = provider.claims(&nonce, subject, email);
        claims["groups"] = groups;
        provider.answer(provider.key.sign_jwt(&claims));
        let r = finish_at(&s, &browser, &state, id).await;
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(sign_in(&p, "fake", "alice-sub", "alice@example.test", json!([])).await.0, 303);
    // Another subject with her name (any case), at the same provider or
    // another one, and with a group that would make it an admin: refused.
    for (provider, id, subject, email) in [
        (&p, "fake", "mallory-sub", "alice@example.test"),
        (&p, "fake", "mallory-sub", "ALICE@example.test"),
        (&other, "other", "alice-sub", "alice@example.test"),
        (&other, "other", "mallory-sub", "Alice@Example.Test"),
    ] {
        let (status, page) = sign_in(provider, id, subject, email, json!(["admins"])).await;
        assert_eq!(status, 403, "{id} {subject} {email}: {page}");
        assert!(page.contains("no keyward account for"), "{page}");
    }
    let alice = s.user_named("alice@example.test").await;
    assert_eq!(alice.role, Role::Viewer);
    // Her own subject still signs in, and is the only link.
    assert_eq!(sign_in(&p, "fake", "alice-sub", "alice@example.test", json!([])).await.0, 303);
    assert_eq!(s.app.store.sso_links_of(alice.id).await.unwrap(), 1);
    // Fifty first sign-ins of one new name by fifty subjects at once: one account, one link.
    let all = futures_util::future::join_all((0..50).map(|i| {
        let subject = format!("racer-{i}");
        let sign_in = &sign_in;
        let p = &p;
        async move { sign_in(p, "fake", &subject, "racer@example.test", json!([])).await.0 }
    }))
    .await;
    let winners = all.iter().filter(|s| **s == 303).count();
    assert!(winners >= 1, "{all:?}");
    assert!(all.iter().all(|s| matches!(s, 303 | 403 | 409)), "{all:?}");
    let racer = s.user_named("racer@example.test").await;
    assert_eq!(s.app.store.sso_links_of(racer.id).await.unwrap(), 1);
}

/// An ID-JAG for `subject`, issued to `client_id`, signed by `key` with
/// header `typ`; `change` edits the claims.
fn id_jag(
    p: &Provider,
    key: &SigningKey,
    typ: &str,
    s: &TestServer,
    client_id: &str,
    change: impl Fn(&mut Value),
) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": p.issuer, "sub": "sub-1", "aud": s.app.issuer, "client_id": client_id,
        "resource": s.url("/r/demo"), "jti": keyward::crypto::random_string::<12>(), "iat": now, "exp": now + 300,
        "scope": "tools:read",
    });
    change(&mut claims);
    key.sign_typed(typ, &claims)
}

async fn identity_assertions_are_checked(backend: Backend) {
    const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    let s = TestServer::start(backend).await;
    s.declare(crate::gateway::demo("http://127.0.0.1:9/")).await;
    let p = provider().await;
    // Trusted for sign-in only, first: assertions are refused.
    declare(&s, &p, json!({})).await;
    // erin signs in once through the IdP: her subject is linked.
    let browser = Browser::new();
    let (state, nonce) = start(&s, &browser).await;
    p.answer(p.key.sign_jwt(&p.claims(&nonce, "sub-1", "erin@example.test")));
    assert_eq!(finish(&s, &browser, &state).await.status(), 303);
    let (app, secret) =
        s.register_client(crate::delegated_oauth::confidential(crate::delegated_oauth::APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let redeem = |assertion: String| {
        let form = [
            ("grant_type", JWT_BEARER.to_string()),
            ("assertion", assertion),
            ("client_id", app.clone()),
            ("client_secret", secret.clone()),
        ];
        let request = s.http.post(s.url("/oauth/v2/token/")).form(&form);
        async move { request.send().await.unwrap() }
    };
    let good = || id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |_| {});
    let why = crate::harness::oauth_error(redeem(good()).await, 400, "invalid_grant").await;
    assert!(why.contains("not an identity provider trusted"), "{why}");
    let metadata = json_with_status(
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send().await.unwrap(),
        200,
    )
    .await;
    assert!(metadata["grant_types_supported"].as_array().unwrap().contains(&json!(JWT_BEARER)));

    declare_again(&s, &p, json!({"id_jag": true})).await;
    // A good assertion: a token for erin, to this client, for the resource.
    let assertion = good();
    let token = json_with_status(redeem(assertion.clone()).await, 200).await;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["scope"], "tools:read");
    assert_eq!(token["expires_in"], 3600, "an hour at most, whatever the client's lifetime");
    assert!(token.get("refresh_token").is_none());
    let jwt = token["access_token"].as_str().unwrap();
    let introspected = s.app.introspect(jwt).await.unwrap();
    let erin = s.user_named("erin@example.test").await;
    assert_eq!(
        (introspected["active"].as_bool(), introspected["sub"].as_str()),
        (Some(true), Some(erin.id.to_string().as_str()))
    );
    assert_eq!(introspected["client_id"], app.as_str());
    assert_eq!(introspected["aud"], s.url("/r/demo"));
    // It is for that resource, not keyward's own APIs.
    let r = s.http.get(s.url("/api/v2/connections/")).bearer_auth(jwt).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // No scope in the assertion: the resource's defaults, nothing wider.
    let unscoped = id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| {
        c.as_object_mut().unwrap().remove("scope");
    });
    assert_eq!(json_with_status(redeem(unscoped).await, 200).await["scope"], "tools:read");
    // An IdP that writes its issuer with a trailing slash (Auth0 does).
    let slashed =
        id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| c["iss"] = json!(format!("{}/", p.issuer)));
    json_with_status(redeem(slashed).await, 200).await;
    // Replayed: refused.
    let why = crate::harness::oauth_error(redeem(assertion).await, 400, "invalid_grant").await;
    assert!(why.contains("used before"), "{why}");

    // Each broken rule, refused with why.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cases: Vec<(String, &str)> = vec![
        (id_jag(&p, &p.key, "JWT", &s, &app, |_| {}), "typ"),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| c["aud"] = json!("https://other.example")),
            "audience",
        ),
        (id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, "oac_someone_else", |_| {}), "another client"),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| {
                c["iat"] = json!(now - 900);
                c["exp"] = json!(now - 600)
            }),
            "expired",
        ),
        (id_jag(&p, &p.stranger, "oauth-id-jag+jwt", &s, &app, |_| {}), "signature"),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| c["sub"] = json!("sub-unknown")),
            "no active keyward user",
        ),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| {
                c["iss"] = json!("https://idp.other.example")
            }),
            "not an identity provider trusted",
        ),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "jti",
        ),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| {
                c.as_object_mut().unwrap().remove("resource");
            }),
            "resource",
        ),
        (id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| c["exp"] = json!(now + 7200)), "longer than"),
        (
            id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| c["resource"] = json!(s.app.issuer)),
            "declared resources only",
        ),
        ("not.a.jwt".to_string(), "JWT"),
        ("x".repeat(20_000), "larger"),
    ];
    for (assertion, expected) in cases {
        let why = crate::harness::oauth_error(redeem(assertion).await, 400, "invalid_grant").await;
        assert!(why.contains(expected), "{expected}: {why}");
    }
    // A scope beyond what the IdP granted.
    let form = [
        ("grant_type", JWT_BEARER.to_string()),
        ("assertion", good()),
        ("scope", "tools:read tools:admin".to_string()),
        ("client_id", app.clone()),
        ("client_secret", secret.clone()),
    ];
    let r = s.http.post(s.url("/oauth/v2/token/")).form(&form).send().await.unwrap();
    crate::harness::oauth_error(r, 400, "invalid_scope").await;
    // The client must authenticate, and be the one the assertion names.
    let form = [("grant_type", JWT_BEARER.to_string()), ("assertion", good()), ("client_id", app.clone())];
    let r = s.http.post(s.url("/oauth/v2/token/")).form(&form).send().await.unwrap();
    crate::harness::oauth_error(r, 401, "invalid_client").await;
    let form = [
        ("grant_type", JWT_BEARER.to_string()),
        ("assertion", good()),
        ("client_id", app.clone()),
        ("client_secret", "wrong".into()),
    ];
    let r = s.http.post(s.url("/oauth/v2/token/")).form(&form).send().await.unwrap();
    crate::harness::oauth_error(r, 401, "invalid_client").await;
    // No audience, or more than one: refused.
    for aud in [None, Some(json!([s.app.issuer, "https://other.example"]))] {
        let assertion = id_jag(&p, &p.key, "oauth-id-jag+jwt", &s, &app, |c| match &aud {
            Some(aud) => c["aud"] = aud.clone(),
            None => drop(c.as_object_mut().unwrap().remove("aud")),
        });
        let why = crate::harness::oauth_error(redeem(assertion).await, 400, "invalid_grant").await;
        assert!(why.contains("aud"), "{why}");
    }
    // A disabled user gets nothing, and what erin had stays dead when she
    // is enabled again (it belongs to no grant).
    let held =
        json_with_status(redeem(good()).await, 200).await["access_token"].as_str().unwrap().to_string();
    // Tokens count by the second: this one is from the second before.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let patch = keyward::app::UserPatch { disabled: Some(true), ..Default::default() };
    s.app.update_user(keyward::domain::Actor::System, erin.id, patch).await.unwrap();
    let why = crate::harness::oauth_error(redeem(good()).await, 400, "invalid_grant").await;
    assert!(why.contains("no active keyward user"), "{why}");
    let patch = keyward::app::UserPatch { disabled: Some(false), ..Default::default() };
    s.app.update_user(keyward::domain::Actor::System, erin.id, patch).await.unwrap();
    assert_eq!(s.app.introspect(&held).await.unwrap()["active"], false);
    json_with_status(redeem(good()).await, 200).await;
}

/// Replaces provider "fake" with `extra` on top of its first settings.
async fn declare_again(s: &TestServer, p: &Provider, extra: Value) -> Value {
    let body = json!({"display_name": "Fake IdP", "issuer": p.issuer, "client_id": "keyward"});
    send_provider(s, reqwest::Method::PUT, "/admin/api/sso_providers/fake/", body, extra, 200).await
}

//! Regression tests for the defects an outside review found (issue 10), one
//! function per item, each on both backends. Every one of them failed on the
//! code before its fix.

use crate::connections::{CONNECTIONS, connect, futures_join_all, provider_and_outbound};
use crate::delegated_oauth::{Browser, authorize_url, confidential, hidden, location, param, public};
use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, api_error, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::settings::OUTBOUND_ALLOW_PRIVATE;
use keyward::domain::{Actor, Role, now, to_micros};
use keyward::store::AuditQuery;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USERS: &str = "/admin/api/users/";

/// A user with a password, and an API access token for it.
async fn user_with_token(s: &TestServer, name: &str, role: Role) -> (keyward::domain::User, String) {
    let user = s.app.create_user(Actor::System, name, Some("password-123"), role).await.unwrap();
    let token = s.token_for(&user).await;
    (user, token)
}

/// A public client's tokens for the admin, for `scope`.
pub(crate) async fn delegated_tokens(s: &TestServer, scope: &str) -> Value {
    let (id, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let extra = format!("&scope={}", scope.replace(' ', "%20"));
    let (url, verifier) = authorize_url(s, &id, "http://127.0.0.1/cb", &extra);
    let back = Browser::new().authorize(s, &url).await;
    let code = param(&back, "code").expect("a code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "http://127.0.0.1/cb"),
        ("client_id", &id),
        ("code_verifier", &verifier),
    ];
    let r = s.http.post(s.url("/oauth/v1/token/")).form(&form).send().await.unwrap();
    let mut tokens = json_with_status(r, 200).await;
    tokens["client_id"] = json!(id);
    tokens
}

/// 1. A token limits its caller to its scopes: `api` for keyward's own APIs.
async fn scopes_limit_what_a_token_may_do(backend: Backend) {
    let s = TestServer::start(backend).await;
    // A machine token for an admin client, with only `mcp`.
    let (id, secret) = s.m2m_client("server_admin", 900).await;
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "mcp"),
        ])
        .await;
    let mcp_only = json_with_status(r, 200).await["access_token"].as_str().unwrap().to_string();
    let r = s.http.get(s.url(USERS)).bearer_auth(&mcp_only).send().await.unwrap();
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains(r#"error="insufficient_scope""#) && challenge.contains(r#"scope="api""#));
    api_error(r, 403, "insufficient_scope").await;
    let full = s.client_jwt(&id, &secret).await;
    json_with_status(s.http.get(s.url(USERS)).bearer_auth(&full).send().await.unwrap(), 200).await;

    // An app the admin approved for `offline_access` only: a refresh token,
    // and an access token that can do nothing (here: create an admin).
    let tokens = delegated_tokens(&s, "offline_access").await;
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    let r = s
        .http
        .post(s.url(USERS))
        .bearer_auth(access)
        .json(&json!({"username": "planted", "password": "password-123", "role": "server_admin"}))
        .send()
        .await
        .unwrap();
    api_error(r, 403, "insufficient_scope").await;
    assert!(s.app.store.user_credentials("planted").await.unwrap().is_none());
    for path in ["/api/v2/connections/", "/api/v2/auth/credentials/", "/api/v2/oauth/consents/"] {
        api_error(
            s.http.get(s.url(path)).bearer_auth(access).send().await.unwrap(),
            403,
            "insufficient_scope",
        )
        .await;
    }
    // `mcp` alone: no keyward API, and no refresh token without offline_access.
    let tokens = delegated_tokens(&s, "mcp").await;
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    api_error(s.http.get(s.url(USERS)).bearer_auth(access).send().await.unwrap(), 403, "insufficient_scope")
        .await;
    // `api`: the REST APIs at the user's role.
    let tokens = delegated_tokens(&s, "api").await;
    assert!(tokens.get("refresh_token").is_none());
    let access = tokens["access_token"].as_str().unwrap();
    json_with_status(s.http.get(s.url(USERS)).bearer_auth(access).send().await.unwrap(), 200).await;

    // The consent page says what each scope grants.
    let (id, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let (url, _) = authorize_url(&s, &id, "http://127.0.0.1/cb", "&scope=api%20mcp%20offline_access");
    let browser = Browser::new();
    let signed_in = browser.sign_in(&s, &url, "admin", ADMIN_PASSWORD).await;
    let page = browser.get(&s.url(&location(&signed_in))).await.text().await.unwrap();
    for words in ["everything your role allows", "no other API", "grants nothing on its own"] {
        assert!(page.contains(words), "{words}: {page}");
    }
    // The consent form's token is bound to the request it shows: the same
    // token with the scopes edited is refused.
    let edited = hidden(&page, "request").replace("scope=api%20mcp%20offline_access", "scope=api");
    assert_ne!(edited, hidden(&page, "request"));
    let form = [("csrf", hidden(&page, "csrf")), ("request", edited), ("decision", "approve".into())];
    let r = browser.client().post(s.url("/oauth/v1/authorize/")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 403);
}

/// 2. A connection's link works only for its owner, signed in to keyward.
async fn a_connection_link_serves_only_its_owner(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_, mallory) = user_with_token(&s, "mallory", Role::CatalogAdmin).await;
    let body = json!({"name": "End system", "grant_type": "authorization_code", "client_id": "c", "client_secret": "s",
        "authorization_url": "https://account.endsystem.com/authorize", "token_url": "https://api.endsystem.com/token",
        "api_base_url": "https://api.endsystem.com/v1/"});
    let r = s.send(Method::POST, "/admin/api/outbound_clients/", &mallory).json(&body).send().await.unwrap();
    let outbound = json_with_status(r, 201).await["id"].as_str().unwrap().to_string();
    let id = connect(&s, &mallory, &outbound).await;
    let started = s.get(&format!("{CONNECTIONS}{id}/authorize/"), &mallory).send().await.unwrap();
    let link = json_with_status(started, 200).await["authorization_url"].as_str().unwrap().to_string();
    let state = param(&link, "state").unwrap();
    // Only the state's HMAC is kept.
    assert!(!crate::harness::database_dump(&s).contains(&state));

    // The victim, signed in to keyward, opens Mallory's link: refused.
    let victim = Browser::new();
    let page = victim.get(&link).await;
    assert_eq!(page.status(), 200, "sign in first");
    let signed_in = victim.sign_in(&s, &link, "admin", ADMIN_PASSWORD).await;
    assert_eq!(signed_in.status(), 303);
    let r = victim.get(&link).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("another user"));
    // The link is still Mallory's: in her browser it leads to the provider.
    let own = Browser::new();
    let r = own.get(&link).await;
    assert_eq!(r.status(), 200);
    let signed_in = own.sign_in(&s, &link, "mallory", "password-123").await;
    assert_eq!(signed_in.status(), 303);
    let r = own.get(&link).await;
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("https://account.endsystem.com/authorize?"));
    // A provider's answer for it, arriving in the victim's browser (signed
    // in, but not the owner and without the start cookie), is refused.
    let callback = s.url(&format!("/oauth/v1/connections/callback/?state={state}&code=victims-code"));
    assert_eq!(victim.get(&callback).await.status(), 403);
    assert_eq!(s.http.get(&callback).send().await.unwrap().status(), 403);
    // Those refusals did not use the authorization up: it is still the owner's.
    let state_hash = s.app.secrets.digest(&state);
    let pending = s.app.store.pending_connection_authorization(&state_hash, 0).await.unwrap();
    assert_eq!(pending.map(|p| p.connection_id).as_deref(), Some(id.as_str()));
    let got =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/"), &mallory).send().await.unwrap(), 200).await;
    assert_eq!(got["status"], "pending");
}

/// 3. Repointing an outbound client needs its secret and drops the tokens
/// its connections held.
async fn repointing_an_outbound_client_drops_its_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_provider, outbound, _) = provider_and_outbound(&s, backend, json!({})).await;
    let (_, catalog_admin) = user_with_token(&s, "cat", Role::CatalogAdmin).await;
    let admin = s.admin_token().await;
    let id = connect(&s, &admin, &outbound).await;
    let token =
        json_with_status(s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(), 200)
            .await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
    let path = format!("/admin/api/outbound_clients/{outbound}/");
    let attacker = "http://127.0.0.1:9/token";
    for field in ["token_url", "api_base_url"] {
        let r = s
            .send(Method::PATCH, &path, &catalog_admin)
            .json(&json!({field: attacker}))
            .send()
            .await
            .unwrap();
        let d = api_error(r, 400, "invalid_request").await;
        assert!(d.contains("client_secret"), "{d}");
    }
    let held = s.app.store.connection(&id).await.unwrap().unwrap();
    assert!(held.sealed_access_token.is_some(), "a refused change changes nothing");
    let r = s
        .send(Method::PATCH, &path, &catalog_admin)
        .json(&json!({"token_url": attacker, "client_secret": "the-attackers-own"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let held = s.app.store.connection(&id).await.unwrap().unwrap();
    assert!(held.sealed_access_token.is_none() && held.sealed_refresh_token.is_none());
    assert_eq!(held.status, "pending");
    // Nothing the old provider issued comes back.
    let r = s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap();
    assert!(!r.text().await.unwrap().contains(&token));
}

/// A client-credentials connection whose provider takes 1.5 s to answer;
/// (outbound client id, connection id).
async fn slow_provider_connection(s: &TestServer, admin: &str) -> (String, String) {
    let slow_provider = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            axum::Json(json!({"access_token": "issued-by-the-old-provider", "token_type": "Bearer", "expires_in": 3600}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow_provider).await.unwrap() });
    let body = json!({"name": "Slow", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
        "token_url": format!("http://{addr}/token"), "api_base_url": format!("http://{addr}/api/")});
    let r = s.send(Method::POST, "/admin/api/outbound_clients/", admin).json(&body).send().await.unwrap();
    let outbound = json_with_status(r, 201).await["id"].as_str().unwrap().to_string();
    s.set(keyward::domain::settings::CONNECTION_OWNER_READS, "true").await;
    let id = connect(s, admin, &outbound).await;
    (outbound, id)
}

/// A token request for connection `id`, sent and under way at the provider.
async fn token_request_under_way(
    s: &TestServer,
    admin: &str,
    id: &str,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let request = s.get(&format!("{CONNECTIONS}{id}/token/"), admin);
    let fetch = tokio::spawn(async move { request.send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    fetch
}

/// 3, raced: a token request in flight at the old endpoints while an admin
/// repoints the client is dropped when it returns, not stored for the new.
async fn a_token_in_flight_during_a_repoint_is_dropped(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let (outbound, id) = slow_provider_connection(&s, &admin).await;
    let fetch = token_request_under_way(&s, &admin, &id).await;
    let r = s
        .send(Method::PATCH, &format!("/admin/api/outbound_clients/{outbound}/"), &admin)
        .json(&json!({"api_base_url": "http://127.0.0.1:9/elsewhere/", "client_secret": "another"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let answer = fetch.await.unwrap();
    let text = api_error(answer, 409, "conflict").await;
    assert!(text.contains("changed"), "{text}");
    let held = s.app.store.connection(&id).await.unwrap().unwrap();
    assert!(held.sealed_access_token.is_none(), "the old provider's token was not stored");
}

/// A revoke while a token is being fetched holds: the answer, when it
/// comes, is not stored and the connection stays revoked.
async fn a_revoke_during_a_fetch_holds(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let (_, id) = slow_provider_connection(&s, &admin).await;
    let fetch = token_request_under_way(&s, &admin, &id).await;
    let r = s.send(Method::POST, &format!("{CONNECTIONS}{id}/revoke/"), &admin).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["status"], "revoked");
    api_error(fetch.await.unwrap(), 409, "conflict").await;
    let held = s.app.store.connection(&id).await.unwrap().unwrap();
    assert_eq!(held.status, "revoked");
    assert!(held.sealed_access_token.is_none());
}

/// 4. A burst of guesses from one address is counted before it is checked,
/// and cannot lock the owner out at another address.
async fn a_burst_of_guesses_cannot_lock_the_owner_out(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.create_user(Actor::System, "owner", Some("owners-password"), Role::Viewer).await.unwrap();
    let url = s.url("/integration/v1/createRefreshToken/");
    let guesses = (0..60).map(|i| {
        let (http, url) = (s.http.clone(), url.clone());
        async move {
            let form =
                [("username", "owner".to_string()), ("password", format!("guess-{i}")), ("name", "x".into())];
            http.post(url).form(&form).send().await.unwrap().status()
        }
    });
    let statuses = futures_join_all(guesses).await;
    let checked = statuses.iter().filter(|s| s.as_u16() == 401).count();
    let refused = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert_eq!(checked + refused, 60, "{statuses:?}");
    assert!(checked <= 8, "{checked} of 60 concurrent guesses were checked");
    // The owner, at another address, signs in.
    let elsewhere = reqwest::Client::builder().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let form = [("username", "owner"), ("password", "owners-password"), ("name", "mine")];
    let r = elsewhere.post(s.url("/integration/v1/createRefreshToken/")).form(&form).send().await.unwrap();
    json_with_status(r, 201).await;
}

/// 4, behind a load balancer: the caller a trusted proxy names is the one
/// throttled and audited, so that one guesser does not lock out everyone
/// behind the balancer; and nobody else can name a caller.
async fn a_trusted_proxy_names_the_caller(backend: Backend) {
    let s = TestServer::start_behind_proxy(backend, "127.0.0.1/32, 10.0.0.0/8").await;
    s.app.create_user(Actor::System, "owner", Some("owners-password"), Role::Viewer).await.unwrap();
    let not_a_proxy = reqwest::Client::builder().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let attempt = |http: &reqwest::Client, forwarded: &str, password: &str| {
        let form = [("username", "owner"), ("password", password), ("name", "n")];
        let url = s.url("/integration/v1/createRefreshToken/");
        http.post(url).header("x-forwarded-for", forwarded).form(&form).send()
    };
    for _ in 0..5 {
        assert_eq!(attempt(&s.http, "203.0.113.9", "wrong").await.unwrap().status(), 401);
    }
    assert_eq!(attempt(&s.http, "203.0.113.9", "owners-password").await.unwrap().status(), 429);
    // A guesser cannot pose as another caller: the balancer appended its
    // real address, and a chain of trusted proxies is walked through.
    let posing = "203.0.113.10, 203.0.113.9, 10.1.2.3";
    assert_eq!(attempt(&s.http, posing, "owners-password").await.unwrap().status(), 429);
    // The owner, behind the same balancer at another address, signs in.
    json_with_status(attempt(&s.http, "203.0.113.10", "owners-password").await.unwrap(), 201).await;
    // A peer that is not a trusted proxy is the caller, whatever it says.
    for i in 0..5 {
        let r = attempt(&not_a_proxy, &format!("198.51.100.{i}"), "wrong").await.unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(attempt(&not_a_proxy, "198.51.100.77", "owners-password").await.unwrap().status(), 429);
    s.app.audit.flush().await;
    let query =
        keyward::store::AuditQuery { action: Some("login.failed".into()), limit: 100, ..Default::default() };
    let mut addresses: Vec<_> =
        s.app.store.audit_events(&query).await.unwrap().into_iter().filter_map(|e| e.client_addr).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses, ["127.0.0.2", "203.0.113.9"]);
    // A long chain is walked to its caller; one far over the header limit
    // is refused before anything reads it.
    let chain = format!("{}203.0.113.10", "198.51.100.1, ".repeat(1000));
    json_with_status(attempt(&s.http, &chain, "owners-password").await.unwrap(), 201).await;
    let huge = format!("{}203.0.113.10", "198.51.100.1, ".repeat(100_000));
    assert_eq!(attempt(&s.http, &huge, "owners-password").await.unwrap().status(), 431);
    // Fifty sign-ins at once from one forwarded network: throttled or
    // signed in, never an error, and the network is known once.
    let at_once = (0..50).map(|_| attempt(&s.http, "203.0.113.11", "owners-password"));
    let statuses: Vec<u16> =
        futures_join_all(at_once).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert!(statuses.iter().all(|s| matches!(s, 201 | 429)), "{statuses:?}");
    assert!(statuses.contains(&201), "{statuses:?}");
    assert!(s.app.store.knows_sign_in_network("user:owner", "203.0.113.11", to_micros(now())).await.unwrap());
}

/// 4, spread out: guesses from many addresses lock the account everywhere
/// (50 failures), but not where its owner signed in lately.
async fn the_owner_passes_an_account_lock_where_they_signed_in_before(backend: Backend) {
    let s = TestServer::start_behind_proxy(backend, "127.0.0.1/32").await;
    let owner =
        s.app.create_user(Actor::System, "owner", Some("owners-password"), Role::Viewer).await.unwrap();
    let attempt = |forwarded: &str, password: &str| {
        let form = [("username", "owner"), ("password", password), ("name", "n")];
        let url = s.url("/integration/v1/createRefreshToken/");
        s.http.post(url).header("x-forwarded-for", forwarded).form(&form).send()
    };
    let (office, home) = ("203.0.113.200", "203.0.113.150");
    json_with_status(attempt(office, "owners-password").await.unwrap(), 201).await;
    json_with_status(attempt(home, "owners-password").await.unwrap(), 201).await;
    let at = to_micros(now());
    // A known network's failures do not count toward the account's lock:
    // with the count one short of it, guesses from home leave it open.
    for _ in 0..49 {
        let key = [("user:owner".to_string(), &keyward::domain::throttle::account_lock_after as _)];
        s.app.store.reserve_attempt(&key, at, at - 3_600_000_000, 1_000_000).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(attempt(home, "wrong").await.unwrap().status(), 401);
    }
    json_with_status(attempt("198.51.100.9", "owners-password").await.unwrap(), 201).await;
    // The account's lock, as fifty guesses from twenty addresses leave it.
    let long_lock: &(dyn Fn(i64) -> i64 + Sync) = &|_| 900;
    let account = [("user:owner".to_string(), long_lock)];
    assert_eq!(s.app.store.reserve_attempt(&account, at, at - 3_600_000_000, 1_000_000).await.unwrap(), None);
    assert_eq!(attempt("198.51.100.1", "owners-password").await.unwrap().status(), 429);
    // The owner, where they signed in before, is not locked out …
    json_with_status(attempt(office, "owners-password").await.unwrap(), 201).await;
    // … which lifts the lock for nobody else.
    assert_eq!(attempt("198.51.100.2", "owners-password").await.unwrap().status(), 429);
    // Guesses from the owner's network still meet that address's own lock.
    for _ in 0..5 {
        assert_eq!(attempt(office, "wrong").await.unwrap().status(), 401);
    }
    assert_eq!(attempt(office, "owners-password").await.unwrap().status(), 429);
    // A network is remembered for thirty days, then forgotten and purged.
    let store = &s.app.store;
    assert!(store.knows_sign_in_network("user:owner", office, at).await.unwrap());
    let later = at + 31 * 86_400 * 1_000_000;
    assert!(!store.knows_sign_in_network("user:owner", office, later).await.unwrap());
    s.app.purge_expired_at(later).await.unwrap();
    assert!(!store.knows_sign_in_network("user:owner", office, at).await.unwrap(), "purged");
    // A new password forgets them all: who knew the old one keeps nothing.
    store.remember_sign_in_network("user:owner", home, later).await.unwrap();
    assert!(store.knows_sign_in_network("user:owner", home, at).await.unwrap());
    let patch =
        keyward::app::UserPatch { password: Some("owners-new-password".into()), ..Default::default() };
    s.app.update_user(Actor::System, owner.id, patch).await.unwrap();
    assert!(!store.knows_sign_in_network("user:owner", home, at).await.unwrap());
}

/// Login CSRF by cookie tossing (found by an outside probe): under an https
/// issuer the browser's cookies carry the `__Host-` prefix, which only this
/// host can set, so a cookie planted by a sibling subdomain (which cannot
/// carry it) is never the sign-in form's.
async fn cookies_under_https_can_only_come_from_this_host(backend: Backend) {
    let s = TestServer::start_with_issuer(backend, "https://auth.example.test").await;
    let login_cookie = |r: &reqwest::Response| {
        let set: Vec<_> =
            r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
        set.into_iter().find(|c| c.contains("kw_login="))
    };
    let r = s.http.get(s.url("/")).send().await.unwrap();
    let set = login_cookie(&r).expect("a login cookie");
    assert!(
        set.starts_with("__Host-kw_login=") && set.contains("; Secure") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.to_lowercase().contains("domain="), "{set}");
    // What a sibling subdomain can plant is not taken: a fresh cookie is set …
    let planted = "A".repeat(32);
    let r = s.http.get(s.url("/")).header("cookie", format!("kw_login={planted}")).send().await.unwrap();
    assert!(login_cookie(&r).is_some_and(|c| c.starts_with("__Host-kw_login=")));
    // … and the form cannot be posted with it, even with its own token.
    let sign_in = |cookie: String, login: String| {
        let form = [
            ("username", "admin".to_string()),
            ("password", crate::harness::ADMIN_PASSWORD.to_string()),
            ("csrf", s.app.csrf_token("login", &login)),
            ("return_to", "/".to_string()),
        ];
        s.http.post(s.url("/oauth/v1/login/")).form(&form).header("cookie", cookie).send()
    };
    let r = sign_in(format!("kw_login={planted}"), planted.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    // With the cookie keyward set, the sign-in holds, and its session
    // cookie carries the prefix too.
    let own = set.split(';').next().unwrap().strip_prefix("__Host-kw_login=").unwrap().to_string();
    let r = sign_in(format!("__Host-kw_login={own}"), own).await.unwrap();
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.contains("kw_session="));
    let session = session.expect("a session cookie");
    assert!(session.starts_with("__Host-kw_session=") && session.contains("; Secure"), "{session}");
}

/// 4, the other side: sign-ins that succeed give their slot back whole,
/// lock included, so an address with a few failures is not locked by them.
async fn successful_sign_ins_leave_no_lock(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.create_user(Actor::System, "owner", Some("owners-password"), Role::Viewer).await.unwrap();
    let attempt = |password: &'static str| {
        let form = [("username", "owner"), ("password", password), ("name", "n")];
        s.http.post(s.url("/integration/v1/createRefreshToken/")).form(&form).send()
    };
    for _ in 0..4 {
        assert_eq!(attempt("wrong").await.unwrap().status(), 401);
    }
    for _ in 0..3 {
        assert_eq!(attempt("owners-password").await.unwrap().status(), 201);
    }
    assert_eq!(attempt("wrong").await.unwrap().status(), 401, "the fifth failure is still checked");
}

/// 5. Slow request heads and idle connections are cut; connections over the
/// cap get a 503, and the server answers again once they are gone.
async fn slow_heads_are_cut_and_connections_capped(backend: Backend) {
    let s = TestServer::start_limited(backend, 8, 1).await;
    let addr = s.base.strip_prefix("http://").unwrap().to_string();
    // A head that never ends is closed after the head timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a slow head is cut within the timeout");
    // HTTP/2 without TLS (prior knowledge) is not spoken: its connections
    // have no idle limit, so a preface and a SETTINGS frame, then silence,
    // would hold a slot for ever. The connection is closed at once.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let answer = s.raw_exchange(preface).await.expect("an h2c connection is still open after 5 s");
    assert!(!answer.starts_with('\0'), "an HTTP/2 frame came back: {answer:?}");
    // Idle connections fill the cap; the next one is told 503 and closed.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), over.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The idle ones time out; the server serves again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(idle);
}

/// 5, the body: a client that announces a body and stalls is answered 408
/// and cut off once the body deadline passes, on any route.
async fn a_stalled_body_is_cut_off(backend: Backend) {
    let s = TestServer::start_limited(backend, 4, 1).await;
    let addr = s.base.strip_prefix("http://").unwrap().to_string();
    let started = std::time::Instant::now();
    let mut stalled = Vec::new();
    for path in ["/integration/v1/createRefreshToken/", "/oauth/v2/token/", "/no/such/route"] {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 60000\r\n\r\nu"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        stalled.push(c);
    }
    for mut c in stalled {
        let mut answer = String::new();
        let read = tokio::time::timeout(Duration::from_secs(20), c.read_to_string(&mut answer)).await;
        assert!(read.is_ok(), "still open after 20 s");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert_eq!(s.http.get(s.url("/healthz")).send().await.unwrap().status(), 200);
}

/// 6. Crafted loopback redirect URIs: an error page, not a dropped connection.
async fn crafted_loopback_redirects_are_an_error_page(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut body = public("http://127.0.0.1/cb");
    body["redirect_uris"] = json!(["http://127.0.0.1/cb", "http://[::1]/cb"]);
    let (id, _) = s.register_client(body).await;
    for redirect in
        ["http://127.0.0.1:99999/cb", "http://127.0.0.1:65536/cb", "http://[::1]junk/cb", "http://[::1]:/cb"]
    {
        let (url, _) = authorize_url(&s, &id, redirect, "");
        let r = s.http.get(&url).send().await.expect("an answer, not a dropped connection");
        assert_eq!(r.status(), 400, "{redirect}");
        assert!(r.headers().get("location").is_none());
    }
}

/// 7. Warehouse verification is throttled per principal and per warehouse
/// user, and failures are audited.
async fn vault_verification_is_throttled(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (role, _password, host, port, database) = crate::vault::warehouse().await;
    crate::vault::data_product(&s, "DP", &host, port, &database).await;
    let (_, viewer) = user_with_token(&s, "guesser", Role::Viewer).await;
    let guess = |token: String, i: usize| {
        let s = &s;
        let role = role.clone();
        async move {
            let body = json!({"state": "s", "username": role, "password": format!("guess-{i}"), "dp_id": "DP", "verify": true});
            s.http
                .post(s.url("/api/v2/auth/credentials/"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(guess(viewer.clone(), i).await.as_u16());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 400).count(), 5, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The guesser's lock is its own: another principal verifying the same
    // warehouse user is not locked out by it.
    let (_, other) = user_with_token(&s, "colleague", Role::Viewer).await;
    assert_eq!(guess(other, 99).await.as_u16(), 400);
    s.app.audit.flush().await;
    let q = AuditQuery {
        action: Some("credential.verification_failed".into()),
        limit: 100,
        ..Default::default()
    };
    assert!(!s.app.store.audit_events(&q).await.unwrap().is_empty());
}

/// 8. Private and loopback targets only behind the setting, checked when
/// the call is made.
async fn private_targets_need_the_setting(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (_provider, outbound, _) = provider_and_outbound(&s, backend, json!({})).await;
    let admin = s.admin_token().await;
    let id = connect(&s, &admin, &outbound).await;
    s.app.reset_setting(Actor::Cli, OUTBOUND_ALLOW_PRIVATE).await.unwrap();
    let d = api_error(
        s.get(&format!("{CONNECTIONS}{id}/token/"), &admin).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert!(d.contains("allow_private_addresses"), "{d}");
    api_error(
        s.get(&format!("{CONNECTIONS}{id}/proxy/healthz"), &admin).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // Registering one is refused too.
    let body = json!({"name": "Local", "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
        "token_url": "http://127.0.0.1:1/token", "api_base_url": "https://api.endsystem.com/"});
    api_error(
        s.send(Method::POST, "/admin/api/outbound_clients/", &admin).json(&body).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
}

/// 9. A NUL byte or another control character is a 400 everywhere.
async fn control_characters_are_400(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let r = s
        .http
        .post(s.url("/integration/v1/createRefreshToken/"))
        .json(&json!({"username": "a\u{0}b", "password": "x", "name": "n"}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .http
        .post(s.url("/integration/v1/createRefreshToken/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=a%00b&password=x&name=n")
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .send(Method::POST, USERS, &admin)
        .json(&json!({"username": "x\u{0}", "role": "viewer"}))
        .send()
        .await;
    api_error(r.unwrap(), 400, "invalid_request").await;
    let r = s.http.get(s.url("/oauth/v1/authorize/?client_id=%00&response_type=code")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .token_request(&[("grant_type", "client_credentials"), ("client_id", "a\0b"), ("client_secret", "x")])
        .await;
    oauth_error(r, 400, "invalid_request").await;
    // Bytes that are not UTF-8 are refused, not read as U+FFFD.
    for endpoint in ["/oauth/v2/token/", "/oauth/v2/introspect/", "/oauth/v2/revoke/"] {
        let r = s
            .http
            .post(s.url(endpoint))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&token=%ff&client_id=a%C3&client_secret=x")
            .send()
            .await
            .unwrap();
        assert!(oauth_error(r, 400, "invalid_request").await.contains("UTF-8"), "{endpoint}");
    }
    let r = s
        .http
        .post(s.url("/integration/v1/createRefreshToken/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=admin&password={ADMIN_PASSWORD}&name=%ff%fe"))
        .send()
        .await
        .unwrap();
    assert!(api_error(r, 400, "invalid_request").await.contains("UTF-8"));
    for path in [
        "/oauth/v1/authorize/?client_id=a&response_type=code&state=%ff",
        "/oauth/v1/connections/callback/?state=%ff&code=x",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().await.unwrap().contains("UTF-8"), "{path}");
    }
    // Typed queries, and a sign-in link naming a field twice.
    let r = s.get("/admin/api/audit/?actor=%ff", &admin).send().await.unwrap();
    assert!(api_error(r, 400, "invalid_request").await.contains("UTF-8"));
    let r = s.http.get(s.url("/login/sso/any/?return_to=%2F&return_to=%2Fadmin%2F")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A provider's answer that names its state twice is no answer.
    let r = s.http.get(s.url("/oauth/v1/connections/callback/?state=a&code=x&state=b")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("more than once"));
    let r = s.get("/admin/api/users/%00/", &admin).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let sign_in = |content_type: &'static str, body: &'static str| {
        s.http.post(s.url("/oauth/v1/login/")).header("content-type", content_type).body(body).send()
    };
    // Nor is a page's form that is not UTF-8 read as U+FFFD.
    let r = sign_in("application/x-www-form-urlencoded", "username=admin&password=%ff&csrf=x").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("UTF-8"));
    // The sign-in page's form is a form: another content type, which the
    // edge screen does not read as one, is refused before anything else.
    let body = "username=a%00b&password=x&csrf=x&return_to=/oauth/v1/authorize/?client_id=x";
    assert_eq!(sign_in("text/plain", body).await.unwrap().status(), 415);
    // … and names each field once.
    let r = s
        .http
        .post(s.url("/oauth/v1/login/"))
        .form(&[("username", "admin"), ("username", "other"), ("password", "x"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// 10. Delegated clients revoke their refresh tokens (RFC 7009), which ends
/// the family; another client cannot.
async fn delegated_clients_revoke_their_refresh_tokens(backend: Backend) {
    let s = TestServer::start(backend).await;
    let tokens = delegated_tokens(&s, "api offline_access").await;
    let (client_id, refresh, access) = (
        tokens["client_id"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
        tokens["access_token"].as_str().unwrap(),
    );
    let (other, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let revoke = |id: &str| {
        s.http.post(s.url("/oauth/v2/revoke/")).form(&[("token", refresh), ("client_id", id)]).send()
    };
    oauth_error(revoke(&other).await.unwrap(), 400, "unauthorized_client").await;
    assert_eq!(revoke(client_id).await.unwrap().status(), 200);
    let r = s
        .http
        .post(s.url("/oauth/v1/token/"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    oauth_error(r, 400, "invalid_grant").await;
    api_error(s.http.get(s.url(USERS)).bearer_auth(access).send().await.unwrap(), 401, "unauthorized").await;
}

/// 11. A password change or a disabled account ends sessions and tokens.
async fn password_change_and_disable_end_everything(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let user = s.app.create_user(Actor::System, "jane", Some("janes-password"), Role::Viewer).await.unwrap();
    let create = |password: &str| {
        let form = [("username", "jane"), ("password", password), ("name", "script")];
        s.http.post(s.url("/integration/v1/createRefreshToken/")).form(&form).send()
    };
    let refresh = json_with_status(create("janes-password").await.unwrap(), 201).await;
    let refresh = refresh["refresh_token"].as_str().unwrap().to_string();
    let form = [("refresh_token", refresh.as_str()), ("user_id", &user.id.to_string())];
    let r = s.http.post(s.url("/integration/v1/createAPIAccessToken/")).form(&form).send().await.unwrap();
    let access = json_with_status(r, 201).await["api_access_token"].as_str().unwrap().to_string();
    let browser = Browser::new();
    let (client, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let (url, _) = authorize_url(&s, &client, "http://127.0.0.1/cb", "");
    assert_eq!(browser.sign_in(&s, &url, "jane", "janes-password").await.status(), 303);
    assert!(!browser.get(&url).await.text().await.unwrap().contains("Sign in"), "signed in");

    let r = s
        .send(Method::PATCH, &format!("{USERS}{}/", user.id), &admin)
        .json(&json!({"password": "a-new-password"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    api_error(s.get(USERS, &access).send().await.unwrap(), 401, "unauthorized").await;
    let r = s.http.post(s.url("/integration/v1/validateRefreshToken/")).form(&form).send().await.unwrap();
    assert_eq!(json_with_status(r, 401).await["token_status"], "REVOKED");
    assert!(browser.get(&url).await.text().await.unwrap().contains("Sign in"), "the session ended");

    // Disabled: its tokens answer 403 (the reference's answer), both kinds.
    let refresh = json_with_status(create("a-new-password").await.unwrap(), 201).await;
    let refresh = refresh["refresh_token"].as_str().unwrap().to_string();
    let form = [("refresh_token", refresh.as_str()), ("user_id", &user.id.to_string())];
    let r = s.http.post(s.url("/integration/v1/createAPIAccessToken/")).form(&form).send().await.unwrap();
    let access = json_with_status(r, 201).await["api_access_token"].as_str().unwrap().to_string();
    let r = s
        .send(Method::PATCH, &format!("{USERS}{}/", user.id), &admin)
        .json(&json!({"disabled": true}))
        .send();
    json_with_status(r.await.unwrap(), 200).await;
    let validate = [("api_access_token", access.as_str()), ("user_id", &user.id.to_string())];
    let r =
        s.http.post(s.url("/integration/v1/validateAPIAccessToken/")).form(&validate).send().await.unwrap();
    api_error(r, 403, "forbidden").await;
    let r = s.http.post(s.url("/integration/v1/validateRefreshToken/")).form(&form).send().await.unwrap();
    api_error(r, 403, "forbidden").await;
}

/// 11, for machines: disabling an M2M client ends its tokens for good;
/// enabling it again revives none of them.
async fn disabling_a_client_ends_its_tokens_for_good(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    let old = s.client_jwt(&id, &secret).await;
    json_with_status(
        s.http.get(s.url("/api/v2/auth/credentials/")).bearer_auth(&old).send().await.unwrap(),
        200,
    )
    .await;
    let path = format!("/admin/api/m2m_clients/{id}/");
    for disabled in [true, false] {
        let r =
            s.send(Method::PATCH, &path, &admin).json(&json!({"disabled": disabled})).send().await.unwrap();
        json_with_status(r, 200).await;
    }
    let r = s.http.get(s.url("/api/v2/auth/credentials/")).bearer_auth(&old).send().await.unwrap();
    api_error(r, 401, "unauthorized").await;
    // A token issued after it is enabled again works (the next second on).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = s.client_jwt(&id, &secret).await;
    json_with_status(
        s.http.get(s.url("/api/v2/auth/credentials/")).bearer_auth(&fresh).send().await.unwrap(),
        200,
    )
    .await;
}

/// 12. Deleting a user or an M2M client deletes its warehouse credentials.
async fn deleting_a_principal_deletes_its_credentials(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let body = json!({"dp_id": "DP", "name": "Sales", "warehouse": {"kind": "postgresql", "host": "127.0.0.1", "port": 5432, "database": "x"}});
    json_with_status(
        s.send(Method::POST, "/admin/api/data_products/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
    let (user, token) = user_with_token(&s, "leaver", Role::Viewer).await;
    let (client_id, secret) = s.m2m_client("viewer", 900).await;
    let client_token = s.client_jwt(&client_id, &secret).await;
    for token in [&token, &client_token] {
        let body = json!({"state": "s", "username": "u", "password": "p", "dp_id": "DP"});
        let r = s.http.post(s.url("/api/v2/auth/credentials/")).bearer_auth(token).json(&body).send().await;
        json_with_status(r.unwrap(), 201).await;
    }
    let (service, service_secret) = s.m2m_client("viewer", 900).await;
    json_with_status(s.patch_m2m_client(&service, &admin, json!({"is_service": true})).await, 200).await;
    let service_token = s.client_jwt(&service, &service_secret).await;
    let read = |principal: String| {
        s.http
            .post(s.url("/internal/v1/credentials/"))
            .bearer_auth(&service_token)
            .json(&json!({"principal": principal, "dp_id": "DP"}))
            .send()
    };
    json_with_status(read(format!("user:{}", user.id)).await.unwrap(), 200).await;
    json_with_status(read(format!("client:{client_id}")).await.unwrap(), 200).await;
    assert_eq!(
        s.send(Method::DELETE, &format!("{USERS}{}/", user.id), &admin).send().await.unwrap().status(),
        204
    );
    let r =
        s.send(Method::DELETE, &format!("/admin/api/m2m_clients/{client_id}/"), &admin).send().await.unwrap();
    assert_eq!(r.status(), 204);
    api_error(read(format!("user:{}", user.id)).await.unwrap(), 404, "not_found").await;
    api_error(read(format!("client:{client_id}")).await.unwrap(), 404, "not_found").await;
}

/// 13. Confidential clients' loopback redirect URIs match exactly.
async fn confidential_loopback_redirects_match_exactly(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(confidential("http://127.0.0.1:8080/cb")).await;
    let (url, _) = authorize_url(&s, &id, "http://127.0.0.1:9999/cb", "");
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let (url, _) = authorize_url(&s, &id, "http://127.0.0.1:8080/cb", "");
    assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
}

/// 14. Failures are coalesced in the audit log, and expired rows purged.
async fn failures_are_coalesced_and_expired_rows_purged(backend: Backend) {
    let s = TestServer::start(backend).await;
    for _ in 0..30 {
        let form =
            [("grant_type", "client_credentials"), ("client_id", "m2m_nobody"), ("client_secret", "x")];
        oauth_error(s.token_request(&form).await, 401, "invalid_client").await;
    }
    s.app.audit.flush().await;
    let q = AuditQuery { limit: 1000, ..Default::default() };
    let failures: Vec<_> =
        s.app.store.audit_events(&q).await.unwrap().into_iter().filter(|e| e.outcome == "failure").collect();
    assert!(failures.len() <= 3, "{} failure records for 30 attempts", failures.len());
    let counted: i64 = failures.iter().map(|e| e.detail["repeated"].as_i64().unwrap_or(1)).sum();
    assert_eq!(counted, 30);

    // Expired sessions, throttle rows, codes and pending authorizations go.
    let user = s.user_named("admin").await;
    let long_ago = 1_000_000;
    let session = keyward::store::SessionRecord {
        id_hash: "expired-session".into(),
        user_id: user.id,
        created_at: long_ago,
        expires_at: long_ago + 1,
        last_seen_at: long_ago,
        method: "password".into(),
        client_addr: None,
    };
    s.app.store.create_session(&session).await.unwrap();
    let lock: keyward::domain::throttle::LockPolicy = &keyward::domain::throttle::lock_after;
    let reserve = [("addr:192.0.2.9".to_string(), lock)];
    s.app.store.reserve_attempt(&reserve, long_ago, 0, 1).await.unwrap();
    assert_eq!(s.app.purge_expired().await.unwrap(), 2);
    assert_eq!(s.app.purge_expired().await.unwrap(), 0);
}

/// 15. A control character in the sign-in form's `return_to`: refused
/// before the password is checked, no session handed out.
async fn a_bad_return_to_is_refused_before_sign_in(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (id, _) = s.register_client(public("http://127.0.0.1/cb")).await;
    let (url, _) = authorize_url(&s, &id, "http://127.0.0.1/cb", "");
    let browser = Browser::new();
    let page = browser.get(&url).await.text().await.unwrap();
    let raw = browser.client();
    // A real authorization request, with a parameter nobody reads added.
    let return_to = hidden(&page, "return_to");
    for bad in [format!("{return_to}&x=\r\nSet-Cookie: a=b"), format!("{return_to}&x=\u{7f}")] {
        let form = [
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", &hidden(&page, "csrf")),
            ("return_to", &bad),
        ];
        let r = raw.post(s.url("/oauth/v1/login/")).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad:?}");
        assert!(r.headers().get("set-cookie").is_none());
    }
}

/// 16. The Swagger UI pages cannot be framed.
async fn swagger_ui_cannot_be_framed(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.set_setting(Actor::Cli, "alation.feature_flags.enable_swagger", "true").await.unwrap();
    for path in ["/openapi/oauth2/ui/", "/openapi/api_authentication/ui/"] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    }
}

/// 17. The smaller ones: duplicate JSON keys, refresh tokens per user,
/// invisible characters in usernames, the proxy's methods and `..;`.
async fn the_smaller_findings(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let r = s
        .http
        .post(s.url("/integration/v1/createRefreshToken/"))
        .header("content-type", "application/json")
        .body(r#"{"username": "admin", "username": "other", "password": "x", "name": "n"}"#)
        .send()
        .await
        .unwrap();
    let d = api_error(r, 400, "invalid_request").await;
    assert!(d.contains("twice"), "{d}");

    let user =
        s.app.create_user(Actor::System, "hoarder", Some("hoarders-password"), Role::Viewer).await.unwrap();
    for _ in 0..keyward::app::REFRESH_TOKENS_PER_USER {
        s.token_for(&user).await;
    }
    let form = [("username", "hoarder"), ("password", "hoarders-password"), ("name", "one-more")];
    let r = s.http.post(s.url("/integration/v1/createRefreshToken/")).form(&form).send().await.unwrap();
    let d = api_error(r, 400, "invalid_request").await;
    assert!(d.contains("at most 100"), "{d}");

    for name in ["adm\u{200b}in", "\u{202e}nimda", "admin\u{feff}"] {
        let r = s
            .send(Method::POST, USERS, &admin)
            .json(&json!({"username": name, "password": "password-123", "role": "viewer"}));
        api_error(r.send().await.unwrap(), 400, "invalid_request").await;
    }

    let (_provider, outbound, _) = provider_and_outbound(&s, backend, json!({})).await;
    let id = connect(&s, &admin, &outbound).await;
    for method in ["TRACE", "PROPFIND", "MKCOL"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = s.send(method.clone(), &format!("{CONNECTIONS}{id}/proxy/x"), &admin).send().await.unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
    }
    // The method is refused before the connection is looked up, so the 405
    // says nothing of whose connection the id is; without a credential, 401.
    let (_, viewer) = user_with_token(&s, "onlooker", Role::Viewer).await;
    let trace = |token: Option<&str>| {
        let r = s.http.request(Method::TRACE, s.url(&format!("{CONNECTIONS}{id}/proxy/x")));
        match token {
            Some(t) => r.header("TOKEN", t),
            None => r,
        }
    };
    assert_eq!(trace(Some(&viewer)).send().await.unwrap().status(), 405, "someone else's connection");
    assert_eq!(trace(None).send().await.unwrap().status(), 401);
    let r = s.get(&format!("{CONNECTIONS}{id}/proxy/..;/admin/api/users/"), &admin).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
}

on_both_backends!(
    scopes_limit_what_a_token_may_do,
    a_connection_link_serves_only_its_owner,
    repointing_an_outbound_client_drops_its_tokens,
    a_token_in_flight_during_a_repoint_is_dropped,
    a_revoke_during_a_fetch_holds,
    a_burst_of_guesses_cannot_lock_the_owner_out,
    a_trusted_proxy_names_the_caller,
    the_owner_passes_an_account_lock_where_they_signed_in_before,
    cookies_under_https_can_only_come_from_this_host,
    successful_sign_ins_leave_no_lock,
    slow_heads_are_cut_and_connections_capped,
    a_stalled_body_is_cut_off,
    crafted_loopback_redirects_are_an_error_page,
    vault_verification_is_throttled,
    private_targets_need_the_setting,
    control_characters_are_400,
    delegated_clients_revoke_their_refresh_tokens,
    password_change_and_disable_end_everything,
    disabling_a_client_ends_its_tokens_for_good,
    deleting_a_principal_deletes_its_credentials,
    confidential_loopback_redirects_match_exactly,
    failures_are_coalesced_and_expired_rows_purged,
    a_bad_return_to_is_refused_before_sign_in,
    swagger_ui_cannot_be_framed,
    the_smaller_findings,
);

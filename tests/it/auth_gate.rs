//! The authentication layer and the minimum-role gate.

use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::app::UserPatch;
use keyward::domain::{Actor, Role};

const ADMIN_ROUTE: &str = "/admin/api/users/";

async fn missing_or_malformed_credentials_are_401(backend: Backend) {
    let s = TestServer::start(backend).await;
    let r = s.http.get(s.url(ADMIN_ROUTE)).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="keyward""#);
    api_error(r, 401, "unauthorized").await;

    for token in ["kwat_doesnotexist", "garbage", "eyJhbGciOiJub25lIn0.e30."] {
        let r = s.get(ADMIN_ROUTE, token).send().await.unwrap();
        api_error(r, 401, "unauthorized").await;
    }
    let r =
        s.http.get(s.url(ADMIN_ROUTE)).header("authorization", "Basic YWRtaW46eA==").send().await.unwrap();
    api_error(r, 401, "unauthorized").await;
    let r = s.get(ADMIN_ROUTE, &"x".repeat(5000)).send().await.unwrap();
    api_error(r, 401, "unauthorized").await;
}

async fn token_header_and_bearer_both_authenticate(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let r = s.get(ADMIN_ROUTE, &token).send().await.unwrap();
    json_with_status(r, 200).await;
    let r = s.http.get(s.url(ADMIN_ROUTE)).bearer_auth(&token).send().await.unwrap();
    json_with_status(r, 200).await;
    let r = s.get(ADMIN_ROUTE, &token).bearer_auth(&token).send().await.unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("not both"), "{detail}");
}

async fn roles_below_the_minimum_are_403(backend: Backend) {
    let s = TestServer::start(backend).await;
    for role in [Role::Viewer, Role::Steward, Role::CatalogAdmin] {
        let token = s.token_for_role(role).await;
        let r = s.get(ADMIN_ROUTE, &token).send().await.unwrap();
        let detail = api_error(r, 403, "forbidden").await;
        assert!(detail.contains("server_admin"), "{detail}");
    }
    let token = s.token_for_role(Role::ServerAdmin).await;
    json_with_status(s.get(ADMIN_ROUTE, &token).send().await.unwrap(), 200).await;
}

async fn expired_and_disabled_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.user_named("admin").await;

    let expired = s.token_with_expiry(&admin, -1).await;
    let detail = api_error(s.get(ADMIN_ROUTE, &expired).send().await.unwrap(), 401, "unauthorized").await;
    assert!(detail.contains("expired"), "{detail}");

    let user = s
        .app
        .create_user(Actor::System, "second-admin", Some("password-123"), Role::ServerAdmin)
        .await
        .unwrap();
    let token = s.token_for(&user).await;
    json_with_status(s.get(ADMIN_ROUTE, &token).send().await.unwrap(), 200).await;
    let patch = UserPatch { disabled: Some(true), ..Default::default() };
    s.app.update_user(Actor::System, user.id, patch).await.unwrap();
    api_error(s.get(ADMIN_ROUTE, &token).send().await.unwrap(), 401, "unauthorized").await;
}

async fn role_changes_apply_from_the_next_request(backend: Backend) {
    let s = TestServer::start(backend).await;
    let user =
        s.app.create_user(Actor::System, "demoted", Some("password-123"), Role::ServerAdmin).await.unwrap();
    let token = s.token_for(&user).await;
    json_with_status(s.get(ADMIN_ROUTE, &token).send().await.unwrap(), 200).await;
    let patch = UserPatch { role: Some(Role::Viewer), ..Default::default() };
    s.app.update_user(Actor::System, user.id, patch).await.unwrap();
    api_error(s.get(ADMIN_ROUTE, &token).send().await.unwrap(), 403, "forbidden").await;
}

const WHOAMI: &str = "/api/v2/whoami/";

/// The names of a JSON object's fields, sorted.
fn fields(v: &serde_json::Value) -> Vec<&str> {
    let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// `whoami` names the caller of each credential kind, and only that caller,
/// even when many ask at once (the remembered tokens never mix callers up).
async fn whoami_names_each_caller_and_follows_revocation(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let r = s.get(WHOAMI, &admin).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "an answer that depends on the credential");
    let me = json_with_status(r, 200).await;
    assert_eq!(fields(&me), ["kind", "role", "scope", "user_id", "username", "via_client"]);
    assert_eq!(me["kind"], "user");
    assert_eq!(me["username"], "admin");
    assert_eq!(me["user_id"], s.user_named("admin").await.id);
    assert_eq!(me["role"], "server_admin");
    assert!(me["scope"].is_null() && me["via_client"].is_null(), "{me}");

    // A machine's JWT: the client, its role and scope.
    let (id, secret) = s.m2m_client("steward", 900).await;
    let jwt = s.client_jwt(&id, &secret).await;
    let r = s.http.get(s.url(WHOAMI)).bearer_auth(&jwt).send().await.unwrap();
    let me = json_with_status(r, 200).await;
    assert_eq!(fields(&me), ["client_id", "kind", "role", "scope", "service_identity", "via_client"]);
    assert_eq!((me["kind"].as_str(), me["client_id"].as_str()), (Some("client"), Some(id.as_str())));
    assert_eq!((me["role"].as_str(), me["service_identity"].as_bool()), (Some("steward"), Some(false)));
    assert!(me["scope"].as_str().unwrap().split(' ').any(|s| s == "api"), "{me}");
    assert!(!me.to_string().contains(&secret) && !me.to_string().contains(&jwt));
    // Deleted: its JWT says nothing more.
    let r = s
        .send(reqwest::Method::DELETE, &format!("/admin/api/m2m_clients/{id}/"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.http.get(s.url(WHOAMI)).bearer_auth(&jwt).send().await.unwrap();
    api_error(r, 401, "unauthorized").await;

    // An app acting for the admin (authorization code): the app and scope.
    let tokens = crate::security_review::delegated_tokens(&s, "api").await;
    let r =
        s.http.get(s.url(WHOAMI)).bearer_auth(tokens["access_token"].as_str().unwrap()).send().await.unwrap();
    let me = json_with_status(r, 200).await;
    assert_eq!((me["kind"].as_str(), me["username"].as_str()), (Some("user"), Some("admin")));
    assert_eq!(me["via_client"], tokens["client_id"]);
    assert_eq!(me["scope"], "api");

    // A user's own API access token: revoked, or its role changed, it
    // shows from the next request on.
    let rita =
        s.app.create_user(Actor::System, "rita", Some("password-of-rita"), Role::Viewer).await.unwrap();
    let refresh = s.refresh_token("rita", "password-of-rita").await;
    let token = s.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    assert_eq!(json_with_status(s.get(WHOAMI, &token).send().await.unwrap(), 200).await["role"], "viewer");
    let patch = UserPatch { role: Some(Role::Steward), ..Default::default() };
    s.app.update_user(Actor::System, rita.id, patch).await.unwrap();
    assert_eq!(json_with_status(s.get(WHOAMI, &token).send().await.unwrap(), 200).await["role"], "steward");
    let (rt, uid) = (refresh["refresh_token"].as_str().unwrap(), rita.id.to_string());
    let r = s.integration("revokeAPIAccessTokens", &[("refresh_token", rt), ("user_id", &uid)]).await;
    json_with_status(r, 200).await;
    api_error(s.get(WHOAMI, &token).send().await.unwrap(), 401, "unauthorized").await;

    // Fifty users at once, each asking twice: each learns its own name.
    let mut users = Vec::new();
    for i in 0..50 {
        let user = s.app.create_user(Actor::System, &format!("who-{i}"), None, Role::Viewer).await.unwrap();
        users.push((user.username.clone(), s.token_for(&user).await));
    }
    let asks = users.iter().cycle().take(100).cloned().map(|(name, token)| {
        let (http, url) = (s.http.clone(), s.url(WHOAMI));
        async move {
            (name, json_with_status(http.get(url).header("TOKEN", token).send().await.unwrap(), 200).await)
        }
    });
    for (name, me) in crate::connections::futures_join_all(asks).await {
        assert_eq!(me["username"].as_str(), Some(name.as_str()));
        assert_eq!(me["role"], "viewer");
    }

    // Refused at once once the user is disabled; a POST is not this route.
    let who0 = s.user_named("who-0").await;
    let patch = UserPatch { disabled: Some(true), ..Default::default() };
    s.app.update_user(Actor::System, who0.id, patch).await.unwrap();
    api_error(s.get(WHOAMI, &users[0].1).send().await.unwrap(), 401, "unauthorized").await;
    json_with_status(s.get(WHOAMI, &users[1].1).send().await.unwrap(), 200).await;
    let r = s.send(reqwest::Method::POST, WHOAMI, &admin).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// Without a valid credential, or with one whose scope is not `api`, it
/// says nothing.
async fn whoami_without_a_usable_credential_says_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    api_error(s.http.get(s.url(WHOAMI)).send().await.unwrap(), 401, "unauthorized").await;
    for token in ["kwat_doesnotexist", "garbage", "eyJhbGciOiJub25lIn0.e30.", &"x".repeat(5000)] {
        let detail = api_error(s.get(WHOAMI, token).send().await.unwrap(), 401, "unauthorized").await;
        assert!(!detail.contains("admin"), "{detail}");
        let r = s.http.get(s.url(WHOAMI)).bearer_auth(token).send().await.unwrap();
        api_error(r, 401, "unauthorized").await;
    }
    // An unsigned JWT naming the admin, as a bearer token.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwic2NvcGUiOiJhcGkifQ.";
    let r = s.http.get(s.url(WHOAMI)).bearer_auth(unsigned).send().await.unwrap();
    api_error(r, 401, "unauthorized").await;
    let admin = s.user_named("admin").await;
    let expired = s.token_with_expiry(&admin, -1).await;
    api_error(s.get(WHOAMI, &expired).send().await.unwrap(), 401, "unauthorized").await;
    let (id, secret) = s.m2m_client("server_admin", 900).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("scope", "mcp"),
    ];
    let mcp_only = json_with_status(s.token_request(&form).await, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.http.get(s.url(WHOAMI)).bearer_auth(&mcp_only).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store", "the gate's own answer to a known caller");
    let detail = api_error(r, 403, "insufficient_scope").await;
    assert!(!detail.contains(&id), "{detail}");

    // A catalog_admin, and a query naming someone else: still the caller.
    let catalog_admin = s.token_for_role(Role::CatalogAdmin).await;
    let r = s.get(&format!("{WHOAMI}?user_id={}&username=admin", admin.id), &catalog_admin).send().await;
    let me = json_with_status(r.unwrap(), 200).await;
    assert_eq!(me["role"], "catalog_admin");
    assert_ne!(me["user_id"], admin.id);
    // Malformed or oversized requests: refused before anyone is named.
    let admin_token = s.admin_token().await;
    api_error(s.get(&format!("{WHOAMI}?x=%00"), &admin_token).send().await.unwrap(), 400, "invalid_request")
        .await;
    let r = s.get(WHOAMI, &admin_token).header("x-padding", "x".repeat(20 * 1024)).send().await.unwrap();
    assert_eq!(r.status(), 431);
    let other = s.token_for_role(Role::Viewer).await;
    for (name, second) in [("TOKEN", other.clone()), ("authorization", format!("Bearer {other}"))] {
        let first = if name == "TOKEN" { admin_token.clone() } else { format!("Bearer {admin_token}") };
        let r = s.http.get(s.url(WHOAMI)).header(name, first).header(name, second).send().await.unwrap();
        let detail = api_error(r, 400, "invalid_request").await;
        assert!(detail.contains("once"), "{detail}");
    }
}

on_both_backends!(
    whoami_names_each_caller_and_follows_revocation,
    whoami_without_a_usable_credential_says_nothing,
    missing_or_malformed_credentials_are_401,
    token_header_and_bearer_both_authenticate,
    roles_below_the_minimum_are_403,
    expired_and_disabled_are_refused,
    role_changes_apply_from_the_next_request,
);

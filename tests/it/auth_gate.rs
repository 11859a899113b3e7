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

on_both_backends!(
    missing_or_malformed_credentials_are_401,
    token_header_and_bearer_both_authenticate,
    roles_below_the_minimum_are_403,
    expired_and_disabled_are_refused,
    role_changes_apply_from_the_next_request,
);

//! Each node remembers the tokens it checked (issue 14). These tests hold
//! it to what that memory must never change: a revocation, a role change or
//! a disabled user takes effect at once on the node that made it and on
//! every other node (with several nodes revocation and API access tokens
//! are read per request), whatever revoked (here the revocation endpoint
//! and `/integration/v1`; grants revoked by a replayed refresh token in
//! `delegated_oauth`); and a remembered JWT of a disabled client is refused.

use crate::harness::{Backend, TestServer, json_with_status};
use crate::on_both_backends;
use reqwest::Method;
use serde_json::json;

on_both_backends!(
    revocations_reach_every_node_at_once,
    a_remembered_token_of_a_disabled_principal_is_refused,
    api_access_tokens_follow_revocations_and_role_changes_on_every_node,
);

async fn active(s: &TestServer, jwt: &str, by: &(String, String)) -> bool {
    let r = s
        .http
        .post(s.url("/oauth/v2/introspect/"))
        .basic_auth(&by.0, Some(&by.1))
        .form(&[("token", jwt)])
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await["active"] == true
}

async fn inactive_soon(s: &TestServer, jwt: &str, by: &(String, String)) -> bool {
    for _ in 0..40 {
        if !active(s, jwt, by).await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

async fn revocations_reach_every_node_at_once(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let (id, secret) = a.m2m_client("viewer", 900).await;
    let me = (id.clone(), secret.clone());
    // Many tokens, each verified (and remembered) on both nodes.
    let mut jwts = Vec::new();
    for _ in 0..5 {
        let jwt = a.client_jwt(&id, &secret).await;
        for _ in 0..3 {
            assert!(active(&a, &jwt, &me).await && active(&b, &jwt, &me).await);
        }
        jwts.push(jwt);
    }
    // Revoked through node a: refused by a from its next request, by b once told.
    for jwt in &jwts[..2] {
        let r = a
            .http
            .post(a.url("/oauth/v2/revoke/"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", jwt.as_str())]);
        assert_eq!(r.send().await.unwrap().status(), 200);
        assert!(!active(&a, jwt, &me).await, "at once on the revoking node");
        assert!(inactive_soon(&b, jwt, &me).await, "on the other node");
    }
    // The others are still good on both.
    for jwt in &jwts[2..] {
        assert!(active(&a, jwt, &me).await && active(&b, jwt, &me).await);
    }
    // A revocation racing verifications: whatever was being verified, the
    // revoked token is refused afterwards.
    let jwt = a.client_jwt(&id, &secret).await;
    let checks = futures_util::future::join_all((0..40).map(|_| active(&a, &jwt, &me)));
    let revoke = a
        .http
        .post(a.url("/oauth/v2/revoke/"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", jwt.as_str())])
        .send();
    let (_, revoked) = tokio::join!(checks, revoke);
    assert_eq!(revoked.unwrap().status(), 200);
    assert!(!active(&a, &jwt, &me).await);
    assert!(inactive_soon(&b, &jwt, &me).await);
}

async fn a_remembered_token_of_a_disabled_principal_is_refused(backend: Backend) {
    let a = TestServer::start(backend).await;
    let (id, secret) = a.m2m_client("server_admin", 900).await;
    let jwt = a.client_jwt(&id, &secret).await;
    for _ in 0..3 {
        let r = a.http.get(a.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let admin = a.admin_token().await;
    let r = a.patch_m2m_client(&id, &admin, json!({"disabled": true})).await;
    json_with_status(r, 200).await;
    let r = a.http.get(a.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

async fn status(s: &TestServer, path: &str, token: &str) -> u16 {
    s.get(path, token).send().await.unwrap().status().as_u16()
}

async fn status_soon(s: &TestServer, path: &str, token: &str, wanted: u16) -> bool {
    for _ in 0..40 {
        if status(s, path, token).await == wanted {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

async fn api_access_tokens_follow_revocations_and_role_changes_on_every_node(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let admin = a.admin_token().await;
    let r = a
        .send(Method::POST, "/admin/api/users/", &admin)
        .json(&json!({"username": "rita", "password": "password-of-rita", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let rita = json_with_status(r, 201).await["id"].as_i64().unwrap();
    let refresh = a.refresh_token("rita", "password-of-rita").await;
    let token = a.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    const USERS: &str = "/admin/api/users/";
    const MINE: &str = "/api/v2/oauth/consents/";
    // Looked up (and remembered) on both nodes: a viewer.
    for node in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(status(node, MINE, &token).await, 200);
            assert_eq!(status(node, USERS, &token).await, 403);
        }
    }
    // Promoted on node a: the new role counts at once there, soon on b.
    let r = a
        .send(Method::PATCH, &format!("/admin/api/users/{rita}/"), &admin)
        .json(&json!({"role": "server_admin"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    assert_eq!(status(&a, USERS, &token).await, 200, "at once on the writing node");
    assert!(status_soon(&b, USERS, &token, 200).await, "on the other node");
    // Revoked through the reference's call on node a: refused everywhere.
    let (rt, uid) = (refresh["refresh_token"].as_str().unwrap(), rita.to_string());
    let r = a.integration("revokeAPIAccessTokens", &[("refresh_token", rt), ("user_id", &uid)]).await;
    json_with_status(r, 200).await;
    assert_eq!(status(&a, MINE, &token).await, 401, "at once on the writing node");
    assert!(status_soon(&b, MINE, &token, 401).await, "on the other node");
    // A new token, then the user disabled: refused everywhere.
    let token = a.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    for node in [&a, &b] {
        assert_eq!(status(node, MINE, &token).await, 200);
    }
    let r = a
        .send(Method::PATCH, &format!("/admin/api/users/{rita}/"), &admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    assert_eq!(status(&a, MINE, &token).await, 401);
    assert!(status_soon(&b, MINE, &token, 401).await);
}

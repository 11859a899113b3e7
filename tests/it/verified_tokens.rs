//! Each node remembers the access tokens it verified (issue 14). These
//! tests hold it to what a cache of verified tokens must never change:
//! a revocation takes effect at once on the node that made it and as soon
//! as PostgreSQL delivers the notice on every other node, whatever revoked
//! (here the revocation endpoint; grants revoked by a withdrawn consent, a
//! password change or a replayed refresh token in `delegated_oauth`); a
//! disabled client or user is refused although its token was remembered;
//! and a node that cannot hear other nodes remembers nothing.

use crate::harness::{Backend, TestServer, json_with_status};
use crate::on_both_backends;
use reqwest::Method;
use serde_json::json;

on_both_backends!(
    revocations_reach_every_node_at_once,
    a_remembered_token_of_a_disabled_principal_is_refused
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
    let r = a
        .send(Method::PATCH, &format!("/admin/api/m2m_clients/{id}/"), &admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let r = a.http.get(a.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

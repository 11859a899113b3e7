//! `/admin/api/m2m_clients/`: management, secrets shown once, rotation.

use crate::harness::{Backend, TestServer, api_error, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::Actor;
use reqwest::Method;
use serde_json::json;

const CLIENTS: &str = "/admin/api/m2m_clients/";

async fn create_list_update_rotate_delete(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let r = s
        .send(Method::POST, CLIENTS, &token)
        .json(&json!({"name": "Nightly ETL", "access_token_duration": 3600, "role": "steward"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created = json_with_status(r, 201).await;
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("kwcs_") && secret.len() >= 5 + 43, "256 bits: {secret}");
    assert_eq!(created["role"], "steward");
    assert_eq!(created["access_token_duration"], 3600);

    // The secret is never shown again.
    let list = json_with_status(s.get(CLIENTS, &token).send().await.unwrap(), 200).await;
    assert!(!list.to_string().contains(&secret));
    assert!(list.as_array().unwrap().iter().any(|c| c["client_id"] == id.as_str()));
    let path = format!("{CLIENTS}{id}/");
    let got = json_with_status(s.get(&path, &token).send().await.unwrap(), 200).await;
    assert!(got.get("client_secret").is_none() && !got.to_string().contains(&secret));

    let r = s
        .send(Method::PATCH, &path, &token)
        .json(&json!({"name": "ETL", "access_token_duration": 600, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let patched = json_with_status(r, 200).await;
    assert_eq!(
        (patched["name"].clone(), patched["access_token_duration"].clone(), patched["role"].clone()),
        (json!("ETL"), json!(600), json!("viewer"))
    );

    let r = s.send(Method::POST, &format!("{path}rotate_secret/"), &token).send().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let rotated = json_with_status(r, 200).await;
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_expires_at"].is_string());
    // Both work during the overlap.
    s.client_jwt(&id, new_secret).await;
    s.client_jwt(&id, &secret).await;

    assert_eq!(s.send(Method::DELETE, &path, &token).send().await.unwrap().status(), 204);
    api_error(s.get(&path, &token).send().await.unwrap(), 404, "not_found").await;
    let r = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", new_secret),
        ])
        .await;
    oauth_error(r, 401, "invalid_client").await;

    s.app.audit.flush().await;
    let audit =
        json_with_status(s.get("/admin/api/audit/?limit=1000", &token).send().await.unwrap(), 200).await;
    let text = audit.to_string();
    for action in
        ["client.created", "client.updated", "client.secret_rotated", "client.deleted", "token.issued"]
    {
        assert!(text.contains(action), "{action} missing");
    }
    assert!(!text.contains(&secret) && !text.contains(new_secret), "no secret in the audit log");
}

async fn bad_input_names_the_field_and_changes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let post = |body: serde_json::Value| s.send(Method::POST, CLIENTS, &token).json(&body).send();
    for duration in [299, 259_201, 0, -5] {
        let r =
            post(json!({"name": "x", "access_token_duration": duration, "role": "viewer"})).await.unwrap();
        let detail = api_error(r, 400, "invalid_request").await;
        assert!(
            detail.contains("access_token_duration") && detail.contains("300") && detail.contains("259200"),
            "{detail}"
        );
    }
    for (body, field) in [
        (json!({"name": "x", "access_token_duration": "3600", "role": "viewer"}), "access_token_duration"),
        (json!({"name": "x", "role": "viewer"}), "access_token_duration"),
        (json!({"name": "x", "access_token_duration": 3600, "role": "root"}), "role"),
        (json!({"name": "", "access_token_duration": 3600, "role": "viewer"}), "name"),
        (json!({"name": "x", "access_token_duration": 3600, "role": "viewer", "secret": "mine"}), "secret"),
    ] {
        let detail = api_error(post(body).await.unwrap(), 400, "invalid_request").await;
        assert!(detail.contains(field), "{field}: {detail}");
    }
    let (id, _) = s.m2m_client("viewer", 3600).await;
    let r = s
        .send(Method::PATCH, &format!("{CLIENTS}{id}/"), &token)
        .json(&json!({"access_token_duration": 100}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    for method in [Method::GET, Method::DELETE, Method::PATCH] {
        let r = s.send(method, &format!("{CLIENTS}m2m_nope/"), &token).json(&json!({})).send().await.unwrap();
        api_error(r, 404, "not_found").await;
    }
    let r = s.send(Method::POST, &format!("{CLIENTS}m2m_nope/rotate_secret/"), &token).send().await.unwrap();
    api_error(r, 404, "not_found").await;
    let list = json_with_status(s.get(CLIENTS, &token).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["access_token_duration"], 3600);
    // Below server_admin the route is closed.
    let steward = s.token_for_role(keyward::domain::Role::CatalogAdmin).await;
    api_error(s.get(CLIENTS, &steward).send().await.unwrap(), 403, "forbidden").await;
}

async fn a_rotated_secret_stops_after_the_overlap(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.set_setting(Actor::System, "keyward.oauth.client_secret_rotation_overlap", "0").await.unwrap();
    let (id, old) = s.m2m_client("viewer", 600).await;
    let rotated = s.app.rotate_m2m_client_secret(Actor::System, &id).await.unwrap();
    let r = s
        .token_request(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &old)])
        .await;
    oauth_error(r, 401, "invalid_client").await;
    s.client_jwt(&id, &rotated.client_secret).await;
}

/// Whether node `s` refuses both a new token for the client and the JWT it
/// issued before.
async fn locked_out(s: &TestServer, form: &[(&str, &str)], jwt: &str) -> bool {
    let token = s.token_request(form).await.status();
    let api = s.http.get(s.url("/admin/api/users/")).bearer_auth(jwt).send().await.unwrap().status();
    token == 401 && api == 401
}

/// As [`locked_out`], allowing two seconds for the change notification to
/// reach node `s` on a loaded test machine (it takes milliseconds).
async fn locked_out_soon(s: &TestServer, form: &[(&str, &str)], jwt: &str) -> bool {
    for _ in 0..40 {
        if locked_out(s, form, jwt).await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Refused by the node that made the change from its next request on, and
/// by the other nodes once PostgreSQL delivers the change notification.
async fn disable_and_delete_apply_on_every_node(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let token = a.admin_token().await;
    let (id, secret) = a.m2m_client("server_admin", 600).await;
    let jwt = b.client_jwt(&id, &secret).await;
    json_with_status(b.http.get(b.url("/admin/api/users/")).bearer_auth(&jwt).send().await.unwrap(), 200)
        .await;

    let path = format!("{CLIENTS}{id}/");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let set_disabled =
        |disabled: bool| a.send(Method::PATCH, &path, &token).json(&json!({ "disabled": disabled })).send();
    json_with_status(set_disabled(true).await.unwrap(), 200).await;
    assert!(locked_out(&a, &form, &jwt).await, "at once on the writing node");
    assert!(locked_out_soon(&b, &form, &jwt).await, "on the other node");

    json_with_status(set_disabled(false).await.unwrap(), 200).await;
    a.client_jwt(&id, &secret).await;
    assert_eq!(a.send(Method::DELETE, &path, &token).send().await.unwrap().status(), 204);
    assert!(locked_out(&a, &form, &jwt).await);
    assert!(locked_out_soon(&b, &form, &jwt).await);
}

on_both_backends!(
    create_list_update_rotate_delete,
    bad_input_names_the_field_and_changes_nothing,
    a_rotated_secret_stops_after_the_overlap,
    disable_and_delete_apply_on_every_node,
);

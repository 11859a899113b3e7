//! `/admin/api/outbound_clients/`, and no secret in a database dump.

use crate::harness::{ADMIN_PASSWORD, Backend, MASTER_KEY, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::domain::settings::OUTBOUND_ALLOW_PRIVATE;
use keyward::domain::{Actor, Role};
use reqwest::Method;
use serde_json::{Value, json};

const OUTBOUND: &str = "/admin/api/outbound_clients/";
const OUTBOUND_SECRET: &str = "outbound-provider-secret-0123456789";

/// The reference's OAuth 2.0 client for a REST API, as keyward takes it.
fn reference_profile() -> Value {
    json!({
        "name": "End system", "grant_type": "authorization_code",
        "client_id": "endsystem-client", "client_secret": OUTBOUND_SECRET,
        "authorization_url": "https://account.endsystem.com/api/oauth2/authorize",
        "token_url": "https://api.endsystem.com/oauth2/token",
        "scopes": ["read", "write"], "access_token_lifetime_ms": 3600000, "refresh_token_lifetime_ms": 0,
        "api_base_url": "https://api.endsystem.com/v1/"
    })
}

async fn registry_with_a_write_only_secret(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.token_for_role(Role::CatalogAdmin).await;
    let r = s.send(Method::POST, OUTBOUND, &token).json(&reference_profile()).send().await.unwrap();
    let created = json_with_status(r, 201).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["has_client_secret"], true);
    assert_eq!(created["token_endpoint_auth"], "basic");
    assert_eq!(created["scope_separator"], " ");
    assert_eq!(created["refresh_token_lifetime_ms"], 0);
    assert!(!created.to_string().contains(OUTBOUND_SECRET));
    let cc = json!({"name": "Machine", "grant_type": "client_credentials", "client_id": "m", "client_secret": "x",
        "token_url": "https://idp.example/token", "token_endpoint_auth": "post", "scope_separator": ",",
        "extra_token_params": {"audience": "https://api.example"}, "api_base_url": "https://api.example/"});
    json_with_status(s.send(Method::POST, OUTBOUND, &token).json(&cc).send().await.unwrap(), 201).await;

    let list = json_with_status(s.get(OUTBOUND, &token).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(OUTBOUND_SECRET));
    let path = format!("{OUTBOUND}{id}/");
    let got = json_with_status(s.get(&path, &token).send().await.unwrap(), 200).await;
    assert_eq!(got, created);
    assert_eq!(s.app.outbound_client_secret(&id).await.unwrap().as_deref(), Some(OUTBOUND_SECRET));

    let r = s
        .send(Method::PATCH, &path, &token)
        .json(&json!({"client_secret": "rotated-secret", "scopes": ["read"]}))
        .send()
        .await
        .unwrap();
    let patched = json_with_status(r, 200).await;
    assert_eq!(patched["scopes"], json!(["read"]));
    assert_eq!(patched["client_id"], "endsystem-client");
    assert_eq!(s.app.outbound_client_secret(&id).await.unwrap().as_deref(), Some("rotated-secret"));
    assert_eq!(s.send(Method::DELETE, &path, &token).send().await.unwrap().status(), 204);
    api_error(s.get(&path, &token).send().await.unwrap(), 404, "not_found").await;

    let audit = s
        .app
        .store
        .audit_events(&keyward::store::AuditQuery { limit: 1000, ..Default::default() })
        .await
        .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        text.contains("outbound_client.created")
            && !text.contains(OUTBOUND_SECRET)
            && !text.contains("rotated-secret")
    );
}

async fn bad_input_names_the_field(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.reset_setting(Actor::Cli, OUTBOUND_ALLOW_PRIVATE).await.unwrap();
    let token = s.token_for_role(Role::ServerAdmin).await;
    for (field, value) in [
        ("token_url", json!("http://api.endsystem.com/token")),
        ("authorization_url", Value::Null),
        ("api_base_url", json!("not a url")),
        ("scope_separator", json!(";")),
        ("grant_type", json!("password")),
        ("refresh_token_lifetime_ms", json!(-1)),
        ("extra_token_params", json!({"grant_type": "x"})),
        ("client_secret", json!("")),
        // Loopback, private and metadata addresses, while the setting
        // keyward.outbound.allow_private_addresses is off (the default).
        ("token_url", json!("https://127.0.0.1/token")),
        ("api_base_url", json!("https://169.254.169.254/latest/")),
        ("authorization_url", json!("https://10.0.0.1/authorize")),
        ("api_base_url", json!("https://localhost:8443/")),
    ] {
        let mut body = reference_profile();
        body[field] = value;
        let r = s.send(Method::POST, OUTBOUND, &token).json(&body).send().await.unwrap();
        let d = api_error(r, 400, "invalid_request").await;
        assert!(d.contains(field), "{field}: {d}");
    }
    let steward = s.token_for_role(Role::Steward).await;
    api_error(
        s.send(Method::POST, OUTBOUND, &steward).json(&reference_profile()).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(json_with_status(s.get(OUTBOUND, &token).send().await.unwrap(), 200).await, json!([]));
}

/// Every secret keyward holds, in one store; then the dump is searched.
async fn a_database_dump_holds_no_secret(backend: Backend) {
    let s = TestServer::start(backend).await;
    let admin = s.admin_token().await;
    let mut secrets: Vec<String> =
        vec![ADMIN_PASSWORD.into(), MASTER_KEY.into(), OUTBOUND_SECRET.into(), admin.clone()];
    json_with_status(
        s.send(Method::POST, OUTBOUND, &admin).json(&reference_profile()).send().await.unwrap(),
        201,
    )
    .await;
    let (_, m2m_secret) = s.m2m_client("viewer", 600).await;
    secrets.push(m2m_secret);
    let r = s.send(Method::POST, "/oauth/v1/register/", &admin).json(&json!({"name": "app", "redirect_uris": ["https://app.example/cb"],
        "grant_type": "confidential", "refresh_token_lifetime": 259200, "access_token_lifetime": 3600, "pkce_enabled": true})).send().await.unwrap();
    secrets.push(json_with_status(r, 201).await["client_secret"].as_str().unwrap().to_string());
    let form = [("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "dump")];
    let refresh = json_with_status(
        s.http.post(s.url("/integration/v1/createRefreshToken/")).form(&form).send().await.unwrap(),
        201,
    )
    .await;
    secrets.push(refresh["refresh_token"].as_str().unwrap().to_string());
    s.app.audit.flush().await;

    let dump = crate::harness::database_dump(&s);
    assert!(dump.len() > 10_000, "a real dump");
    assert!(dump.contains("outbound_clients"), "the dump has the tables");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret:?} is in the dump in plain text");
    }
}

on_both_backends!(
    registry_with_a_write_only_secret,
    bad_input_names_the_field,
    a_database_dump_holds_no_secret
);

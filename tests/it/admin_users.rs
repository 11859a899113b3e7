//! `/admin/api/users/`: CRUD, bad input, the last-admin rule, audit.

use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::app::UserPatch;
use keyward::domain::{Actor, Role};
use reqwest::Method;
use serde_json::json;

const USERS: &str = "/admin/api/users/";

async fn user_count(s: &TestServer, token: &str) -> usize {
    json_with_status(s.get(USERS, token).send().await.unwrap(), 200).await.as_array().unwrap().len()
}

async fn create_read_update_delete(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;

    let r = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "Jane@Example.com", "password": "s3cret-pass", "role": "steward"}))
        .send()
        .await
        .unwrap();
    let jane = json_with_status(r, 201).await;
    assert_eq!(jane["username"], "Jane@Example.com");
    assert_eq!(jane["role"], "steward");
    assert_eq!(jane["auth_source"], "password");
    assert_eq!(jane["disabled"], false);
    assert!(jane.get("password").is_none() && jane.get("password_hash").is_none(), "{jane}");
    assert!(!jane.to_string().contains("s3cret-pass"));
    let id = jane["id"].as_i64().unwrap();

    // Usernames are unique regardless of case.
    let r = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "jane@example.COM", "password": "other-pass", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    api_error(r, 409, "conflict").await;

    let sso = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "sso-user", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(sso, 201).await["auth_source"], "sso");

    let path = format!("{USERS}{id}/");
    let got = json_with_status(s.get(&path, &token).send().await.unwrap(), 200).await;
    assert_eq!(got, jane);

    let list = json_with_status(s.get(&format!("{USERS}?limit=2"), &token).send().await.unwrap(), 200).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let list = json_with_status(s.get(&format!("{USERS}?offset=1"), &token).send().await.unwrap(), 200).await;
    assert!(list.as_array().unwrap().iter().any(|u| u["id"] == id));

    let r = s
        .send(Method::PATCH, &path, &token)
        .json(&json!({"role": "catalog_admin", "disabled": true}))
        .send()
        .await
        .unwrap();
    let patched = json_with_status(r, 200).await;
    assert_eq!(patched["role"], "catalog_admin");
    assert_eq!(patched["disabled"], true);
    let r = s
        .send(Method::PATCH, &path, &token)
        .json(&json!({"disabled": false, "password": "new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(r, 200).await["disabled"], false);
    let stored = s.app.store.user_credentials("jane@example.com").await.unwrap().unwrap().1.unwrap();
    assert!(s.app.passwords.verify("new-password", Some(&stored)).await);

    let r = s.send(Method::DELETE, &path, &token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    api_error(s.get(&path, &token).send().await.unwrap(), 404, "not_found").await;
    api_error(s.send(Method::DELETE, &path, &token).send().await.unwrap(), 404, "not_found").await;

    let audit =
        json_with_status(s.get("/admin/api/audit/?limit=1000", &token).send().await.unwrap(), 200).await;
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["user.created", "user.updated", "user.deleted"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    assert!(!audit.to_string().contains("s3cret-pass") && !audit.to_string().contains("new-password"));
    let target = format!("user:{id}");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user.deleted" && e["target"] == target.as_str())
    );
}

async fn bad_input_is_4xx_and_changes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let before = user_count(&s, &token).await;
    let post = || s.send(Method::POST, USERS, &token);

    let r = post().header("content-type", "application/json").body("{not json").send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = post()
        .header("content-type", "text/plain")
        .body(r#"{"username":"a","role":"viewer"}"#)
        .send()
        .await
        .unwrap();
    api_error(r, 415, "unsupported_media_type").await;
    let r = post().body(r#"{"username":"a","role":"viewer"}"#).send().await.unwrap();
    api_error(r, 415, "unsupported_media_type").await;
    let big = json!({"username": "big", "role": "viewer", "password": "x".repeat(70 * 1024)});
    let r = post().json(&big).send().await.unwrap();
    api_error(r, 413, "payload_too_large").await;
    let r = post()
        .json(&json!({"username": "a", "password": "password-1", "role": "wizard"}))
        .send()
        .await
        .unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("role") && detail.contains("wizard"), "{detail}");
    let r = post()
        .json(&json!({"username": "a", "password": "password-1", "role": "viewer", "admin": true}))
        .send()
        .await
        .unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("admin"), "{detail}");
    let r = post().json(&json!({"password": "password-1", "role": "viewer"})).send().await.unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("username"), "{detail}");
    let r = post()
        .json(&json!({"username": "has space", "password": "password-1", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = post()
        .json(&json!({"username": "x".repeat(151), "password": "password-1", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = post()
        .json(&json!({"username": "shortpw", "password": "short", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("password"), "{detail}");
    // A guessable password, the username among them, is refused too.
    for guessable in ["password", "12345678", "WeakPass1"] {
        let user = json!({"username": "weakpass1", "password": guessable, "role": "viewer"});
        let detail = api_error(post().json(&user).send().await.unwrap(), 400, "invalid_request").await;
        assert!(detail.contains("too easy to guess"), "{detail}");
    }
    let r = post().json(&json!({"username": 5, "role": "viewer"})).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = post().json(&json!([1, 2])).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;

    api_error(s.get(&format!("{USERS}abc/"), &token).send().await.unwrap(), 400, "invalid_request").await;
    api_error(
        s.get(&format!("{USERS}99999999999999999999/"), &token).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    api_error(s.get(&format!("{USERS}424242/"), &token).send().await.unwrap(), 404, "not_found").await;
    api_error(s.get(&format!("{USERS}?limit=0"), &token).send().await.unwrap(), 400, "invalid_request").await;
    api_error(s.get(&format!("{USERS}?limit=abc"), &token).send().await.unwrap(), 400, "invalid_request")
        .await;
    api_error(s.get(&format!("{USERS}?offset=-1"), &token).send().await.unwrap(), 400, "invalid_request")
        .await;
    api_error(s.get(&format!("{USERS}?sort=name"), &token).send().await.unwrap(), 400, "invalid_request")
        .await;
    let patch = |id: i64, body: serde_json::Value| {
        s.send(Method::PATCH, &format!("{USERS}{id}/"), &token).json(&body).send()
    };
    api_error(patch(424242, json!({"role": "viewer"})).await.unwrap(), 404, "not_found").await;
    let admin_id = s.user_named("admin").await.id;
    api_error(patch(admin_id, json!({"role": "root"})).await.unwrap(), 400, "invalid_request").await;
    api_error(patch(admin_id, json!({"password": "short"})).await.unwrap(), 400, "invalid_request").await;
    let r = patch(admin_id, json!({"password": "qwertyuiop"})).await.unwrap();
    assert!(api_error(r, 400, "invalid_request").await.contains("too easy to guess"));

    assert_eq!(user_count(&s, &token).await, before);
    let admin = s.user_named("admin").await;
    assert_eq!(admin.role, Role::ServerAdmin);
    let hash = s.app.store.user_credentials("admin").await.unwrap().unwrap().1.unwrap();
    assert!(s.app.passwords.verify(crate::harness::ADMIN_PASSWORD, Some(&hash)).await);
}

async fn the_last_server_admin_cannot_be_removed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let admin_id = s.user_named("admin").await.id;
    let path = format!("{USERS}{admin_id}/");
    for body in [json!({"role": "catalog_admin"}), json!({"disabled": true})] {
        let r = s.send(Method::PATCH, &path, &token).json(&body).send().await.unwrap();
        let detail = api_error(r, 409, "conflict").await;
        assert!(detail.contains("server_admin"), "{detail}");
    }
    api_error(s.send(Method::DELETE, &path, &token).send().await.unwrap(), 409, "conflict").await;
    let admin = json_with_status(s.get(&path, &token).send().await.unwrap(), 200).await;
    assert_eq!(admin["role"], "server_admin");
    assert_eq!(admin["disabled"], false);

    // With a second admin, the first may step down.
    let r = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "admin2", "password": "password-2", "role": "server_admin"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let r = s.send(Method::PATCH, &path, &token).json(&json!({"role": "viewer"})).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["role"], "viewer");
}

async fn concurrent_demotions_leave_one_admin(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let r = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "admin2", "password": "password-2", "role": "server_admin"}))
        .send()
        .await
        .unwrap();
    let second = json_with_status(r, 201).await["id"].as_i64().unwrap();
    let first = s.user_named("admin").await.id;
    // Straight at the app layer, so that neither request is refused by the
    // gate for having been demoted by the other one.
    let demote = |id: i64| {
        let patch = UserPatch { role: Some(Role::Viewer), ..Default::default() };
        s.app.update_user(Actor::System, id, patch)
    };
    let (a, b) = tokio::join!(demote(first), demote(second));
    assert!(a.is_ok() != b.is_ok(), "exactly one demotion succeeds: {a:?} {b:?}");
    let refused = a.err().or(b.err()).unwrap();
    assert!(matches!(refused, keyward::app::AppError::Conflict(_)), "{refused:?}");
    let users = s.app.store.list_users(100, 0).await.unwrap();
    assert_eq!(users.iter().filter(|u| u.role == Role::ServerAdmin && !u.disabled).count(), 1);
}

async fn audit_can_be_filtered(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    let r = s
        .send(Method::POST, USERS, &token)
        .json(&json!({"username": "audited", "password": "password-2", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let events =
        json_with_status(s.get("/admin/api/audit/?action=user.created", &token).send().await.unwrap(), 200)
            .await;
    let events = events.as_array().unwrap();
    assert!(events.len() >= 2, "first admin and 'audited': {events:?}");
    assert!(events.iter().all(|e| e["action"] == "user.created"));
    assert!(events.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");
    let newest = events[0]["id"].as_i64().unwrap();
    let older = json_with_status(
        s.get(&format!("/admin/api/audit/?before_id={newest}"), &token).send().await.unwrap(),
        200,
    )
    .await;
    assert!(older.as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < newest));
    let by_system = json_with_status(
        s.get("/admin/api/audit/?actor=system&action=user.created", &token).send().await.unwrap(),
        200,
    )
    .await;
    assert!(by_system.as_array().unwrap().iter().any(|e| e["detail"]["username"] == "admin"));
    api_error(s.get("/admin/api/audit/?limit=5000", &token).send().await.unwrap(), 400, "invalid_request")
        .await;
    api_error(s.get("/admin/api/audit/?before_id=x", &token).send().await.unwrap(), 400, "invalid_request")
        .await;
}

on_both_backends!(
    create_read_update_delete,
    bad_input_is_4xx_and_changes_nothing,
    the_last_server_admin_cannot_be_removed,
    concurrent_demotions_leave_one_admin,
    audit_can_be_filtered,
    audit_batches_keep_each_event_whole_and_in_order,
);

/// The batched audit writer's one statement (the events as a JSON array the
/// database unpacks) keeps every field as it was, nulls as nulls, text
/// that looks like JSON as text, and the events' order; up to its largest
/// batch.
async fn audit_batches_keep_each_event_whole_and_in_order(backend: Backend) {
    use keyward::domain::audit::{AuditEvent, Outcome};
    let s = TestServer::start(backend).await;
    let odd = "quote \" backslash \\ é 😀 {\"not\": \"json\"} \t tab";
    let mut events = vec![
        AuditEvent::success(Actor::Client("c-1".into()), "token.issued", odd)
            .with_detail(json!({"n": [1, "x"]})),
        AuditEvent {
            actor: Actor::System,
            action: "login.failed",
            target: None,
            outcome: Outcome::Failure,
            client_addr: Some("2001:db8::1".into()),
            detail: serde_json::Value::Null,
        },
    ];
    events.extend((0..998).map(|i| AuditEvent::success(Actor::System, "test.batch", format!("n:{i}"))));
    s.app.store.append_audit_batch(events).await.unwrap();
    let query = |action: &str| keyward::store::AuditQuery {
        action: Some(action.into()),
        limit: 1000,
        ..Default::default()
    };
    let issued = s.app.store.audit_events(&query("token.issued")).await.unwrap();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].actor, "client:c-1");
    assert_eq!(issued[0].target.as_deref(), Some(odd));
    assert_eq!((issued[0].outcome.as_str(), issued[0].client_addr.as_deref()), ("success", None));
    assert_eq!(issued[0].detail, json!({"n": [1, "x"]}));
    let failed = s.app.store.audit_events(&query("login.failed")).await.unwrap();
    assert_eq!((failed[0].target.as_deref(), failed[0].outcome.as_str()), (None, "failure"));
    assert_eq!(failed[0].client_addr.as_deref(), Some("2001:db8::1"));
    assert_eq!(failed[0].detail, json!({}));
    assert!(failed[0].id > issued[0].id);
    let batch = s.app.store.audit_events(&query("test.batch")).await.unwrap();
    let targets: Vec<String> = batch.iter().rev().map(|e| e.target.clone().unwrap()).collect();
    assert_eq!(targets, (0..998).map(|i| format!("n:{i}")).collect::<Vec<_>>(), "in order");
}

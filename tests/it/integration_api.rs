//! `/integration/v1/…`: refresh tokens and API access tokens (SPEC §1.3).

use crate::harness::{ADMIN_PASSWORD, Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use keyward::app::UserPatch;
use keyward::domain::{Actor, Role};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const V1: &str = "/integration/v1";

impl TestServer {
    pub async fn integration(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url(&format!("{V1}/{endpoint}/"))).form(form).send().await.unwrap()
    }

    /// A refresh token of `username` (password `password`).
    pub async fn refresh_token(&self, username: &str, password: &str) -> Value {
        let r = self
            .integration(
                "createRefreshToken",
                &[("username", username), ("password", password), ("name", "t")],
            )
            .await;
        json_with_status(r, 201).await
    }

    pub async fn api_access_token(&self, refresh: &Value) -> Value {
        let user_id = refresh["user_id"].to_string();
        let r = self
            .integration(
                "createAPIAccessToken",
                &[("refresh_token", refresh["refresh_token"].as_str().unwrap()), ("user_id", &user_id)],
            )
            .await;
        json_with_status(r, 201).await
    }
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

async fn the_documented_flow(backend: Backend) {
    let s = TestServer::start(backend).await;
    let refresh = s.refresh_token("admin", ADMIN_PASSWORD).await;
    let user_id = s.user_named("admin").await.id;
    assert_eq!(refresh["user_id"], user_id);
    assert_eq!(refresh["name"], "t");
    assert_eq!(refresh["token_status"], "ACTIVE");
    assert_eq!(refresh["last_used_at"], Value::Null);
    let rt = refresh["refresh_token"].as_str().unwrap().to_string();
    assert!(rt.starts_with("kwrt_") && rt.len() >= 48);
    let lifespan = time_of(&refresh["token_expires_at"]) - time_of(&refresh["created_at"]);
    assert_eq!(lifespan.whole_days(), 60);
    let uid = user_id.to_string();

    let r = s.integration("validateRefreshToken", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    let valid = json_with_status(r, 200).await;
    assert_eq!((valid["token_status"].clone(), valid["name"].clone()), (json!("ACTIVE"), json!("t")));

    let first = s.api_access_token(&refresh).await;
    assert_eq!(first["token_status"], "ACTIVE");
    let lifespan = time_of(&first["token_expires_at"]) - time_of(&first["created_at"]);
    assert_eq!(lifespan.whole_hours(), 24);
    let first_token = first["api_access_token"].as_str().unwrap().to_string();
    json_with_status(s.get("/admin/api/users/", &first_token).send().await.unwrap(), 200).await;

    // A second access token revokes the first.
    let second = s.api_access_token(&refresh).await;
    let second_token = second["api_access_token"].as_str().unwrap().to_string();
    let d =
        api_error(s.get("/admin/api/users/", &first_token).send().await.unwrap(), 401, "unauthorized").await;
    assert!(d.contains("revoked"), "{d}");
    json_with_status(s.get("/admin/api/users/", &second_token).send().await.unwrap(), 200).await;
    let r = s
        .integration("validateAPIAccessToken", &[("api_access_token", &first_token), ("user_id", &uid)])
        .await;
    assert_eq!(json_with_status(r, 401).await["token_status"], "REVOKED");
    let r = s
        .integration("validateAPIAccessToken", &[("api_access_token", &second_token), ("user_id", &uid)])
        .await;
    assert_eq!(json_with_status(r, 200).await["api_access_token"], second_token.as_str());

    // last_used_at is written in batches, not per request.
    s.app.usage.flush(&s.app.store).await;
    let r = s
        .integration("validateAPIAccessToken", &[("api_access_token", &second_token), ("user_id", &uid)])
        .await;
    assert!(json_with_status(r, 200).await["last_used_at"].is_string());

    let r = s.integration("revokeAPIAccessTokens", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    assert_eq!(
        json_with_status(r, 200).await["detail"],
        format!("Revoked active access tokens for user: '{uid}'")
    );
    api_error(s.get("/admin/api/users/", &second_token).send().await.unwrap(), 401, "unauthorized").await;

    // Regenerating revokes the old refresh token and what it made.
    let third = s.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    let r = s.integration("regenRefreshToken", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    let regen = json_with_status(r, 201).await;
    assert_eq!(regen["name"], "t");
    assert_ne!(regen["refresh_token"], rt.as_str());
    api_error(s.get("/admin/api/users/", &third).send().await.unwrap(), 401, "unauthorized").await;
    let r = s.integration("validateRefreshToken", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    assert_eq!(json_with_status(r, 401).await["token_status"], "REVOKED");
    let r = s.integration("createAPIAccessToken", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    assert_eq!(json_with_status(r, 401).await["token_status"], "REVOKED");
    s.api_access_token(&regen).await;

    s.app.audit.flush().await;
    let admin = s.api_access_token(&regen).await["api_access_token"].as_str().unwrap().to_string();
    let audit =
        json_with_status(s.get("/admin/api/audit/?limit=1000", &admin).send().await.unwrap(), 200).await;
    let text = audit.to_string();
    for action in [
        "refresh_token.created",
        "refresh_token.regenerated",
        "api_access_token.created",
        "api_access_token.revoked",
        "token.validation_failed",
    ] {
        assert!(text.contains(action), "{action}");
    }
    assert!(!text.contains(&rt) && !text.contains(&first_token) && !text.contains(ADMIN_PASSWORD));
    // Anyone may name any user id with a bad token: that is no act of the user's.
    let failed =
        audit.as_array().unwrap().iter().find(|e| e["action"] == "token.validation_failed").unwrap().clone();
    assert_eq!(failed["actor"], "system", "{failed}");
    assert_eq!(failed["target"], format!("user:{uid}"));
}

async fn json_bodies_work_too(backend: Backend) {
    let s = TestServer::start(backend).await;
    let url = s.url(&format!("{V1}/createRefreshToken/"));
    let r = s
        .http
        .post(&url)
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD, "name": "json"}))
        .send()
        .await
        .unwrap();
    let refresh = json_with_status(r, 201).await;
    // user_id as a JSON number and as a string.
    for user_id in [refresh["user_id"].clone(), json!(refresh["user_id"].to_string())] {
        let r = s
            .http
            .post(s.url(&format!("{V1}/validateRefreshToken/")))
            .json(&json!({"refresh_token": refresh["refresh_token"], "user_id": user_id}))
            .send()
            .await
            .unwrap();
        json_with_status(r, 200).await;
    }
}

async fn every_documented_error(backend: Backend) {
    let s = TestServer::start(backend).await;
    let refresh = s.refresh_token("admin", ADMIN_PASSWORD).await;
    let rt = refresh["refresh_token"].as_str().unwrap().to_string();
    let uid = refresh["user_id"].to_string();

    // 400: missing fields, a user_id that is not a number, malformed JSON, a field twice.
    let d = api_error(
        s.integration("createRefreshToken", &[("username", "admin"), ("password", ADMIN_PASSWORD)]).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(d.contains("name"), "{d}");
    let d = api_error(
        s.integration("createAPIAccessToken", &[("refresh_token", &rt), ("user_id", "abc")]).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(d.contains("user_id"), "{d}");
    api_error(s.integration("validateRefreshToken", &[("user_id", &uid)]).await, 400, "invalid_request")
        .await;
    api_error(
        s.integration(
            "createAPIAccessToken",
            &[("refresh_token", &rt), ("user_id", &uid), ("user_id", &uid)],
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    let r = s
        .http
        .post(s.url(&format!("{V1}/validateRefreshToken/")))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .http
        .post(s.url(&format!("{V1}/validateRefreshToken/")))
        .json(&json!({"refresh_token": {"a": 1}, "user_id": 1}))
        .send()
        .await
        .unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .integration(
            "createRefreshToken",
            &[("username", "admin"), ("password", ADMIN_PASSWORD), ("name", &"n".repeat(300))],
        )
        .await;
    api_error(r, 400, "invalid_request").await;
    // 415: another content type.
    let r = s
        .http
        .post(s.url(&format!("{V1}/validateRefreshToken/")))
        .body("refresh_token=x")
        .send()
        .await
        .unwrap();
    api_error(r, 415, "unsupported_media_type").await;

    // 401: the same answer for an unknown user and a wrong password.
    let wrong = api_error(
        s.integration(
            "createRefreshToken",
            &[("username", "admin"), ("password", "wrong-password"), ("name", "x")],
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    let unknown = api_error(
        s.integration(
            "createRefreshToken",
            &[("username", "nobody"), ("password", "wrong-password"), ("name", "x")],
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong, unknown);
    // SSO-only accounts cannot use it, and are not told apart either.
    s.app.create_user(Actor::System, "sso-user", None, Role::Viewer).await.unwrap();
    let sso = api_error(
        s.integration(
            "createRefreshToken",
            &[("username", "sso-user"), ("password", "anything-at-all"), ("name", "x")],
        )
        .await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(sso, wrong);
    assert!(sso.contains("/account/auth"));
    // Another user's token is refused exactly like an unknown one.
    let other =
        s.app.create_user(Actor::System, "other", Some("other-password"), Role::Viewer).await.unwrap();
    let foreign = api_error(
        s.integration("validateRefreshToken", &[("refresh_token", &rt), ("user_id", &other.id.to_string())])
            .await,
        401,
        "unauthorized",
    )
    .await;
    let missing = api_error(
        s.integration("validateRefreshToken", &[("refresh_token", "kwrt_nope"), ("user_id", &uid)]).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(foreign, missing);
    let r = s
        .integration("validateAPIAccessToken", &[("api_access_token", "kwat_nope"), ("user_id", &uid)])
        .await;
    assert!(json_with_status(r, 401).await.get("token_status").is_none());

    // 401 with EXPIRED: an access token past its lifespan.
    let admin = s.user_named("admin").await;
    let expired = s.token_with_expiry(&admin, -5).await;
    let r =
        s.integration("validateAPIAccessToken", &[("api_access_token", &expired), ("user_id", &uid)]).await;
    let body = json_with_status(r, 401).await;
    assert_eq!(body["token_status"], "EXPIRED");
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    // 403: a valid token of a disabled account.
    let other_refresh = s.refresh_token("other", "other-password").await;
    s.app
        .update_user(Actor::System, other.id, UserPatch { disabled: Some(true), ..Default::default() })
        .await
        .unwrap();
    let r = s
        .integration(
            "createAPIAccessToken",
            &[
                ("refresh_token", other_refresh["refresh_token"].as_str().unwrap()),
                ("user_id", &other.id.to_string()),
            ],
        )
        .await;
    api_error(r, 403, "forbidden").await;

    // 404: no such endpoint (paths are exact).
    api_error(s.integration("createRefreshTokens", &[]).await, 404, "not_found").await;
    api_error(
        s.http.post(s.url(&format!("{V1}/createRefreshToken"))).form(&[("a", "b")]).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;

    // 500: the database gone; the answer tells nothing of the cause.
    s.app.store.close().await;
    let r = s.integration("createAPIAccessToken", &[("refresh_token", &rt), ("user_id", &uid)]).await;
    assert_eq!(api_error(r, 500, "internal_error").await, "internal error");
}

async fn lifespans_follow_the_settings(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app
        .set_setting(Actor::Cli, "alation.authentication.token.refresh_token_lifespan", "180")
        .await
        .unwrap();
    s.app.set_setting(Actor::Cli, "alation.authentication.token.access_token_lifespan", "2").await.unwrap();
    let refresh = s.refresh_token("admin", ADMIN_PASSWORD).await;
    assert_eq!((time_of(&refresh["token_expires_at"]) - time_of(&refresh["created_at"])).whole_days(), 180);
    let access = s.api_access_token(&refresh).await;
    assert_eq!((time_of(&access["token_expires_at"]) - time_of(&access["created_at"])).whole_hours(), 2);
}

async fn brute_force_is_throttled_per_address(backend: Backend) {
    let s = TestServer::start(backend).await;
    let attempt = |client: &reqwest::Client, password: &str| {
        let url = s.url(&format!("{V1}/createRefreshToken/"));
        client.post(url).form(&[("username", "admin"), ("password", password), ("name", "bf")]).send()
    };
    let here = reqwest::Client::builder()
        .local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let there = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(attempt(&here, "wrong-password").await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "the limit engages: {statuses:?}");
    // Locked at this address even with the right password …
    let r = attempt(&here, ADMIN_PASSWORD).await.unwrap();
    let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    api_error(r, 429, "too_many_requests").await;
    // … while the right password still works from another address.
    json_with_status(attempt(&there, ADMIN_PASSWORD).await.unwrap(), 201).await;
    s.app.audit.flush().await;
    let failed = s
        .app
        .store
        .audit_events(&keyward::store::AuditQuery {
            action: Some("login.failed".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    // Repeated failures are one record with a count.
    let attempts: i64 = failed.iter().map(|e| e.detail["repeated"].as_i64().unwrap_or(1)).sum();
    assert!(attempts >= 9, "{failed:?}");
    assert!(failed.iter().all(|e| e.client_addr.as_deref() == Some("127.0.0.1")));
}

async fn a_new_access_token_revokes_the_old_on_every_node(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let refresh = a.refresh_token("admin", ADMIN_PASSWORD).await;
    let old = a.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    json_with_status(b.get("/admin/api/users/", &old).send().await.unwrap(), 200).await;
    let new = b.api_access_token(&refresh).await["api_access_token"].as_str().unwrap().to_string();
    api_error(a.get("/admin/api/users/", &old).send().await.unwrap(), 401, "unauthorized").await;
    api_error(b.get("/admin/api/users/", &old).send().await.unwrap(), 401, "unauthorized").await;
    json_with_status(a.get("/admin/api/users/", &new).send().await.unwrap(), 200).await;
}

async fn concurrent_regenerations_leave_one_winner(backend: Backend) {
    let s = TestServer::start(backend).await;
    let refresh = s.refresh_token("admin", ADMIN_PASSWORD).await;
    let (rt, uid) = (refresh["refresh_token"].as_str().unwrap().to_string(), refresh["user_id"].to_string());
    let form = [("refresh_token", rt.as_str()), ("user_id", uid.as_str())];
    let (a, b) =
        tokio::join!(s.integration("regenRefreshToken", &form), s.integration("regenRefreshToken", &form));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 401]);
}

on_both_backends!(
    the_documented_flow,
    json_bodies_work_too,
    every_documented_error,
    lifespans_follow_the_settings,
    brute_force_is_throttled_per_address,
    a_new_access_token_revokes_the_old_on_every_node,
    concurrent_regenerations_leave_one_winner,
);

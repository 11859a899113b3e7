//! The vault: data products, warehouse credentials (SPEC §1.2, §4), with a
//! real PostgreSQL as the warehouse.

use crate::harness::{Backend, TestServer, api_error, json_with_status, postgres_admin_url};
use crate::on_both_backends;
use keyward::domain::Role;
use keyward::store::AuditQuery;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

/// A warehouse: a new login role with a password and a database it owns.
pub(crate) async fn warehouse() -> (String, String, String, u16, String) {
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let suffix = keyward::crypto::random_bytes::<6>().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (role, password, database) =
        (format!("wh_{suffix}"), format!("pw-{suffix}-warehouse"), format!("whdb_{suffix}"));
    for sql in [
        format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        format!("CREATE DATABASE {database} OWNER {role}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    let url = url::Url::parse(&admin).unwrap();
    (role, password, url.host_str().unwrap().to_string(), url.port().unwrap_or(5432), database)
}

pub(crate) async fn data_product(s: &TestServer, dp_id: &str, host: &str, port: u16, database: &str) {
    let admin = s.admin_token().await;
    let body = json!({"dp_id": dp_id, "name": "Sales", "warehouse": {"kind": "postgresql", "host": host, "port": port, "database": database}});
    json_with_status(
        s.send(Method::POST, "/admin/api/data_products/", &admin).json(&body).send().await.unwrap(),
        201,
    )
    .await;
}

async fn the_reference_curl_and_verification(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (role, password, host, port, database) = warehouse().await;
    data_product(&s, "SALES_DP", &host, port, &database).await;
    let (id, secret) = s.m2m_client("viewer", 900).await;
    let token = s.client_jwt(&id, &secret).await;
    // curl -X POST ".../api/v2/auth/credentials/" -H "Authorization: Bearer <access_token>"
    //   -H "Content-Type: application/json" -d '{ "state": …, "username": …, "password": …, "dp_id": … }'
    let r = s.http.post(s.url("/api/v2/auth/credentials/")).header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(format!(r#"{{ "state": "unique_identifier", "username": "{role}", "password": "{password}", "dp_id": "SALES_DP" }}"#))
        .send().await.unwrap();
    let stored = json_with_status(r, 201).await;
    assert_eq!((stored["dp_id"].clone(), stored["username"].clone()), (json!("SALES_DP"), json!(role)));
    assert!(!stored.to_string().contains(&password));

    // verify: a real login at the warehouse.
    let r = s.http.post(s.url("/api/v2/auth/credentials/")).bearer_auth(&token)
        .json(&json!({"state": "s2", "username": role, "password": password, "dp_id": "SALES_DP", "verify": true})).send().await.unwrap();
    assert_eq!(json_with_status(r, 201).await["verified"], true);
    let r = s.http.post(s.url("/api/v2/auth/credentials/")).bearer_auth(&token)
        .json(&json!({"state": "s3", "username": role, "password": "wrong-password-xyz", "dp_id": "SALES_DP", "verify": true})).send().await.unwrap();
    let d = api_error(r, 400, "invalid_request").await;
    assert!(d.contains("password authentication failed"), "the warehouse's error: {d}");
    assert!(!d.contains("wrong-password-xyz"));
    // The failed attempt changed nothing.
    let list = json_with_status(
        s.http.get(s.url("/api/v2/auth/credentials/")).bearer_auth(&token).send().await.unwrap(),
        200,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "s2");
    assert!(!list.to_string().contains(&password));
}

async fn bad_input_and_ownership(backend: Backend) {
    let s = TestServer::start(backend).await;
    data_product(&s, "dp1", "127.0.0.1", 5432, "warehouse").await;
    let user = s.token_for_role(Role::Viewer).await;
    let post = |body: Value| s.send(Method::POST, "/api/v2/auth/credentials/", &user).json(&body).send();
    let full = json!({"state": "s", "username": "u", "password": "p", "dp_id": "dp1"});
    let mut unknown = full.clone();
    unknown["dp_id"] = json!("nope");
    api_error(post(unknown).await.unwrap(), 404, "not_found").await;
    for field in ["state", "username", "password", "dp_id"] {
        let mut missing = full.clone();
        missing.as_object_mut().unwrap().remove(field);
        let d = api_error(post(missing).await.unwrap(), 400, "invalid_request").await;
        assert!(d.contains(field), "{field}: {d}");
    }
    api_error(
        s.http.post(s.url("/api/v2/auth/credentials/")).json(&full).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    json_with_status(post(full.clone()).await.unwrap(), 201).await;
    // Replacing, listing and deleting one's own.
    let mut again = full.clone();
    again["username"] = json!("u2");
    json_with_status(post(again).await.unwrap(), 201).await;
    let mine = json_with_status(s.get("/api/v2/auth/credentials/", &user).send().await.unwrap(), 200).await;
    assert_eq!((mine.as_array().unwrap().len(), mine[0]["username"].clone()), (1, json!("u2")));
    let other = s.token_for_role(Role::Viewer).await;
    assert_eq!(
        json_with_status(s.get("/api/v2/auth/credentials/", &other).send().await.unwrap(), 200).await,
        json!([])
    );
    api_error(
        s.send(Method::DELETE, "/api/v2/auth/credentials/dp1/", &other).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        s.send(Method::DELETE, "/api/v2/auth/credentials/dp1/", &user).send().await.unwrap().status(),
        204
    );
    // Data products are for server admins.
    let r = s
        .send(Method::POST, "/admin/api/data_products/", &user)
        .json(&json!({"dp_id": "x", "name": "x",
        "warehouse": {"kind": "postgresql", "host": "h", "port": 1, "database": "d"}}))
        .send()
        .await
        .unwrap();
    api_error(r, 403, "forbidden").await;
    let admin = s.admin_token().await;
    for bad in [
        json!({"dp_id": "a b", "name": "x", "warehouse": {"kind": "postgresql", "host": "h", "port": 1, "database": "d"}}),
        json!({"dp_id": "x", "name": "x", "warehouse": {"kind": "postgresql", "host": "h", "port": 0, "database": "d"}}),
        json!({"dp_id": "x", "name": "x", "warehouse": {"kind": "oracle", "host": "h", "port": 1, "database": "d"}}),
        json!({"dp_id": "x", "name": "x", "warehouse": {"kind": "postgresql", "host": "h", "port": 1, "database": "d", "password": "no"}}),
    ] {
        api_error(
            s.send(Method::POST, "/admin/api/data_products/", &admin).json(&bad).send().await.unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    api_error(
        s.send(Method::POST, "/admin/api/data_products/", &admin)
            .json(&json!({"dp_id": "dp1", "name": "x",
        "warehouse": {"kind": "postgresql", "host": "h", "port": 1, "database": "d"}}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
}

async fn only_service_identities_read_credentials(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (role, password, host, port, database) = warehouse().await;
    data_product(&s, "dp1", &host, port, &database).await;
    let user = s.token_for_role(Role::Steward).await;
    let r = s
        .send(Method::POST, "/api/v2/auth/credentials/", &user)
        .json(&json!({"state": "s", "username": role, "password": password, "dp_id": "dp1", "verify": true}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    let me =
        s.app.store.list_users(100, 0).await.unwrap().into_iter().find(|u| u.role == Role::Steward).unwrap();
    let body = json!({"principal": format!("user:{}", me.id), "dp_id": "dp1"});

    api_error(
        s.send(Method::POST, "/internal/v1/credentials/", &user).json(&body).send().await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    let (tool_id, tool_secret) = s.m2m_client("viewer", 600).await;
    let tool = s.client_jwt(&tool_id, &tool_secret).await;
    let read = || s.http.post(s.url("/internal/v1/credentials/")).bearer_auth(&tool).json(&body).send();
    api_error(read().await.unwrap(), 403, "forbidden").await;
    let admin = s.admin_token().await;
    json_with_status(s.patch_m2m_client(&tool_id, &admin, json!({"is_service": true})).await, 200).await;
    let r = read().await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let login = json_with_status(r, 200).await;
    assert_eq!((login["username"].clone(), login["password"].clone()), (json!(role), json!(password)));
    assert_eq!(login["warehouse"]["database"], database.as_str());
    // The platform's SQL tool can log in with what it got.
    let url = format!("postgres://{role}:{password}@{host}:{port}/{database}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);

    let audit = |action: &'static str| {
        let s = &s;
        async move {
            s.app
                .store
                .audit_events(&AuditQuery { action: Some(action.into()), limit: 10, ..Default::default() })
                .await
                .unwrap()
        }
    };
    let refused = audit("credential.read_refused").await;
    assert_eq!(refused.len(), 2);
    let read_events = audit("credential.read").await;
    assert_eq!(read_events.len(), 1);
    assert_eq!(read_events[0].actor, format!("client:{tool_id}"));
    assert_eq!(read_events[0].detail["for_principal"], format!("user:{}", me.id));
    assert_eq!(read_events[0].target.as_deref(), Some("data_product:dp1"));
    assert!(!crate::harness::database_dump(&s).contains(&password), "no password in a dump");
}

on_both_backends!(
    the_reference_curl_and_verification,
    bad_input_and_ownership,
    only_service_identities_read_credentials
);

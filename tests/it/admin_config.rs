//! `/admin/api/config/{key}/`: settings shared by every node.

use crate::harness::{Backend, TestServer, api_error, json_with_status};
use crate::on_both_backends;
use reqwest::Method;
use serde_json::json;

const REFRESH: &str = "/admin/api/config/alation.authentication.token.refresh_token_lifespan/";
const SWAGGER: &str = "/admin/api/config/alation.feature_flags.enable_swagger/";

async fn read_change_and_reset(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;

    let got = json_with_status(s.get(REFRESH, &token).send().await.unwrap(), 200).await;
    assert_eq!(got["value"], 60);
    assert_eq!(got["is_default"], true);

    let r = s.send(Method::PUT, REFRESH, &token).json(&json!({"value": 180})).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], 180);
    let got = json_with_status(s.get(REFRESH, &token).send().await.unwrap(), 200).await;
    assert_eq!((got["value"].clone(), got["is_default"].clone()), (json!(180), json!(false)));
    let r = s.send(Method::PUT, REFRESH, &token).json(&json!({"value": "90"})).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], 90);

    let r = s.send(Method::PUT, SWAGGER, &token).json(&json!({"value": "True"})).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], true);
    assert!(s.app.setting("alation.feature_flags.enable_swagger").await.unwrap().as_bool());

    let all = json_with_status(s.get("/admin/api/config/", &token).send().await.unwrap(), 200).await;
    let keys: Vec<&str> = all.as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"alation.authentication.token.access_token_lifespan"), "{keys:?}");

    let r = s.send(Method::DELETE, REFRESH, &token).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], 60);

    let audit =
        json_with_status(s.get("/admin/api/audit/?action=config.changed", &token).send().await.unwrap(), 200)
            .await;
    assert_eq!(lifespan_changes(&audit), 3);
}

async fn bad_values_are_400_and_change_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let token = s.admin_token().await;
    for value in [json!(0), json!(3651), json!("abc"), json!(1.5), json!(null), json!({"x": 1}), json!([1])] {
        let r = s.send(Method::PUT, REFRESH, &token).json(&json!({"value": value})).send().await.unwrap();
        api_error(r, 400, "invalid_request").await;
    }
    let r = s.send(Method::PUT, REFRESH, &token).json(&json!({"value": 0})).send().await.unwrap();
    let detail = api_error(r, 400, "invalid_request").await;
    assert!(detail.contains("1 to 3650") && detail.contains("days"), "{detail}");
    let r = s.send(Method::PUT, SWAGGER, &token).json(&json!({"value": "maybe"})).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s.send(Method::PUT, REFRESH, &token).json(&json!({"val": 5})).send().await.unwrap();
    api_error(r, 400, "invalid_request").await;
    let r = s
        .send(Method::PUT, "/admin/api/config/alation.unknown/", &token)
        .json(&json!({"value": 5}))
        .send()
        .await
        .unwrap();
    api_error(r, 404, "not_found").await;
    api_error(s.get("/admin/api/config/nope/", &token).send().await.unwrap(), 404, "not_found").await;

    let got = json_with_status(s.get(REFRESH, &token).send().await.unwrap(), 200).await;
    assert_eq!(got["is_default"], true);
    let audit =
        json_with_status(s.get("/admin/api/audit/?action=config.changed", &token).send().await.unwrap(), 200)
            .await;
    assert_eq!(lifespan_changes(&audit), 0);
}

/// Audit records of changes the test made (the harness itself sets
/// `keyward.outbound.allow_private_addresses` at start).
fn lifespan_changes(audit: &serde_json::Value) -> usize {
    audit.as_array().unwrap().iter().filter(|e| !e.to_string().contains("allow_private_addresses")).count()
}

async fn nodes_see_each_others_changes(backend: Backend) {
    let a = TestServer::start(backend).await;
    let b = a.another_node().await;
    let token = a.admin_token().await;
    let r = a.send(Method::PUT, REFRESH, &token).json(&json!({"value": 7})).send().await.unwrap();
    json_with_status(r, 200).await;
    let got = json_with_status(b.get(REFRESH, &token).send().await.unwrap(), 200).await;
    assert_eq!(got["value"], 7);
    let r = b.send(Method::DELETE, REFRESH, &token).send().await.unwrap();
    json_with_status(r, 200).await;
    assert_eq!(json_with_status(a.get(REFRESH, &token).send().await.unwrap(), 200).await["value"], 60);
}

on_both_backends!(
    read_change_and_reset,
    bad_values_are_400_and_change_nothing,
    nodes_see_each_others_changes
);

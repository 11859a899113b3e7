//! Codes and refresh tokens under races and restarts (issue 15; SPEC §3):
//! a hundred redemptions of one code or one refresh token at once, two
//! rotations in one second, a rotated token replayed after a restart.
//! With PostgreSQL the requests are spread over two nodes.

use crate::delegated_oauth::{APP_CALLBACK, code_for, confidential, exchange, refresh_with};
use crate::harness::{Backend, TestServer, api_error, json_with_status, oauth_error};
use crate::on_both_backends;
use keyward::domain::Actor;
use serde_json::Value;

on_both_backends!(
    a_hundred_redemptions_of_one_code,
    a_hundred_refreshes_of_one_token,
    two_rotations_in_one_second,
    a_rotated_token_replayed_after_a_restart,
);

const AT_ONCE: usize = 100;

/// A confidential app with a fresh code: (id, secret, code, verifier).
async fn app_with_code(s: &TestServer) -> (String, String, String, String) {
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let (code, verifier) = code_for(s, &id, APP_CALLBACK).await;
    (id, secret.unwrap(), code, verifier)
}

/// The status and body of each answer.
async fn answers(responses: Vec<reqwest::Response>) -> Vec<(u16, Value)> {
    let mut all = Vec::new();
    for r in responses {
        let status = r.status().as_u16();
        all.push((status, r.json().await.unwrap()));
    }
    all
}

/// One code, a hundred redemptions at once: one gets tokens, every other
/// is `invalid_grant`, and — a replay revoking what the code issued — the
/// winner's tokens end revoked, whatever the order.
async fn a_hundred_redemptions_of_one_code(backend: Backend) {
    let s = TestServer::start(backend).await;
    let other = s.another_node().await;
    let (id, secret, code, verifier) = app_with_code(&s).await;
    let redemptions = (0..AT_ONCE).map(|i| {
        let node = if i % 2 == 0 { &s } else { &other };
        exchange(node, &id, &secret, &code, APP_CALLBACK, Some(&verifier))
    });
    let all = answers(futures_util::future::join_all(redemptions).await).await;
    let won: Vec<&Value> = all.iter().filter(|(status, _)| *status == 200).map(|(_, body)| body).collect();
    assert_eq!(won.len(), 1, "{all:?}");
    for (status, body) in all.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }
    let access = won[0]["access_token"].as_str().unwrap();
    let r = s.http.get(s.url("/admin/api/users/")).bearer_auth(access).send().await.unwrap();
    api_error(r, 401, "unauthorized").await;
    let refresh = won[0]["refresh_token"].as_str().unwrap();
    oauth_error(refresh_with(&other, &id, &secret, refresh).await, 400, "invalid_grant").await;
}

/// One refresh token, a hundred refreshes at once (a client's retries,
/// several of its instances): within the reuse grace every one gets the
/// same new pair, and the family lives on.
async fn a_hundred_refreshes_of_one_token(backend: Backend) {
    let s = TestServer::start(backend).await;
    let other = s.another_node().await;
    let (id, secret, code, verifier) = app_with_code(&s).await;
    let first =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let refreshes = (0..AT_ONCE).map(|i| {
        let node = if i % 2 == 0 { &s } else { &other };
        refresh_with(node, &id, &secret, r1)
    });
    let all = answers(futures_util::future::join_all(refreshes).await).await;
    assert!(all.iter().all(|(status, _)| *status == 200), "{all:?}");
    let pairs: std::collections::BTreeSet<(String, String)> =
        all.iter().map(|(_, b)| (b["refresh_token"].to_string(), b["access_token"].to_string())).collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    let r2 = all[0].1["refresh_token"].as_str().unwrap();
    assert_ne!(r2, r1);
    json_with_status(refresh_with(&other, &id, &secret, r2).await, 200).await;
}

/// Rotations within one second each make a new, different pair (nothing
/// keyed by the second collides); once the grace is over, replaying the
/// middle one revokes the family, the newest included.
async fn two_rotations_in_one_second(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.set_setting(Actor::Cli, "keyward.oauth.refresh_token_reuse_grace", "0").await.unwrap();
    let (id, secret, code, verifier) = app_with_code(&s).await;
    let first =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    let started = std::time::Instant::now();
    let second =
        json_with_status(refresh_with(&s, &id, &secret, first["refresh_token"].as_str().unwrap()).await, 200)
            .await;
    let third = json_with_status(
        refresh_with(&s, &id, &secret, second["refresh_token"].as_str().unwrap()).await,
        200,
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "not within one second");
    for field in ["refresh_token", "access_token"] {
        let values = [&first[field], &second[field], &third[field]];
        assert!(
            values[0] != values[1] && values[1] != values[2] && values[0] != values[2],
            "{field}: {values:?}"
        );
    }
    // The newest works; the older access tokens still do (they are not
    // revoked by a rotation, only by a reuse).
    for pair in [&second, &third] {
        let r = s.http.get(s.url("/admin/api/users/")).bearer_auth(pair["access_token"].as_str().unwrap());
        assert_eq!(r.send().await.unwrap().status(), 200);
    }
    let d = oauth_error(
        refresh_with(&s, &id, &secret, second["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(d.contains("family"), "{d}");
    oauth_error(
        refresh_with(&s, &id, &secret, third["refresh_token"].as_str().unwrap()).await,
        400,
        "invalid_grant",
    )
    .await;
    let r = s.http.get(s.url("/admin/api/users/")).bearer_auth(third["access_token"].as_str().unwrap());
    api_error(r.send().await.unwrap(), 401, "unauthorized").await;
}

/// A refresh token rotated before a restart and replayed after it: the
/// node remembers it was rotated (nothing of it lived only in memory) and
/// revokes the family.
async fn a_rotated_token_replayed_after_a_restart(backend: Backend) {
    let s = TestServer::start(backend).await;
    s.app.set_setting(Actor::Cli, "keyward.oauth.refresh_token_reuse_grace", "0").await.unwrap();
    let (id, secret, code, verifier) = app_with_code(&s).await;
    let first =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let second = json_with_status(refresh_with(&s, &id, &secret, &r1).await, 200).await;
    let r2 = second["refresh_token"].as_str().unwrap().to_string();

    let restarted = s.restart().await;
    let d = oauth_error(refresh_with(&restarted, &id, &secret, &r1).await, 400, "invalid_grant").await;
    assert!(d.contains("family"), "{d}");
    oauth_error(refresh_with(&restarted, &id, &secret, &r2).await, 400, "invalid_grant").await;
}

//! Retention (issue 14): the purge job deletes audit records and ended
//! tokens past their retention settings, and nothing still in use.

use crate::harness::{Backend, TestServer};
use crate::on_both_backends;
use keyward::domain::settings::{AUDIT_RETENTION, TOKEN_RETENTION};
use keyward::domain::{Actor, now, to_micros};
use keyward::store::AuditQuery;

on_both_backends!(
    ended_tokens_and_old_audit_records_go_after_their_retention,
    spent_client_assertions_stay_spent_until_they_expire,
    spent_client_assertions_are_capped_per_host,
);

/// A spent `private_key_jwt` assertion survives every purge until it could
/// no longer be accepted (found by an outside review: the purge compared
/// microseconds with seconds and forgot them all).
async fn spent_client_assertions_stay_spent_until_they_expire(backend: Backend) {
    use keyward::store::AssertionSpending::{Spent, UsedBefore};
    let s = TestServer::start(backend).await;
    let at = to_micros(now());
    let until = at + 3600 * 1_000_000;
    let spend = || s.app.store.spend_client_assertion("h1", "client.example", at, until, 10);
    assert_eq!(spend().await.unwrap(), Spent);
    assert_eq!(spend().await.unwrap(), UsedBefore);
    s.app.purge_expired_at(at).await.unwrap();
    assert_eq!(spend().await.unwrap(), UsedBefore, "forgotten by a purge before it expired");
    s.app.purge_expired_at(until + 1).await.unwrap();
    assert_eq!(spend().await.unwrap(), Spent, "kept after it expired");
}

/// One host's clients cannot fill the table: past the cap they wait, and
/// other hosts' clients do not.
async fn spent_client_assertions_are_capped_per_host(backend: Backend) {
    use keyward::store::AssertionSpending::{Spent, TooMany};
    let s = TestServer::start(backend).await;
    let at = to_micros(now());
    let until = at + 60 * 1_000_000;
    let store = &s.app.store;
    for n in 0..3 {
        assert_eq!(
            store.spend_client_assertion(&format!("a{n}"), "a.example", at, until, 3).await.unwrap(),
            Spent
        );
    }
    assert_eq!(store.spend_client_assertion("a3", "a.example", at, until, 3).await.unwrap(), TooMany);
    assert_eq!(store.spend_client_assertion("b0", "b.example", at, until, 3).await.unwrap(), Spent);
    // Expired ones no longer count.
    let later = until + 1;
    assert_eq!(store.spend_client_assertion("a4", "a.example", later, later + 60, 3).await.unwrap(), Spent);
}

const DAY: i64 = 86_400 * 1_000_000;

async fn ended_tokens_and_old_audit_records_go_after_their_retention(backend: Backend) {
    let s = TestServer::start(backend).await;
    let app = &s.app;
    let admin = s.user_named("admin").await;
    let addr = Some("127.0.0.1".parse().unwrap());
    let (_, revoked) = app.issue_refresh_token(admin.id, "revoked", addr).await.unwrap();
    app.api_access_token_from(admin.id, revoked.id).await.unwrap();
    app.revoke_refresh_token(admin.id, revoked.id).await.unwrap();
    let (_, kept) = app.issue_refresh_token(admin.id, "kept", addr).await.unwrap();
    app.api_access_token_from(admin.id, kept.id).await.unwrap();
    app.set_setting(Actor::Cli, AUDIT_RETENTION, "1").await.unwrap();
    app.set_setting(Actor::Cli, TOKEN_RETENTION, "1").await.unwrap();
    app.audit.flush().await;
    let all = AuditQuery { limit: 1000, ..Default::default() };
    let audited = app.store.audit_events(&all).await.unwrap().len();
    assert!(audited > 0);

    // Today, nothing is old enough.
    app.purge_expired().await.unwrap();
    assert_eq!(app.store.audit_events(&all).await.unwrap().len(), audited);
    assert_eq!(app.refresh_tokens_of(admin.id).await.unwrap().len(), 2);

    // Two days on: the audit records and the revoked token (with its
    // access token) are gone; the token still good stays, with its access token.
    let purged = app.purge_expired_at(to_micros(now()) + 2 * DAY).await.unwrap();
    assert!(purged as usize >= audited + 2, "{purged}");
    assert!(app.store.audit_events(&all).await.unwrap().is_empty());
    let left = app.refresh_tokens_of(admin.id).await.unwrap();
    assert_eq!(left.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["kept"]);
    let kept_access = app.api_access_token_from(admin.id, kept.id).await;
    assert!(kept_access.is_ok());
}

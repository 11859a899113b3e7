//! PostgreSQL out of reach under a running node (issue 15): every answer
//! that needs the database is a 503 with `Retry-After`, never a verdict on
//! the caller's credentials (no `invalid_client`, no 401, no `active:
//! false`); and once the database is back, the node serves again without a
//! restart.

use crate::harness::{Backend, TestServer, fresh_database, json_with_status};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder to PostgreSQL that the test can cut (every connection
/// closed, new ones refused at once), freeze (nothing passes, but every
/// socket stays open: a NAT that forgot the connections) and restore: a
/// network partition.
struct Partition {
    addr: std::net::SocketAddr,
    state: Arc<AtomicU8>,
    generation: watch::Sender<u64>,
}

const OPEN: u8 = 0;
const CUT: u8 = 1;
const FROZEN: u8 = 2;

impl Partition {
    async fn to(target: String) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AtomicU8::new(OPEN));
        let (generation, _) = watch::channel(0u64);
        let (now, changes) = (state.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let mut changed = changes.subscribe();
                let now = now.clone();
                tokio::spawn(async move {
                    match now.load(Ordering::SeqCst) {
                        CUT => return, // dropped: the connection closes at once
                        FROZEN => {
                            let _ = changed.changed().await;
                            return;
                        }
                        _ => {}
                    }
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = changed.changed() => {}
                    }
                    if now.load(Ordering::SeqCst) == FROZEN {
                        // Held open, silent, until the next change.
                        let _ = changed.changed().await;
                    }
                });
            }
        });
        Partition { addr, state, generation }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn cut(&self) {
        self.set(CUT);
    }

    fn freeze(&self) {
        self.set(FROZEN);
    }

    fn restore(&self) {
        self.state.store(OPEN, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by this forwarder's.
    fn in_front_of(&self, url: &str) -> String {
        let mut through = url::Url::parse(url).unwrap();
        through.set_port(Some(self.addr.port())).unwrap();
        through.to_string()
    }

    /// A forwarder to the server of the PostgreSQL database at `url`.
    async fn to_server_of(url: &str) -> Partition {
        let direct = url::Url::parse(url).unwrap();
        Partition::to(format!("{}:{}", direct.host_str().unwrap(), direct.port().unwrap_or(5432))).await
    }
}

const APP: &str = crate::delegated_oauth::APP_CALLBACK;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_503_never_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let direct = fresh_database(Backend::Postgres, dir.path()).await;
    let partition = Partition::to_server_of(&direct).await;
    let s = TestServer::start_on(&partition.in_front_of(&direct)).await;

    let (id, secret) = s.m2m_client("server_admin", 3600).await;
    let jwt = s.client_jwt(&id, &secret).await;
    let api_token = s.admin_token().await;
    let token_form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let introspect = || {
        s.http
            .post(s.url("/oauth/v2/introspect/"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", &jwt)])
            .send()
    };
    let users_by_jwt = || s.http.get(s.url("/admin/api/users/")).bearer_auth(&jwt).send();
    let users_by_token = || s.get("/admin/api/users/", &api_token).send();
    let resource = serde_json::json!({
        "name": "demo", "display_name": "Demo", "scopes": [{"name": "tools", "description": "tools"}],
        "required_scopes": ["tools"], "upstream_url": "http://127.0.0.1:9/mcp",
    });
    let r = s
        .send(reqwest::Method::POST, "/admin/api/resources/", &api_token)
        .json(&resource)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // An app, and a browser signed in before the outage.
    let (app_id, _) = s.register_client(crate::delegated_oauth::confidential(APP)).await;
    let browser = crate::delegated_oauth::Browser::new();
    let account = s.url("/account/auth");
    let signed_in = browser.sign_in(&s, &account, "admin", crate::harness::ADMIN_PASSWORD).await;
    assert_eq!(signed_in.status(), 303);

    partition.cut();
    // The change listener's connection went too: caches stop answering.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (token, introspected, by_jwt, by_token, gateway, metadata, ready) = tokio::join!(
        s.http.post(s.url("/oauth/v2/token/")).form(&token_form).send(),
        introspect(),
        users_by_jwt(),
        users_by_token(),
        s.http.get(s.url("/r/demo/")).bearer_auth(&jwt).send(),
        s.http.get(s.url("/.well-known/oauth-authorization-server")).send(),
        s.http.get(s.url("/readyz")).send(),
    );
    let answers = [
        ("token", token),
        ("introspection", introspected),
        ("JWT", by_jwt),
        ("TOKEN", by_token),
        ("gateway", gateway),
        ("metadata", metadata),
    ];
    for (what, r) in answers {
        let r = r.unwrap();
        assert_eq!(r.status(), 503, "{what}: {}", r.text().await.unwrap());
        assert_eq!(r.headers()["retry-after"], "5", "{what}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            ["temporarily_unavailable", "unavailable"].contains(&body["error"].as_str().unwrap()),
            "{what}: {body}"
        );
    }
    assert_eq!(ready.unwrap().status(), 503);
    // An authorization request cannot be checked: try again, not a 400.
    let (authorize, _) = crate::delegated_oauth::authorize_url(&s, &app_id, APP, "");
    assert_eq!(browser.get(&authorize).await.status(), 503);
    // The signed-in browser is told to try again, not to sign in again.
    let page = browser.get(&account).await;
    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()["retry-after"], "5");
    let html = page.text().await.unwrap();
    assert!(!html.contains("Sign in") && html.contains("try again"), "{html}");

    // Back: the same node serves again, the tokens handed out before work.
    partition.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.http.get(s.url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "the node did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    json_with_status(s.http.post(s.url("/oauth/v2/token/")).form(&token_form).send().await.unwrap(), 200)
        .await;
    assert_eq!(json_with_status(introspect().await.unwrap(), 200).await["active"], true);
    assert_eq!(users_by_jwt().await.unwrap().status(), 200);
    assert_eq!(users_by_token().await.unwrap().status(), 200);
}

/// A node whose change listener stops hearing anything while its socket
/// stays open (a NAT or firewall idle timeout) notices within the
/// heartbeat deadline and stops trusting its caches: a client disabled on
/// another node gets no more tokens from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_change_listener_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let direct = fresh_database(Backend::Postgres, dir.path()).await;
    let partition = Partition::to_server_of(&direct).await;
    let other = TestServer::start_on(&direct).await;
    let s = other.another_node_hearing_through(&partition.in_front_of(&direct)).await;

    let (id, token) = client_asked_twice(&s).await;

    partition.freeze();
    disable_client(&other, &id).await;
    let frozen = std::time::Instant::now();
    loop {
        let status = token().await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        // The heartbeat deadline (6 s) and a second to act on it; a cache
        // entry alone would have lived 60 s.
        assert!(frozen.elapsed() < std::time::Duration::from_secs(10), "still issuing to a disabled client");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(frozen.elapsed() > std::time::Duration::from_secs(2), "the listener should not have heard this");
}

/// The database fails while a code is being redeemed, after the code was
/// read: the client's retry gets its tokens (the code is used up only
/// together with the grant it opens), not "already used". The failure is
/// injected by a trigger raising `connection_failure` on the grant's
/// insert, as a connection lost at that moment would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_survives_an_outage_during_its_exchange() {
    use crate::delegated_oauth::{APP_CALLBACK, code_for, confidential, exchange};
    use sqlx::Connection;
    let s = TestServer::start(Backend::Postgres).await;
    let (id, secret) = s.register_client(confidential(APP_CALLBACK)).await;
    let secret = secret.unwrap();
    let (code, verifier) = code_for(&s, &id, APP_CALLBACK).await;

    let mut db = sqlx::PgConnection::connect(&s.database_url).await.unwrap();
    // A lost connection is an outage (503); any other failure the server's
    // own (500, `server_error`). Neither uses the code up.
    for (sqlstate, status, error) in
        [("08006", 503, "temporarily_unavailable"), ("P0001", 500, "server_error")]
    {
        let inject = format!(
            "CREATE OR REPLACE FUNCTION fail_the_insert() RETURNS trigger AS $$ BEGIN \
               RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER failure BEFORE INSERT ON oauth_grants FOR EACH ROW EXECUTE FUNCTION fail_the_insert();"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(inject)).execute(&mut db).await.unwrap();
        let r = exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await;
        assert_eq!(r.status(), status, "{sqlstate}");
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], error);
        sqlx::raw_sql("DROP TRIGGER failure ON oauth_grants").execute(&mut db).await.unwrap();
    }

    let tokens =
        json_with_status(exchange(&s, &id, &secret, &code, APP_CALLBACK, Some(&verifier)).await, 200).await;
    assert!(tokens["refresh_token"].is_string());
}

/// A node whose listener is pointed at another database (a pooler or a
/// failover left it behind) never hears its own heartbeat there, so it
/// never trusts its caches: a client disabled through another node is
/// refused by it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_another_database_is_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let other = TestServer::start(Backend::Postgres).await;
    let elsewhere = fresh_database(Backend::Postgres, dir.path()).await;
    let s = other.another_node_hearing_through(&elsewhere).await;
    let (id, token) = client_asked_twice(&s).await;
    disable_client(&other, &id).await;
    assert_eq!(token().await, 401, "served from a cache nobody keeps current");

    // Nor the resources its gateway served: one deleted through the other
    // node is gone here at once (before, its dead upstream made it a 502).
    let admin = other.admin_token().await;
    let resource = serde_json::json!({
        "name": "demo", "display_name": "Demo", "scopes": [{"name": "tools", "description": "tools"}],
        "upstream_url": "http://127.0.0.1:9/mcp",
    });
    let r = other.send(reqwest::Method::POST, "/admin/api/resources/", &admin).json(&resource).send().await;
    assert_eq!(r.unwrap().status(), 201);
    let (id, secret) = s.m2m_client("viewer", 3600).await;
    // Its indicator is under the issuer the nodes share (the first node's URL).
    let (gateway, indicator) = (s.url("/r/demo"), other.url("/r/demo"));
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("resource", indicator.as_str()),
    ];
    let jwt = json_with_status(s.token_request(&form).await, 200).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..2 {
        assert_eq!(s.http.get(&gateway).bearer_auth(&jwt).send().await.unwrap().status(), 502);
    }
    let r = other.send(reqwest::Method::DELETE, "/admin/api/resources/demo/", &admin).send().await;
    assert_eq!(r.unwrap().status(), 204);
    assert_eq!(s.http.get(&gateway).bearer_auth(&jwt).send().await.unwrap().status(), 404);
}

/// Disables the M2M client `id` through `node`'s admin API.
async fn disable_client(node: &TestServer, id: &str) {
    let admin = node.admin_token().await;
    let r = node.patch_m2m_client(id, &admin, serde_json::json!({"disabled": true})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A new M2M client of `s`'s, asked for a token twice once the node's
/// listener could have heard its heartbeat (3 s): in the node's cache if
/// caches are on. Its id, and a way to ask again (the status).
async fn client_asked_twice(
    s: &TestServer,
) -> (String, impl Fn() -> futures_util::future::BoxFuture<'static, u16> + use<>) {
    let (id, secret) = s.m2m_client("viewer", 3600).await;
    let form = [
        ("grant_type", "client_credentials".to_string()),
        ("client_id", id.clone()),
        ("client_secret", secret),
    ];
    let (http, url) = (s.http.clone(), s.url("/oauth/v2/token/"));
    let token = move || -> futures_util::future::BoxFuture<'static, u16> {
        let request = http.post(&url).form(&form).send();
        Box::pin(async move { request.await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for _ in 0..2 {
        assert_eq!(token().await, 200);
    }
    (id, token)
}

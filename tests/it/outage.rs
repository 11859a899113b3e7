//! PostgreSQL out of reach under a running node (issue 15): every answer
//! that needs the database is a 503 with `Retry-After`, never a verdict on
//! the caller's credentials (no `invalid_client`, no 401, no `active:
//! false`); and once the database is back, the node serves again without a
//! restart.

use crate::harness::{Backend, TestServer, fresh_database, json_with_status};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder to PostgreSQL that the test can cut (every connection
/// closed, new ones refused at once) and restore: a network partition.
struct Partition {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Partition {
    async fn to(target: String) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (flag, cuts) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let target = target.clone();
                let mut cut_now = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_now.changed() => {}
                    }
                });
            }
        });
        Partition { addr, cut, generation }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_a_503_never_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let direct = url::Url::parse(&fresh_database(Backend::Postgres, dir.path()).await).unwrap();
    let target = format!("{}:{}", direct.host_str().unwrap(), direct.port().unwrap_or(5432));
    let partition = Partition::to(target).await;
    let mut through = direct.clone();
    through.set_port(Some(partition.addr.port())).unwrap();
    let s = TestServer::start_on(through.as_str()).await;

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

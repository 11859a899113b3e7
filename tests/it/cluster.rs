//! Several keyward processes on one PostgreSQL, as behind a load balancer
//! (issue 15): the harness, and what must hold when one of them dies.
//!
//! `Cluster` starts real `keyward serve` processes on a fresh database with
//! one issuer, master key and admin password; `Balancer` is the load
//! balancer in front of them (round robin per connection, skipping a node
//! that does not answer), whose address is the issuer. Load generators
//! call the nodes round robin themselves, so that every failure is known
//! by the node that gave it.

use crate::delegated_oauth::{Browser, Site, code_for, confidential};
use crate::harness::{ADMIN_PASSWORD, Backend, MASTER_KEY, fresh_database, json_with_status};
use crate::process::{Node, keyward};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A TCP load balancer on loopback: each connection to the next node in
/// turn that accepts it.
pub struct Balancer {
    pub addr: std::net::SocketAddr,
    nodes: Arc<Mutex<Vec<String>>>,
}

impl Balancer {
    pub async fn start() -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let nodes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (known, turn) = (nodes.clone(), Arc::new(AtomicUsize::new(0)));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (known, turn) = (known.clone(), turn.clone());
                tokio::spawn(async move {
                    let nodes = known.lock().unwrap().clone();
                    for _ in 0..nodes.len() {
                        let node = &nodes[turn.fetch_add(1, Ordering::SeqCst) % nodes.len()];
                        if let Ok(mut outbound) = TcpStream::connect(node).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr, nodes }
    }

    fn serve(&self, nodes: Vec<String>) {
        *self.nodes.lock().unwrap() = nodes;
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The balancer's URL: every node's issuer.
    pub issuer: String,
    pub balancer: Balancer,
    pub database_url: String,
    dirs: Vec<tempfile::TempDir>,
    /// A client that opens a connection per request, as a load balancer's
    /// clients spread over nodes.
    pub http: reqwest::Client,
}

impl Site for Cluster {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

impl Cluster {
    /// `count` nodes on a fresh database of the test PostgreSQL.
    pub async fn start(count: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let database_url = fresh_database(Backend::Postgres, dir.path()).await;
        Self::start_on(count, database_url, dir).await
    }

    /// `count` nodes on the empty PostgreSQL database at `database_url`,
    /// started one after the other (the first creates the schema and the
    /// admin).
    async fn start_on(count: usize, database_url: String, dir: tempfile::TempDir) -> Cluster {
        let balancer = Balancer::start().await;
        let issuer = format!("http://{}", balancer.addr);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            issuer,
            balancer,
            database_url,
            dirs: vec![dir],
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        for _ in 0..count {
            let node = cluster.start_node().await;
            cluster.nodes.push(node);
        }
        cluster.balance();
        cluster
    }

    async fn start_node(&mut self) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = keyward();
        cmd.args(["--data-dir", dir.path().to_str().unwrap(), "--database-url", &self.database_url])
            .args(["--issuer", &self.issuer])
            .env("KEYWARD_MASTER_KEY", MASTER_KEY)
            .env("KEYWARD_ADMIN_PASSWORD", ADMIN_PASSWORD);
        self.dirs.push(dir);
        Node::start(cmd).await
    }

    /// The balancer sends to every node.
    fn balance(&self) {
        let nodes = self.nodes.iter().map(|n| n.base.trim_start_matches("http://").to_string()).collect();
        self.balancer.serve(nodes);
    }

    /// An API access token of the admin, through `/integration/v1`.
    pub async fn admin_token(&self) -> String {
        let refresh = json_with_status(
            self.http
                .post(self.url("/integration/v1/createRefreshToken/"))
                .form(&[("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "cluster")])
                .send()
                .await
                .unwrap(),
            201,
        )
        .await;
        let user_id = refresh["user_id"].to_string();
        let access = json_with_status(
            self.http
                .post(self.url("/integration/v1/createAPIAccessToken/"))
                .form(&[("refresh_token", refresh["refresh_token"].as_str().unwrap()), ("user_id", &user_id)])
                .send()
                .await
                .unwrap(),
            201,
        )
        .await;
        access["api_access_token"].as_str().unwrap().to_string()
    }

    /// Creates a client at `path` with the admin's `token`: its id and secret.
    async fn created(&self, token: &str, path: &str, body: &Value) -> (String, String) {
        let r = self.http.post(self.url(path)).header("TOKEN", token).json(body).send().await.unwrap();
        let client = json_with_status(r, 201).await;
        (
            client["client_id"].as_str().unwrap().to_string(),
            client["client_secret"].as_str().unwrap().to_string(),
        )
    }
}

/// An M2M client for load.
fn load_client() -> Value {
    json!({"name": "load", "access_token_duration": 3600, "role": "viewer"})
}

/// Every one of `jwts` is active at every node of `bases`, as the client
/// `id` introspects it.
async fn all_active(http: &reqwest::Client, bases: &[String], jwts: &[String], id: &str, secret: &str) {
    for base in bases {
        for jwt in jwts {
            let r = http
                .post(format!("{base}/oauth/v2/introspect/"))
                .basic_auth(id, Some(secret))
                .form(&[("token", jwt)])
                .send()
                .await
                .unwrap();
            assert_eq!(json_with_status(r, 200).await["active"], true, "at {base}");
        }
    }
}

/// Which nodes are up, as the load generators see them; a request goes to
/// the next one up.
struct Spread {
    bases: Vec<String>,
    down: Vec<AtomicBool>,
    turn: AtomicUsize,
}

impl Spread {
    fn new(cluster: &Cluster) -> Arc<Spread> {
        Arc::new(Spread {
            bases: cluster.nodes.iter().map(|n| n.base.clone()).collect(),
            down: cluster.nodes.iter().map(|_| AtomicBool::new(false)).collect(),
            turn: AtomicUsize::new(0),
        })
    }

    /// The next node up: its index and base URL.
    fn next(&self) -> (usize, &str) {
        loop {
            let i = self.turn.fetch_add(1, Ordering::SeqCst) % self.bases.len();
            if !self.down[i].load(Ordering::SeqCst) {
                return (i, &self.bases[i]);
            }
        }
    }
}

/// What the load generators saw: tokens handed out, and failures by node.
#[derive(Default)]
struct Outcomes {
    jwts: Vec<String>,
    api_tokens: Vec<String>,
    failures: Vec<(usize, String)>,
}

type Shared = Arc<Mutex<Outcomes>>;

/// A form POST to `path` on the next node up: the node and the answer (or
/// why there was none).
async fn post_form(
    http: &reqwest::Client,
    spread: &Spread,
    path: &str,
    form: &[(&str, &str)],
) -> (usize, Result<(u16, Value), String>) {
    let (node, base) = spread.next();
    let answer = match http.post(format!("{base}{path}")).form(form).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            r.json::<Value>().await.map(|body| (status, body)).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    (node, answer)
}

fn record(outcomes: &Shared, node: usize, what: &str, answer: &Result<(u16, Value), String>, expected: u16) {
    match answer {
        Ok((status, _)) if *status == expected => {}
        Ok((status, body)) => {
            outcomes.lock().unwrap().failures.push((node, format!("{what}: {status} {body}")))
        }
        Err(e) => outcomes.lock().unwrap().failures.push((node, format!("{what}: {e}"))),
    }
}

/// `kill -9` of one of three nodes under mixed load: no request to a
/// surviving node fails, every token handed out (before the kill too) is
/// accepted by the survivors, and every refresh family lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing() {
    let mut cluster = Cluster::start(3).await;
    let admin = cluster.admin_token().await;
    let (m2m_id, m2m_secret) = cluster.created(&admin, "/admin/api/m2m_clients/", &load_client()).await;
    let redirect = "https://app.example/callback";
    let (app_id, app_secret) = cluster.created(&admin, "/oauth/v1/register/", &confidential(redirect)).await;

    let spread = Spread::new(&cluster);
    let outcomes: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();

    // Machines: client credentials.
    for _ in 0..2 {
        let (http, spread, outcomes, stop) =
            (cluster.http.clone(), spread.clone(), outcomes.clone(), stop.clone());
        let (id, secret) = (m2m_id.clone(), m2m_secret.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let (node, answer) = post_form(&http, &spread, "/oauth/v2/token/", &form).await;
                record(&outcomes, node, "client credentials", &answer, 200);
                if let Ok((200, body)) = answer {
                    outcomes.lock().unwrap().jwts.push(body["access_token"].as_str().unwrap().to_string());
                }
            }
        });
    }
    // Scripts: /integration/v1 refresh and API access tokens.
    {
        let (http, spread, outcomes, stop) =
            (cluster.http.clone(), spread.clone(), outcomes.clone(), stop.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let form = [("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "load")];
                let (node, answer) =
                    post_form(&http, &spread, "/integration/v1/createRefreshToken/", &form).await;
                record(&outcomes, node, "createRefreshToken", &answer, 201);
                let Ok((201, refresh)) = answer else { continue };
                let user_id = refresh["user_id"].to_string();
                let form =
                    [("refresh_token", refresh["refresh_token"].as_str().unwrap()), ("user_id", &user_id)];
                let (node, answer) =
                    post_form(&http, &spread, "/integration/v1/createAPIAccessToken/", &form).await;
                record(&outcomes, node, "createAPIAccessToken", &answer, 201);
                if let Ok((201, body)) = answer {
                    outcomes
                        .lock()
                        .unwrap()
                        .api_tokens
                        .push(body["api_access_token"].as_str().unwrap().to_string());
                }
            }
        });
    }
    // Apps: refresh families, each rotated over and over. A request whose
    // answer was lost (its node died) is sent again to another node, as a
    // client retries; within the reuse grace it gets the same new pair.
    let mut families = Vec::new();
    for _ in 0..3 {
        let (code, verifier) = code_for(&cluster, &app_id, redirect).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("client_id", &app_id),
            ("client_secret", &app_secret),
            ("code_verifier", &verifier),
        ];
        let r = cluster.http.post(cluster.url("/oauth/v1/token/")).form(&form).send().await.unwrap();
        let body = json_with_status(r, 200).await;
        families.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    let latest = Arc::new(Mutex::new(families));
    for family in 0..3 {
        let (http, spread, outcomes, stop) =
            (cluster.http.clone(), spread.clone(), outcomes.clone(), stop.clone());
        let (id, secret, latest) = (app_id.clone(), app_secret.clone(), latest.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let refresh = latest.lock().unwrap()[family].clone();
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ];
                let (node, answer) = post_form(&http, &spread, "/oauth/v1/token/", &form).await;
                record(&outcomes, node, "refresh", &answer, 200);
                if let Ok((200, body)) = answer {
                    latest.lock().unwrap()[family] = body["refresh_token"].as_str().unwrap().to_string();
                    outcomes.lock().unwrap().jwts.push(body["access_token"].as_str().unwrap().to_string());
                }
            }
        });
    }
    // Users: the code flow, signed in and consenting in a browser at one
    // node, the code redeemed at the next. A flow cut by the kill is one
    // that went to the node that died.
    {
        let (http, spread, outcomes, stop) =
            (cluster.http.clone(), spread.clone(), outcomes.clone(), stop.clone());
        let (id, secret) = (app_id.clone(), app_secret.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (node, base) = spread.next();
                let (site, id, secret, http) =
                    (Issuer(base.to_string()), id.clone(), secret.clone(), http.clone());
                let (redeemed_at, redeem_base) = spread.next();
                let redeem_base = redeem_base.to_string();
                let flow = tokio::spawn(async move {
                    let (url, verifier) = crate::delegated_oauth::authorize_url(
                        &site,
                        &id,
                        redirect,
                        "&scope=api%20offline_access",
                    );
                    let back = Browser::new().authorize(&site, &url).await;
                    let code = crate::delegated_oauth::param(&back, "code").unwrap();
                    let form = [
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", redirect),
                        ("client_id", &id),
                        ("client_secret", &secret),
                        ("code_verifier", &verifier),
                    ];
                    let r =
                        http.post(format!("{redeem_base}/oauth/v1/token/")).form(&form).send().await.unwrap();
                    let body = json_with_status(r, 200).await;
                    body["access_token"].as_str().unwrap().to_string()
                });
                match flow.await {
                    Ok(jwt) => outcomes.lock().unwrap().jwts.push(jwt),
                    Err(_)
                        if spread.down[node].load(Ordering::SeqCst)
                            || spread.down[redeemed_at].load(Ordering::SeqCst) => {}
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(4)).await;
    let handed_out_before_the_kill = outcomes.lock().unwrap().jwts.len();
    spread.down[2].store(true, Ordering::SeqCst);
    cluster.nodes[2].child.kill().unwrap();
    let survivors: Vec<String> =
        cluster.nodes[..2].iter().map(|n| n.base.trim_start_matches("http://").into()).collect();
    cluster.balancer.serve(survivors);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = load.join_next().await {
        done.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let on_survivors: Vec<_> = outcomes.failures.iter().filter(|(node, _)| *node != 2).collect();
    assert!(on_survivors.is_empty(), "requests to surviving nodes failed: {on_survivors:?}");
    assert!(handed_out_before_the_kill > 20, "too little load: {handed_out_before_the_kill}");
    assert!(outcomes.jwts.len() > handed_out_before_the_kill, "no load after the kill");

    // Every token handed out is accepted by every survivor.
    all_active(&cluster.http, &spread.bases[..2], &outcomes.jwts, &m2m_id, &m2m_secret).await;
    for (i, base) in spread.bases[..2].iter().enumerate() {
        for token in outcomes.api_tokens.iter().step_by(5) {
            let r = cluster
                .http
                .get(format!("{base}/admin/api/users/"))
                .header("TOKEN", token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "node {i}");
        }
    }
    // Every refresh family lives on.
    for refresh in latest.lock().unwrap().iter() {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", &app_id),
            ("client_secret", &app_secret),
        ];
        let r = cluster
            .http
            .post(format!("{}/oauth/v1/token/", spread.bases[0]))
            .form(&form)
            .send()
            .await
            .unwrap();
        json_with_status(r, 200).await;
    }
}

/// The issuer as a browser reaches it (through the balancer).
struct Issuer(String);

impl Site for Issuer {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// A PostgreSQL server of the test's own, which it may stop and start (the
/// suite's is shared by every other test). Its binaries are found as
/// `scripts/test` finds them; missing, the test fails.
struct OwnPostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin): run ./scripts/test")
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max_by_key(|b| b.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()))
            .expect("no PostgreSQL server binaries under /usr/lib/postgresql");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = OwnPostgres { bin, dir, port };
        if server.as_root() {
            let chown =
                std::process::Command::new("chown").arg("postgres").arg(server.dir.path()).status().unwrap();
            assert!(chown.success());
        }
        let data = server.dir.path().join("data");
        let initdb = server.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres"]);
        assert!(initdb.success(), "initdb failed");
        server.start_again();
        server
    }

    fn as_root(&self) -> bool {
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    }

    /// A server binary run as the `postgres` user when this is root
    /// (PostgreSQL refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::ExitStatus {
        let program = self.bin.join(program);
        let mut cmd = if self.as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::ExitStatus {
        let data = self.dir.path().join("data");
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let started = self.pg_ctl(&["-w", "-l", log.to_str().unwrap(), "-o", &options, "start"]);
        assert!(started.success(), "PostgreSQL did not start");
    }

    /// Stops at once: clients' connections are cut, as in a failover.
    fn stop(&self) {
        assert!(self.pg_ctl(&["-w", "-m", "fast", "stop"]).success(), "PostgreSQL did not stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// PostgreSQL restarted under load: `/readyz` goes false and back, the
/// nodes serve again without a restart (503 meanwhile, never a verdict),
/// their change listeners hear again, and every token handed out works
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let postgres = OwnPostgres::start();
    let cluster = Cluster::start_on(2, postgres.url(), tempfile::tempdir().unwrap()).await;
    let admin = cluster.admin_token().await;
    let (id, secret) = cluster.created(&admin, "/admin/api/m2m_clients/", &load_client()).await;

    let spread = Spread::new(&cluster);
    let outcomes: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let statuses: Arc<Mutex<std::collections::BTreeMap<u16, usize>>> = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (http, spread, outcomes, stop) =
            (cluster.http.clone(), spread.clone(), outcomes.clone(), stop.clone());
        let (id, secret, statuses) = (id.clone(), secret.clone(), statuses.clone());
        load.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let (node, answer) = post_form(&http, &spread, "/oauth/v2/token/", &form).await;
                match answer {
                    Ok((status, body)) => {
                        *statuses.lock().unwrap().entry(status).or_default() += 1;
                        match status {
                            200 => outcomes
                                .lock()
                                .unwrap()
                                .jwts
                                .push(body["access_token"].as_str().unwrap().into()),
                            503 => tokio::time::sleep(Duration::from_millis(50)).await,
                            _ => outcomes.lock().unwrap().failures.push((node, format!("{status} {body}"))),
                        }
                    }
                    Err(e) => outcomes.lock().unwrap().failures.push((node, e)),
                }
            }
        });
    }
    let readiness = |base: String| {
        let http = cluster.http.clone();
        async move { http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    let wait_for = |wanted: u16| {
        let bases = spread.bases.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            for base in bases {
                while readiness(base.clone()).await != wanted {
                    assert!(Instant::now() < deadline, "{base}/readyz never answered {wanted}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.stop();
    wait_for(503).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    postgres.start_again();
    wait_for(200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = load.join_next().await {
        done.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.failures.is_empty(), "not a token nor a 503: {:?}", outcomes.failures);
    // (Requests caught by the restart mostly wait for a connection, up to
    // the pool's 10 s, and succeed: a short restart is latency, not errors.)
    let statuses = statuses.lock().unwrap().clone();
    assert!(statuses.keys().all(|s| [200, 503].contains(s)), "{statuses:?}");
    all_active(&cluster.http, &spread.bases, &outcomes.jwts, &id, &secret).await;

    // The listeners hear again: a client disabled on one node is refused
    // by the other at once, though it had the client cached.
    let token_at = |base: &str| {
        cluster
            .http
            .post(format!("{base}/oauth/v2/token/"))
            .form(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)])
            .send()
    };
    assert_eq!(token_at(&spread.bases[1]).await.unwrap().status(), 200);
    let r = cluster
        .http
        .patch(format!("{}/admin/api/m2m_clients/{id}/", spread.bases[0]))
        .header("TOKEN", &admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    while token_at(&spread.bases[1]).await.unwrap().status() != 401 {
        assert!(Instant::now() < deadline, "the other node did not hear of the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

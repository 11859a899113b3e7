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
use crate::harness::{ADMIN_PASSWORD, Backend, MASTER_KEY, TestServer, fresh_database, json_with_status};
use crate::process::{Node, keyward};
use keyward::domain::settings::OUTBOUND_ALLOW_PRIVATE;
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
    /// The nodes' data dirs (removed with the cluster).
    pub dirs: Vec<tempfile::TempDir>,
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

    /// The balancer sends to every node (of `nodes`, as they are now).
    fn balance(&self) {
        let nodes = self.nodes.iter().map(|n| n.base.trim_start_matches("http://").to_string()).collect();
        self.balancer.serve(nodes);
    }

    /// An API access token of the admin, through `/integration/v1`.
    pub async fn admin_token(&self) -> String {
        api_token_at(&self.http, self).await
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

/// The claims of a JWT, for messages.
fn payload(jwt: &str) -> String {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap_or("");
    String::from_utf8_lossy(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap_or_default(),
    )
    .into_owned()
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
            assert_eq!(json_with_status(r, 200).await["active"], true, "at {base}: {}", payload(jwt));
        }
    }
}

/// Which nodes are up, as the load generators see them; a request goes to
/// the next one up.
struct Spread {
    /// Each node's base URL, None while it is down.
    nodes: Mutex<Vec<Option<String>>>,
    turn: AtomicUsize,
}

impl Spread {
    fn new(cluster: &Cluster) -> Arc<Spread> {
        Arc::new(Spread {
            nodes: Mutex::new(cluster.nodes.iter().map(|n| Some(n.base.clone())).collect()),
            turn: AtomicUsize::new(0),
        })
    }

    /// The next node up: its index and base URL.
    fn next(&self) -> (usize, String) {
        let nodes = self.nodes.lock().unwrap();
        loop {
            let i = self.turn.fetch_add(1, Ordering::SeqCst) % nodes.len();
            if let Some(base) = &nodes[i] {
                return (i, base.clone());
            }
        }
    }

    fn is_down(&self, node: usize) -> bool {
        self.nodes.lock().unwrap()[node].is_none()
    }

    /// Node `node` is down (None) or up at a base URL.
    fn set(&self, node: usize, base: Option<String>) {
        self.nodes.lock().unwrap()[node] = base;
    }

    /// The base URLs of the nodes up.
    fn bases(&self) -> Vec<String> {
        self.nodes.lock().unwrap().iter().flatten().cloned().collect()
    }
}

/// What the load generators saw: tokens handed out, and failures by node.
#[derive(Default)]
struct Outcomes {
    jwts: Vec<String>,
    api_tokens: Vec<String>,
    failures: Vec<(usize, String)>,
}

type Answer = Result<(u16, Value), String>;

/// Load generators: tasks that repeat a piece of work on the nodes in turn
/// until the load stops, and what they saw.
struct Load {
    worker: Worker,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
}

/// What one repetition of a load generator's work uses.
#[derive(Clone)]
struct Worker {
    http: reqwest::Client,
    spread: Arc<Spread>,
    outcomes: Arc<Mutex<Outcomes>>,
}

impl Load {
    fn new(cluster: &Cluster) -> Load {
        let worker =
            Worker { http: cluster.http.clone(), spread: Spread::new(cluster), outcomes: Arc::default() };
        Load { worker, stop: Arc::default(), tasks: tokio::task::JoinSet::new() }
    }

    fn spread(&self) -> &Spread {
        &self.worker.spread
    }

    /// Runs `work` over and over until the load stops.
    fn repeat<F, Fut>(&mut self, work: F)
    where
        F: Fn(Worker) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (worker, stop) = (self.worker.clone(), self.stop.clone());
        self.tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                work(worker.clone()).await;
            }
        });
    }

    /// How many JWTs were handed out so far.
    fn jwts_so_far(&self) -> usize {
        self.worker.outcomes.lock().unwrap().jwts.len()
    }

    /// Stops the load (a generator's panic is the test's) and says what it saw.
    async fn finish(&mut self) -> Outcomes {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        std::mem::take(&mut *self.worker.outcomes.lock().unwrap())
    }
}

/// A response's status and JSON body, or why there was none.
async fn answer(sent: reqwest::Result<reqwest::Response>) -> Answer {
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            r.json::<Value>().await.map(|body| (status, body)).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

impl Worker {
    /// A form POST to `path` on the next node up: the node and the answer
    /// (or why there was none).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (usize, Answer) {
        let (node, base) = self.spread.next();
        (node, answer(self.http.post(format!("{base}{path}")).form(form).send().await).await)
    }

    /// A GET of `path` with the `TOKEN` header on the next node up.
    async fn get(&self, path: &str, token: &str) -> (usize, Answer) {
        let (node, base) = self.spread.next();
        (node, answer(self.http.get(format!("{base}{path}")).header("TOKEN", token).send().await).await)
    }

    /// A failure unless `answer` has the status `expected`.
    fn expect(&self, node: usize, what: &str, answer: &Answer, expected: u16) {
        match answer {
            Ok((status, _)) if *status == expected => {}
            Ok((status, body)) => self.failed(node, format!("{what}: {status} {body}")),
            Err(e) => self.failed(node, format!("{what}: {e}")),
        }
    }

    fn failed(&self, node: usize, why: String) {
        self.outcomes.lock().unwrap().failures.push((node, why));
    }

    fn handed_out(&self, jwt: &str) {
        self.outcomes.lock().unwrap().jwts.push(jwt.to_string());
    }
}

/// A connection of the admin's (whose `TOKEN` is `admin`) to `provider`
/// through an outbound client whose tokens live 1.5 s: its id.
async fn connection_to(cluster: &Cluster, admin: &str, provider: &TestServer) -> String {
    // A loopback provider, and tokens read by their owner (the load's admin).
    for setting in [OUTBOUND_ALLOW_PRIVATE, keyward::domain::settings::CONNECTION_OWNER_READS] {
        let path = format!("/admin/api/config/{setting}/");
        let r = cluster.http.put(cluster.url(&path)).header("TOKEN", admin).json(&json!({"value": true}));
        json_with_status(r.send().await.unwrap(), 200).await;
    }
    let (m2m_id, m2m_secret) = provider.m2m_client("viewer", 600).await;
    let outbound = json!({
        "name": "Provider", "grant_type": "client_credentials", "client_id": m2m_id, "client_secret": m2m_secret,
        "token_url": provider.url("/oauth/v2/token/"), "scopes": ["api"], "api_base_url": format!("{}/", provider.base),
        "access_token_lifetime_ms": 1500,
    });
    let r =
        cluster.http.post(cluster.url("/admin/api/outbound_clients/")).header("TOKEN", admin).json(&outbound);
    let outbound_id =
        json_with_status(r.send().await.unwrap(), 201).await["id"].as_str().unwrap().to_string();
    let r = cluster
        .http
        .post(cluster.url("/api/v2/connections/"))
        .header("TOKEN", admin)
        .json(&json!({"outbound_client_id": outbound_id, "name": "reports"}));
    json_with_status(r.send().await.unwrap(), 201).await["id"].as_str().unwrap().to_string()
}

/// `kill -9` of one of three nodes under mixed load (machines, scripts,
/// apps' refresh families, users' code flows, connections' provider
/// tokens kept fresh): no request to a surviving node fails, every token handed out (before the kill too) is
/// accepted by the survivors, and every refresh family lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing() {
    let mut cluster = Cluster::start(3).await;
    let admin = cluster.admin_token().await;
    let (m2m_id, m2m_secret) = cluster.created(&admin, "/admin/api/m2m_clients/", &load_client()).await;
    let redirect = "https://app.example/callback";
    let (app_id, app_secret) = cluster.created(&admin, "/oauth/v1/register/", &confidential(redirect)).await;

    let mut load = Load::new(&cluster);
    // Machines: client credentials.
    for _ in 0..2 {
        let (id, secret) = (m2m_id.clone(), m2m_secret.clone());
        load.repeat(move |w| {
            let (id, secret) = (id.clone(), secret.clone());
            async move {
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let (node, answer) = w.post("/oauth/v2/token/", &form).await;
                w.expect(node, "client credentials", &answer, 200);
                if let Ok((200, body)) = answer {
                    w.handed_out(body["access_token"].as_str().unwrap());
                }
            }
        });
    }
    // Scripts: /integration/v1 refresh and API access tokens.
    load.repeat(|w| async move {
        let form = [("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "load")];
        let (node, answer) = w.post("/integration/v1/createRefreshToken/", &form).await;
        w.expect(node, "createRefreshToken", &answer, 201);
        let Ok((201, refresh)) = answer else { return };
        let user_id = refresh["user_id"].to_string();
        let form = [("refresh_token", refresh["refresh_token"].as_str().unwrap()), ("user_id", &user_id)];
        let (node, answer) = w.post("/integration/v1/createAPIAccessToken/", &form).await;
        w.expect(node, "createAPIAccessToken", &answer, 201);
        if let Ok((201, body)) = answer {
            w.outcomes
                .lock()
                .unwrap()
                .api_tokens
                .push(body["api_access_token"].as_str().unwrap().to_string());
        }
    });
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
        let (id, secret, latest) = (app_id.clone(), app_secret.clone(), latest.clone());
        load.repeat(move |w| {
            let (id, secret, latest) = (id.clone(), secret.clone(), latest.clone());
            async move {
                let refresh = latest.lock().unwrap()[family].clone();
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ];
                let (node, answer) = w.post("/oauth/v1/token/", &form).await;
                w.expect(node, "refresh", &answer, 200);
                if let Ok((200, body)) = answer {
                    latest.lock().unwrap()[family] = body["refresh_token"].as_str().unwrap().to_string();
                    w.handed_out(body["access_token"].as_str().unwrap());
                }
            }
        });
    }
    // Connectors: a provider's token through a connection, renewed every
    // second and a half (the provider is another keyward).
    let provider = TestServer::start_at(Backend::Sqlite, "127.0.0.2").await;
    let connection = connection_to(&cluster, &admin, &provider).await;
    let provider_tokens: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    {
        let (path, admin) = (format!("/api/v2/connections/{connection}/token/"), admin.clone());
        let seen = provider_tokens.clone();
        load.repeat(move |w| {
            let (path, admin, seen) = (path.clone(), admin.clone(), seen.clone());
            async move {
                let (node, answer) = w.get(&path, &admin).await;
                w.expect(node, "connection token", &answer, 200);
                if let Ok((200, body)) = answer {
                    seen.lock().unwrap().insert(body["access_token"].as_str().unwrap().to_string());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    // Users: the code flow, signed in and consenting in a browser at one
    // node, the code redeemed at the next. A flow cut by the kill is one
    // that went to the node that died.
    let (id, secret) = (app_id.clone(), app_secret.clone());
    load.repeat(move |w| {
        let (id, secret) = (id.clone(), secret.clone());
        async move {
            let (node, base) = w.spread.next();
            let (redeemed_at, redeem_base) = w.spread.next();
            let http = w.http.clone();
            let flow = tokio::spawn(async move {
                let site = Issuer(base);
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
                let r = http.post(format!("{redeem_base}/oauth/v1/token/")).form(&form).send().await.unwrap();
                let body = json_with_status(r, 200).await;
                body["access_token"].as_str().unwrap().to_string()
            });
            match flow.await {
                Ok(jwt) => w.handed_out(&jwt),
                Err(_) if w.spread.is_down(node) || w.spread.is_down(redeemed_at) => {}
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(4)).await;
    let handed_out_before_the_kill = load.jwts_so_far();
    load.spread().set(2, None);
    cluster.nodes[2].child.kill().unwrap();
    let survivors: Vec<String> =
        cluster.nodes[..2].iter().map(|n| n.base.trim_start_matches("http://").into()).collect();
    cluster.balancer.serve(survivors);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outcomes = load.finish().await;
    let on_survivors: Vec<_> = outcomes.failures.iter().filter(|(node, _)| *node != 2).collect();
    assert!(on_survivors.is_empty(), "requests to surviving nodes failed: {on_survivors:?}");
    assert!(handed_out_before_the_kill > 20, "too little load: {handed_out_before_the_kill}");
    assert!(outcomes.jwts.len() > handed_out_before_the_kill, "no load after the kill");
    let renewed = provider_tokens.lock().unwrap().len();
    assert!(renewed >= 3, "the connection's token was renewed {renewed} times");

    // Every token handed out is accepted by every survivor.
    let survivors = load.spread().bases();
    all_active(&cluster.http, &survivors, &outcomes.jwts, &m2m_id, &m2m_secret).await;
    for (i, base) in survivors.iter().enumerate() {
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
    let families = latest.lock().unwrap().clone();
    for refresh in &families {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", &app_id),
            ("client_secret", &app_secret),
        ];
        let r =
            cluster.http.post(format!("{}/oauth/v1/token/", survivors[0])).form(&form).send().await.unwrap();
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

    let mut load = Load::new(&cluster);
    let statuses: Arc<Mutex<std::collections::BTreeMap<u16, usize>>> = Arc::default();
    for _ in 0..2 {
        let (id, secret, statuses) = (id.clone(), secret.clone(), statuses.clone());
        load.repeat(move |w| {
            let (id, secret, statuses) = (id.clone(), secret.clone(), statuses.clone());
            async move {
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let (node, answer) = w.post("/oauth/v2/token/", &form).await;
                let Ok((status, body)) = answer else { return w.expect(node, "token", &answer, 200) };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
                match status {
                    200 => w.handed_out(body["access_token"].as_str().unwrap()),
                    503 => tokio::time::sleep(Duration::from_millis(50)).await,
                    _ => w.failed(node, format!("{status} {body}")),
                }
            }
        });
    }
    let readiness = |base: String| {
        let http = cluster.http.clone();
        async move { http.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    let wait_for = |wanted: u16| {
        let bases = load.spread().bases();
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
    let outcomes = load.finish().await;
    assert!(outcomes.failures.is_empty(), "not a token nor a 503: {:?}", outcomes.failures);
    // (Requests caught by the restart mostly wait for a connection, up to
    // the pool's 10 s, and succeed: a short restart is latency, not errors.)
    let statuses = statuses.lock().unwrap().clone();
    assert!(statuses.keys().all(|s| [200, 503].contains(s)), "{statuses:?}");
    let bases = load.spread().bases();
    all_active(&cluster.http, &bases, &outcomes.jwts, &id, &secret).await;

    // The listeners hear again: a client disabled on one node is refused
    // by the other at once, though it had the client cached.
    let token_at = |base: &str| {
        cluster
            .http
            .post(format!("{base}/oauth/v2/token/"))
            .form(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)])
            .send()
    };
    assert_eq!(token_at(&bases[1]).await.unwrap().status(), 200);
    let r = cluster
        .http
        .patch(format!("{}/admin/api/m2m_clients/{id}/", bases[0]))
        .header("TOKEN", &admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    while token_at(&bases[1]).await.unwrap().status() != 401 {
        assert!(Instant::now() < deadline, "the other node did not hear of the change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What an operator's alerting sees: the loss, and the listener back.
    for base in &bases {
        let metrics = cluster.http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(-1.0)
        };
        assert_eq!(value("keyward_change_listener_connected "), 1.0, "{metrics}");
        assert!(value("keyward_change_listener_losses_total ") >= 1.0, "{metrics}");
    }
}

/// One node on SQLite killed with `kill -9` under load and started again:
/// every token it handed out before is still valid, every revocation it
/// acknowledged is still in force (a token is handed out, and a
/// revocation acknowledged, only after its commit is durable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_under_load_keeps_what_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // One issuer for both lives (the port changes; an operator's issuer does not).
    let serve = || {
        let mut c = keyward();
        c.arg("--data-dir").arg(&data).args(["--issuer", "http://keyward.test"]);
        c.env("KEYWARD_ADMIN_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let mut node = Node::start(serve()).await;
    let http = reqwest::Client::new();
    let site = Issuer(node.base.clone());
    let admin = api_token_at(&http, &site).await;
    let r = http.post(site.url("/admin/api/m2m_clients/")).header("TOKEN", &admin).json(&load_client());
    let client = json_with_status(r.send().await.unwrap(), 201).await;
    let id = client["client_id"].as_str().unwrap().to_string();
    let secret = client["client_secret"].as_str().unwrap().to_string();

    #[derive(Default)]
    struct Acknowledged {
        valid: Vec<String>,
        revoked: Vec<String>,
        api_tokens: Vec<String>,
    }
    let acknowledged: Arc<Mutex<Acknowledged>> = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..2 {
        let (http, base, acknowledged) = (http.clone(), node.base.clone(), acknowledged.clone());
        let (id, secret) = (id.clone(), secret.clone());
        load.spawn(async move {
            for n in 0.. {
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let Ok(r) = http.post(format!("{base}/oauth/v2/token/")).form(&form).send().await else {
                    return;
                };
                let Ok(body) = r.json::<Value>().await else { return };
                let jwt = body["access_token"].as_str().unwrap().to_string();
                if (n + worker) % 3 != 0 {
                    acknowledged.lock().unwrap().valid.push(jwt);
                    continue;
                }
                let revoke = http
                    .post(format!("{base}/oauth/v2/revoke/"))
                    .basic_auth(&id, Some(&secret))
                    .form(&[("token", &jwt)])
                    .send()
                    .await;
                match revoke {
                    Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().revoked.push(jwt),
                    _ => return,
                }
            }
        });
    }
    {
        let (http, site, acknowledged) = (http.clone(), Issuer(node.base.clone()), acknowledged.clone());
        load.spawn(async move {
            while let Some(token) = api_token_or_none(&http, &site).await {
                acknowledged.lock().unwrap().api_tokens.push(token);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    while load.join_next().await.is_some() {}

    let node = Node::start(serve()).await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(acknowledged.valid.len() > 20 && acknowledged.revoked.len() > 5, "too little load");
    all_active(&http, std::slice::from_ref(&node.base), &acknowledged.valid, &id, &secret).await;
    for jwt in &acknowledged.revoked {
        let r = http
            .post(format!("{}/oauth/v2/introspect/", node.base))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", jwt)])
            .send()
            .await
            .unwrap();
        assert_eq!(json_with_status(r, 200).await["active"], false, "a revocation was lost");
    }
    assert!(!acknowledged.api_tokens.is_empty());
    for token in &acknowledged.api_tokens {
        let r =
            http.get(format!("{}/admin/api/users/", node.base)).header("TOKEN", token).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// An API access token of the admin through `/integration/v1` at `site`.
async fn api_token_at(http: &reqwest::Client, site: &impl Site) -> String {
    api_token_or_none(http, site).await.expect("an API access token")
}

/// As [`api_token_at`], or None when the node did not answer.
async fn api_token_or_none(http: &reqwest::Client, site: &impl Site) -> Option<String> {
    let form = [("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "load")];
    let r = http.post(site.url("/integration/v1/createRefreshToken/")).form(&form).send().await.ok()?;
    let refresh: Value = r.json().await.ok()?;
    let user_id = refresh["user_id"].to_string();
    let form = [("refresh_token", refresh["refresh_token"].as_str()?), ("user_id", &user_id)];
    let r = http.post(site.url("/integration/v1/createAPIAccessToken/")).form(&form).send().await.ok()?;
    let access: Value = r.json().await.ok()?;
    Some(access["api_access_token"].as_str()?.to_string())
}

/// `keyward keys rotate`, then a master-key rotation with a rolling
/// restart, while three nodes serve: every token handed out verifies at
/// another node and against the JWKS a resource server fetches through the
/// balancer, from before the rotation until after the new key signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_while_three_nodes_serve() {
    let mut cluster = Cluster::start(3).await;
    let admin = cluster.admin_token().await;
    let (id, secret) = cluster.created(&admin, "/admin/api/m2m_clients/", &load_client()).await;
    let mut load = Load::new(&cluster);
    for _ in 0..2 {
        let (id, secret, jwks_url) = (id.clone(), secret.clone(), cluster.url("/.well-known/jwks.json"));
        load.repeat(move |w| {
            let (id, secret, jwks_url) = (id.clone(), secret.clone(), jwks_url.clone());
            async move {
                // A steady stream, not a flood: the test runs 45 s beside others.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let form =
                    [("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)];
                let (node, answer) = w.post("/oauth/v2/token/", &form).await;
                let Ok((200, body)) = answer else {
                    // Only a node being restarted may fail to answer.
                    if !w.spread.is_down(node) {
                        w.expect(node, "client credentials", &answer, 200);
                    }
                    return;
                };
                let jwt = body["access_token"].as_str().unwrap().to_string();
                let form = [("token", jwt.as_str()), ("client_id", &id), ("client_secret", &secret)];
                let (checker, introspection) = w.post("/oauth/v2/introspect/", &form).await;
                match &introspection {
                    Ok((200, body)) if body["active"] == true => {}
                    Err(_) if w.spread.is_down(checker) => {}
                    _ => w.failed(checker, format!("introspection: {introspection:?}")),
                }
                let kid = jwt_kid(&jwt);
                let Ok(published) = w.http.get(&jwks_url).send().await else {
                    return; // the balancer's connection to a node that stopped
                };
                let published = published.json::<Value>().await.is_ok_and(|jwks| {
                    jwks["keys"].as_array().is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid.as_str()))
                });
                if !published {
                    w.failed(node, format!("kid {kid} not in the balancer's JWKS"));
                }
                w.handed_out(&jwt);
            }
        });
    }

    let tmp = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], master_key: &str| {
        let out = keyward()
            .args(args)
            .args(["--data-dir", tmp.path().to_str().unwrap(), "--database-url", &cluster.database_url])
            .env("KEYWARD_MASTER_KEY", master_key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    cli(&["keys", "rotate"], MASTER_KEY);

    // The master key: wrapped anew, each node restarted on the new key in
    // turn (the new one up before the old one stops), the old key retired.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(keyward::crypto::random_bytes::<32>())
    };
    let key_file = tmp.path().join("new.key");
    std::fs::write(&key_file, &new_key).unwrap();
    cli(&["keys", "rotate-master", "--new-key-file", key_file.to_str().unwrap()], MASTER_KEY);
    for i in 0..cluster.nodes.len() {
        let mut cmd = keyward();
        let dir = tempfile::tempdir().unwrap();
        cmd.args(["--data-dir", dir.path().to_str().unwrap(), "--database-url", &cluster.database_url])
            .args(["--issuer", &cluster.issuer])
            .env("KEYWARD_MASTER_KEY", &new_key);
        cluster.dirs.push(dir);
        let fresh = Node::start(cmd).await;
        load.spread().set(i, None);
        let fresh_base = fresh.base.clone();
        let old = std::mem::replace(&mut cluster.nodes[i], fresh);
        cluster.balance();
        assert!(old.terminate().success());
        load.spread().set(i, Some(fresh_base));
    }
    cli(&["keys", "rotate-master", "--retire-old"], &new_key);

    // Past the new key's publication delay (35 s from the rotation), so
    // that it signs for a while.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let outcomes = load.finish().await;
    assert!(outcomes.failures.is_empty(), "{:?}", outcomes.failures);
    let kids: std::collections::BTreeSet<String> = outcomes.jwts.iter().map(|j| jwt_kid(j)).collect();
    assert_eq!(kids.len(), 2, "the new key never signed: {kids:?}");
    // Old key and new, they verify everywhere afterwards (a sample: each
    // was checked at another node as it was handed out).
    let sample: Vec<String> = outcomes.jwts.iter().step_by(10).cloned().collect();
    all_active(&cluster.http, &load.spread().bases(), &sample, &id, &secret).await;
}

/// The `kid` in a JWT's header.
fn jwt_kid(jwt: &str) -> String {
    use base64::Engine;
    let header = jwt.split('.').next().unwrap_or("");
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap())
            .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

//! The real `keyward` binary: what an operator sees and does.

use crate::harness::{self, ADMIN_PASSWORD, MASTER_KEY, json_with_status};
use keyward::config::NodeConfig;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const REFRESH_KEY: &str = "alation.authentication.token.refresh_token_lifespan";

/// A command with none of the caller's KEYWARD_* settings leaking in.
pub(crate) fn keyward() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYWARD_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) base: String,
    stdout: Vec<String>,
}

impl Node {
    /// Starts `keyward serve` and waits until it answers `/healthz`.
    pub(crate) async fn start(mut cmd: Command) -> Node {
        cmd.stderr(Stdio::null());
        Self::start_with_stderr(cmd).await
    }

    /// As [`Node::start`], with standard error wherever `cmd` sends it.
    async fn start_with_stderr(mut cmd: Command) -> Node {
        let mut child =
            cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("keyward printed nothing");
        let base = first
            .strip_prefix("keyward listening on ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                assert_eq!(r.status(), 200);
                break;
            }
            assert!(Instant::now() < deadline, "keyward did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Serving starts after the start-up lines, so they are all there.
        let mut stdout = vec![first];
        stdout.extend(rx.try_iter());
        Node { child, base, stdout }
    }

    fn printed(&self, needle: &str) -> Option<&String> {
        self.stdout.iter().find(|l| l.contains(needle))
    }

    /// SIGTERM, then the exit status within ten seconds.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "keyward did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin token made in a running node's store, as an operator's tooling
/// would (the token endpoints are not what these tests are about).
async fn admin_token_in_store(data_dir: &Path, database_url: Option<String>) -> String {
    let config = NodeConfig {
        data_dir: data_dir.to_path_buf(),
        database_url,
        master_key: Some(MASTER_KEY.into()),
        ..NodeConfig::default()
    };
    let (app, _) = keyward::bootstrap::open(&config, "http://127.0.0.1:1".into(), false).await.unwrap();
    let admin = app.store.user_credentials("admin").await.unwrap().unwrap().0;
    harness::issue_token(&app, &admin, 600).await
}

fn run(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_the_admin_password_and_restart_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let serve = || {
        let mut c = keyward();
        c.arg("--data-dir").arg(&data);
        c
    };

    let node = Node::start(serve()).await;
    assert!(node.base.starts_with("http://127.0.0.1:"), "{}", node.base);
    let password_line = node.printed("initial admin password for user 'admin': ").expect("password printed");
    let password = password_line.rsplit(' ').next().unwrap().to_string();
    let file = data.join("initial-admin-password");
    assert!(
        node.printed(&format!("initial admin password written to {}", file.display())).is_some(),
        "{:?}",
        node.stdout
    );
    assert!(node.printed(&format!("sign in at {}/", node.base)).is_some(), "{:?}", node.stdout);
    assert!(node.printed(&format!("admin console: {}/admin/", node.base)).is_some(), "{:?}", node.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    assert!(password.len() >= 24);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data), 0o700);

    // CLI commands work beside a running server (SQLite in WAL mode).
    let mut conf = keyward();
    conf.args(["conf", REFRESH_KEY, "-s", "180", "--data-dir"]).arg(&data);
    let out = run(conf, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "180");
    let mut add = keyward();
    add.args(["user", "add", "bob", "--role", "viewer", "--data-dir"]).arg(&data);
    let out = run(add, "bob-password\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created user bob"));

    assert!(node.terminate().success(), "graceful exit on SIGTERM");

    let node = Node::start(serve()).await;
    assert!(node.printed("initial admin password").is_none(), "{:?}", node.stdout);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    let mut conf = keyward();
    conf.args(["conf", REFRESH_KEY, "--data-dir"]).arg(&data);
    assert_eq!(text(&run(conf, "").stdout).trim(), "180");
    let mut add = keyward();
    add.args(["user", "add", "BOB", "--role", "viewer", "--data-dir"]).arg(&data);
    let out = run(add, "bob-password\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));

    // Once the printed password is changed, the next start removes its file.
    let http = reqwest::Client::new();
    let post =
        |path: &str, form: &[(&str, &str)]| http.post(format!("{}{path}", node.base)).form(form).send();
    let form = [("username", "admin"), ("password", password.as_str()), ("name", "setup")];
    let refresh: serde_json::Value =
        post("/integration/v1/createRefreshToken/", &form).await.unwrap().json().await.unwrap();
    let (token, user_id) = (refresh["refresh_token"].as_str().unwrap(), refresh["user_id"].to_string());
    let form = [("refresh_token", token), ("user_id", user_id.as_str())];
    let api: serde_json::Value =
        post("/integration/v1/createAPIAccessToken/", &form).await.unwrap().json().await.unwrap();
    let r = http
        .patch(format!("{}/admin/api/users/{user_id}/", node.base))
        .header("TOKEN", api["api_access_token"].as_str().unwrap())
        .json(&serde_json::json!({"password": "a-changed-admin-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(node.terminate().success());
    assert!(file.exists(), "kept until the next start");
    let node = Node::start(serve()).await;
    assert!(!file.exists(), "the changed password's file is removed");
    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_share_config() {
    let tmp = tempfile::tempdir().unwrap();
    let url = harness::fresh_database(harness::Backend::Postgres, tmp.path()).await;
    let node_cmd = |name: &str| {
        let mut c = keyward();
        c.arg("--data-dir").arg(tmp.path().join(name)).args(["--database-url", &url]);
        c.env("KEYWARD_MASTER_KEY", MASTER_KEY).env("KEYWARD_ADMIN_PASSWORD", ADMIN_PASSWORD);
        c
    };
    let a = Node::start(node_cmd("a")).await;
    let b = Node::start(node_cmd("b")).await;
    assert!(a.printed("created user 'admin'").is_some(), "{:?}", a.stdout);
    assert!(b.printed("created user 'admin'").is_none(), "the admin is created once: {:?}", b.stdout);
    assert!(a.printed("database: postgres://").is_some());

    let token = admin_token_in_store(&tmp.path().join("tool"), Some(url.clone())).await;

    let http = reqwest::Client::new();
    let path = format!("/admin/api/config/{REFRESH_KEY}/");
    let r = http
        .put(format!("{}{path}", a.base))
        .header("TOKEN", &token)
        .json(&json!({"value": 42}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let r = http.get(format!("{}{path}", b.base)).header("TOKEN", &token).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], 42);
    let r = http
        .put(format!("{}{path}", b.base))
        .header("TOKEN", &token)
        .json(&json!({"value": 43}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 200).await;
    let r = http.get(format!("{}{path}", a.base)).header("TOKEN", &token).send().await.unwrap();
    assert_eq!(json_with_status(r, 200).await["value"], 43);

    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_bad_input_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let with_data = |args: &[&str]| {
        let mut c = keyward();
        c.args(args).arg("--data-dir").arg(&data);
        c
    };
    let cases: [(&[&str], &str); 6] = [
        (&["conf", "alation.no.such.key"], "unknown setting"),
        (&["conf", REFRESH_KEY, "-s", "0"], "1 to 3650"),
        (&["user", "add", "x", "--role", "wizard"], "unknown role"),
        (&["user", "add", "x", "--role", "viewer"], "no password on standard input"),
        (&["serve", "--listen", "nowhere"], "listen must be"),
        (&["serve", "--issuer", "http://example.com/"], "may not end with '/'"),
    ];
    for (args, expected) in cases {
        let out = run(with_data(args), "");
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(text(&out.stderr).contains(expected), "{args:?}: {}", text(&out.stderr));
    }
    let out = run(with_data(&["user", "add", "x", "--role", "viewer"]), "short\n");
    assert!(text(&out.stderr).contains("password must be"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut conf = keyward();
    conf.args(["conf", REFRESH_KEY, "--data-dir"]).arg(&data);
    assert!(run(conf, "").status.success());
    let mut conf = keyward();
    conf.args(["conf", REFRESH_KEY, "--data-dir"]).arg(&data);
    conf.env("KEYWARD_MASTER_KEY", MASTER_KEY);
    let out = run(conf, "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("master key does not match"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_file_env_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("keyward.toml");
    std::fs::write(&file, "issuer = \"https://from-file.example\"\ndata_dir = \"/nonexistent/overridden\"\n")
        .unwrap();
    let mut cmd = keyward();
    cmd.env("KEYWARD_CONFIG", &file).env("KEYWARD_DATA_DIR", tmp.path().join("from-env"));
    let node = Node::start(cmd).await;
    assert!(node.stdout[0].ends_with("(issuer https://from-file.example)"), "{:?}", node.stdout);
    assert!(tmp.path().join("from-env/keyward.db").exists());
    assert!(node.terminate().success());
}

/// `keyward serve` on a data dir in `tmp` with `env`, its standard error
/// in a file (the second value).
async fn node_logging_to_file(tmp: &Path, env: &[(&str, &str)]) -> (Node, std::path::PathBuf) {
    let log = tmp.join("stderr.log");
    let mut cmd = keyward();
    cmd.arg("--data-dir").arg(tmp.join("data")).envs(env.iter().copied());
    cmd.stderr(std::fs::File::create(&log).unwrap());
    (Node::start_with_stderr(cmd).await, log)
}

/// A configured first password that is easy to guess is warned about, not
/// refused: a node that started with it before must start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessable_configured_admin_password_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, log) = node_logging_to_file(tmp.path(), &[("KEYWARD_ADMIN_PASSWORD", "password")]).await;
    assert!(node.terminate().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("easy to guess"), "{logged}");
    assert!(!logged.contains("\"password\""), "the password itself is not logged: {logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("RUST_LOG", "debug"),
        ("KEYWARD_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("KEYWARD_MASTER_KEY", MASTER_KEY),
    ];
    let (node, log) = node_logging_to_file(tmp.path(), &env).await;

    let token = admin_token_in_store(&tmp.path().join("data"), None).await;
    let http = reqwest::Client::new();
    let users = format!("{}/admin/api/users/?limit=5", node.base);
    json_with_status(http.get(&users).header("TOKEN", &token).send().await.unwrap(), 200).await;
    let r = http
        .post(format!("{}/admin/api/users/", node.base))
        .bearer_auth(&token)
        .json(&json!({"username": "logged", "password": "pw-in-a-body", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    json_with_status(r, 201).await;
    assert!(node.terminate().success());

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("/admin/api/users/"), "requests are logged: {logged}");
    for secret in [ADMIN_PASSWORD, MASTER_KEY, token.as_str(), "pw-in-a-body", "limit=5"] {
        assert!(!logged.contains(secret), "{secret:?} appears in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_signing_keys_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cli = |args: &[&str]| {
        let mut c = keyward();
        c.args(args).arg("--data-dir").arg(&data);
        run(c, "")
    };
    let out = cli(&["client", "add", "etl", "--role", "viewer", "--access-token-duration", "10"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("300 to 259200"), "{}", text(&out.stderr));

    let out = cli(&["client", "add", "etl", "--role", "steward"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).unwrap().to_string();
    let (id, secret) = (field("client_id="), field("client_secret="));

    let out = cli(&["keys", "rotate", "--alg", "EdDSA"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(EdDSA)"));
    let listed = text(&cli(&["keys", "list"]).stdout);
    assert_eq!(
        listed.lines().filter(|l| l.ends_with(" ES256") || l.ends_with(" EdDSA")).count(),
        2,
        "{listed}"
    );
    assert!(!cli(&["keys", "rotate", "--alg", "HS256"]).status.success());

    let mut serve = keyward();
    serve.arg("--data-dir").arg(&data);
    let node = Node::start(serve).await;
    let r = reqwest::Client::new()
        .post(format!("{}/oauth/v2/token/", node.base))
        .form(&[("grant_type", "client_credentials"), ("client_id", &id), ("client_secret", &secret)])
        .send()
        .await
        .unwrap();
    let body = json_with_status(r, 200).await;
    let jwks =
        json_with_status(reqwest::get(format!("{}/.well-known/jwks.json", node.base)).await.unwrap(), 200)
            .await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = keyward();
    first.arg("--data-dir").arg(&data);
    let node = Node::start(first).await;
    let mut second = keyward();
    second.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data);
    let out = run(second, "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("SQLite is for one node"), "{}", text(&out.stderr));
    // CLI commands still work beside the one server.
    let mut conf = keyward();
    conf.args(["conf", REFRESH_KEY, "--data-dir"]).arg(&data);
    assert!(run(conf, "").status.success());
    assert!(node.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_without_downtime() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cli = |args: &[&str], key: Option<&str>| {
        let mut c = keyward();
        c.args(args).arg("--data-dir").arg(&data);
        if let Some(k) = key {
            c.env("KEYWARD_MASTER_KEY", k);
        }
        run(c, "")
    };
    let out = cli(&["client", "add", "etl", "--role", "viewer"], None);
    let stdout = text(&out.stdout);
    let field = |name: &str| stdout.lines().find_map(|l| l.strip_prefix(name)).unwrap().to_string();
    let (id, secret) = (field("client_id="), field("client_secret="));
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap().trim().to_string();

    let mut serve = keyward();
    serve.arg("--data-dir").arg(&data);
    let node = Node::start(serve).await;
    let token = |base: &str| {
        reqwest::Client::new()
            .post(format!("{base}/oauth/v2/token/"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ])
            .send()
    };
    json_with_status(token(&node.base).await.unwrap(), 200).await;

    let out = cli(&["keys", "rotate-master"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_key = std::fs::read_to_string(data.join("master.key")).unwrap().trim().to_string();
    assert_ne!(new_key, old_key);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(std::fs::read_to_string(data.join("master.key.previous")).unwrap().trim(), old_key);
    // The running node goes on; both keys open the database.
    json_with_status(token(&node.base).await.unwrap(), 200).await;
    for key in [&old_key, &new_key] {
        let out = cli(&["conf", REFRESH_KEY], Some(key));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(node.terminate().success());

    // Restarted on the new key file, then the old key retired.
    let mut serve = keyward();
    serve.arg("--data-dir").arg(&data);
    let node = Node::start(serve).await;
    let out = cli(&["keys", "rotate-master", "--retire-old"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!data.join("master.key.previous").exists());
    let out = cli(&["conf", REFRESH_KEY], Some(&old_key));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("master key does not match"), "{}", text(&out.stderr));
    json_with_status(token(&node.base).await.unwrap(), 200).await;
    assert!(node.terminate().success());
}

/// SIGTERM as soon as the port answers, while the node is still opening
/// its database and creating the first admin: it finishes starting and
/// stops gracefully (found by an outside review: it was killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_stops_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = keyward()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(tmp.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keyward never listened");
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "keyward did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// Resident memory of a running node, in KiB.
fn resident_kib(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Each password check borrows ~19 MiB (argon2) on a blocking thread; the
/// binary's allocator gives those blocks back when the check ends, instead
/// of keeping one per thread (docs/performance.md, steps 3 and 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_give_their_memory_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = keyward();
    cmd.arg("--data-dir").arg(tmp.path().join("data")).env("KEYWARD_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let node = Node::start(cmd).await;
    let http = reqwest::Client::new();
    let sign_in = || {
        http.post(format!("{}/integration/v1/createRefreshToken/", node.base))
            .form(&[("username", "admin"), ("password", ADMIN_PASSWORD), ("name", "memory")])
            .send()
    };
    json_with_status(sign_in().await.unwrap(), 201).await;
    let before = resident_kib(&node);
    for _ in 0..3 {
        let answers = futures_util::future::join_all((0..4).map(|_| sign_in())).await;
        for r in answers {
            json_with_status(r.unwrap(), 201).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = resident_kib(&node);
    assert!(after < before + 10 * 1024, "resident memory grew from {before} KiB to {after} KiB");
}

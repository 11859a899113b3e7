//! Test harness: start keyward in-process against a fresh database.

use keyward::app::App;
use keyward::config::NodeConfig;
use keyward::crypto::{SecretKind, new_secret};
use keyward::domain::audit::AuditEvent;
use keyward::domain::{Actor, Role, User, now, to_micros};
use keyward::store::{NewApiAccessToken, NewRefreshToken};
use sqlx::Connection;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// Base64 of 32 bytes; every node of a test shares it, as real nodes must.
pub const MASTER_KEY: &str = "a2V5d2FyZC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `sqlite::NAME` and
/// `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )+
        }
    };
}

/// The PostgreSQL server of the test run. Missing is a failure, not a skip.
pub fn postgres_admin_url() -> String {
    std::env::var("KEYWARD_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "KEYWARD_TEST_POSTGRES_URL is not set: run the suite with ./scripts/test, \
             which starts a throwaway PostgreSQL"
        )
    })
}

/// A new empty database: a SQLite file in `dir`, or a new PostgreSQL database.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/keyward.db?mode=rwc", dir.display()),
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let name = format!(
                "kw_{}",
                keyward::crypto::random_bytes::<8>().iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to test PostgreSQL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            url.to_string()
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    pub database_url: String,
    dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_at(backend, "127.0.0.1").await
    }

    /// A server on another loopback address: another host to a browser,
    /// which keeps cookies per host, not per port.
    pub async fn start_at(backend: Backend, host: &str) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let url = fresh_database(backend, dir.path()).await;
        Self::start_node(&url, dir, None, host, |_| {}).await
    }

    /// A server on the database at `database_url` (which the caller made).
    pub async fn start_on(database_url: &str) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_node(database_url, dir, None, "127.0.0.1", |_| {}).await
    }

    /// Another node of this one's PostgreSQL database that hears other
    /// nodes' changes through `notify_url`.
    pub async fn another_node_hearing_through(&self, notify_url: &str) -> TestServer {
        let notify_url = notify_url.to_string();
        Self::start_node(
            &self.database_url,
            self.dir.clone(),
            Some(self.app.issuer.clone()),
            "127.0.0.1",
            |c| c.notify_database_url = Some(notify_url),
        )
        .await
    }

    /// A server that holds at most `max_connections` and waits `head_timeout`
    /// seconds for a request head.
    pub async fn start_limited(backend: Backend, max_connections: usize, head_timeout: u64) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let url = fresh_database(backend, dir.path()).await;
        Self::start_node(&url, dir, None, "127.0.0.1", |c| {
            c.max_connections = Some(max_connections);
            c.head_timeout = head_timeout;
        })
        .await
    }

    /// A server behind a load balancer: `proxies` (comma-separated
    /// addresses and networks) may name the caller in `X-Forwarded-For`.
    pub async fn start_behind_proxy(backend: Backend, proxies: &str) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let url = fresh_database(backend, dir.path()).await;
        Self::start_node(&url, dir, None, "127.0.0.1", |c| c.trusted_proxies = Some(proxies.into())).await
    }

    /// A server whose issuer is `issuer` (say an https URL), reached over
    /// plain HTTP on loopback as the tests reach every server.
    pub async fn start_with_issuer(backend: Backend, issuer: &str) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let url = fresh_database(backend, dir.path()).await;
        Self::start_node(&url, dir, Some(issuer.into()), "127.0.0.1", |_| {}).await
    }

    /// Another node on the same database, with the same master key and
    /// issuer, as nodes behind one load balancer are. SQLite is the
    /// single-node store (`keyward serve` refuses a second server on one
    /// file), so there "another node" is this same node.
    pub async fn another_node(&self) -> TestServer {
        if self.database_url.starts_with("sqlite:") {
            return TestServer {
                base: self.base.clone(),
                app: self.app.clone(),
                http: self.http.clone(),
                database_url: self.database_url.clone(),
                dir: self.dir.clone(),
                shutdown: None,
            };
        }
        let host = url::Url::parse(&self.base).unwrap().host_str().unwrap().to_string();
        Self::start_node(&self.database_url, self.dir.clone(), Some(self.app.issuer.clone()), &host, |_| {})
            .await
    }

    /// This node stopped and started again on its database, with the same
    /// issuer and master key: nothing held only in its memory survives.
    pub async fn restart(mut self) -> TestServer {
        let (url, dir, issuer) = (self.database_url.clone(), self.dir.clone(), self.app.issuer.clone());
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.app.store.close().await;
        drop(self);
        Self::start_node(&url, dir, Some(issuer), "127.0.0.1", |_| {}).await
    }

    async fn start_node(
        database_url: &str,
        dir: Arc<TempDir>,
        issuer: Option<String>,
        host: &str,
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            database_url: Some(database_url.to_string()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            master_key: Some(MASTER_KEY.into()),
            issuer,
            ..NodeConfig::default()
        };
        adjust(&mut config);
        let (app, _) =
            keyward::bootstrap::open(&config, config.issuer_for(addr), true).await.expect("bootstrap");
        // The tests' providers and APIs listen on loopback, as development
        // setups do; a test of the default turns this off again.
        app.set_setting(Actor::Cli, keyward::domain::settings::OUTBOUND_ALLOW_PRIVATE, "true")
            .await
            .expect("allow loopback providers");
        let (tx, rx) = oneshot::channel::<()>();
        let policy = config.connection_policy().expect("connection policy");
        tokio::spawn(keyward::server::serve(listener, app.clone(), policy, async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            app,
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            database_url: database_url.to_string(),
            dir,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `request` as raw bytes on a new connection; everything the
    /// server sent until it closed, or `None` if it had not closed after 5 s.
    pub async fn raw_exchange(&self, request: &[u8]) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream =
            tokio::net::TcpStream::connect(self.base.strip_prefix("http://").unwrap()).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        read.ok().map(|_| String::from_utf8_lossy(&answer).into_owned())
    }

    pub async fn user_named(&self, username: &str) -> User {
        self.app.store.user_credentials(username).await.unwrap().expect("user exists").0
    }

    /// An API access token for `user`, made directly in the store (the token
    /// endpoints are not what these tests are about).
    pub async fn token_for(&self, user: &User) -> String {
        self.token_with_expiry(user, 3600).await
    }

    pub async fn token_with_expiry(&self, user: &User, seconds: i64) -> String {
        issue_token(&self.app, user, seconds).await
    }

    /// Changes a setting as the operator would at the command line.
    pub async fn set(&self, key: &str, value: &str) {
        self.app.set_setting(Actor::Cli, key, value).await.unwrap();
    }

    pub async fn admin_token(&self) -> String {
        let admin = self.user_named("admin").await;
        self.token_for(&admin).await
    }

    /// A new user with `role` and a token for it.
    pub async fn token_for_role(&self, role: Role) -> String {
        let name = format!("{}-{}", role, keyward::crypto::random_string::<6>());
        let user = self.app.create_user(Actor::System, &name, Some("password-123"), role).await.unwrap();
        self.token_for(&user).await
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).header("TOKEN", token)
    }

    pub fn send(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).header("TOKEN", token)
    }
}

impl TestServer {
    /// A new M2M client through the admin API: (client_id, client_secret).
    pub async fn m2m_client(&self, role: &str, access_token_duration: i64) -> (String, String) {
        let token = self.admin_token().await;
        let r = self
            .send(reqwest::Method::POST, "/admin/api/m2m_clients/", &token)
            .json(&serde_json::json!({"name": "test client", "access_token_duration": access_token_duration, "role": role}))
            .send()
            .await
            .unwrap();
        let body = json_with_status(r, 201).await;
        (body["client_id"].as_str().unwrap().to_string(), body["client_secret"].as_str().unwrap().to_string())
    }

    /// PATCHes the M2M client `id` with `body` through the admin API, as the
    /// holder of `token`.
    pub async fn patch_m2m_client(
        &self,
        id: &str,
        token: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let path = format!("/admin/api/m2m_clients/{id}/");
        self.send(reqwest::Method::PATCH, &path, token).json(&body).send().await.unwrap()
    }

    /// POSTs `form` to the token endpoint.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url("/oauth/v2/token/")).form(form).send().await.unwrap()
    }

    /// A client-credentials JWT for the client (client_secret_post).
    pub async fn client_jwt(&self, id: &str, secret: &str) -> String {
        let r = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .await;
        json_with_status(r, 200).await["access_token"].as_str().unwrap().to_string()
    }
}

/// The OAuth error shape (RFC 6749 §5.2) with status and code; returns the
/// description.
pub async fn oauth_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let cache = response.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
    let body = json_with_status(response, status).await;
    assert_eq!(body["error"], code, "error code in {body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    body["error_description"].as_str().expect("error_description").to_string()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An API access token for `user` valid for `seconds`, made directly in the
/// store (the token endpoints are not what these tests are about).
pub async fn issue_token(app: &App, user: &User, seconds: i64) -> String {
    let at = to_micros(now());
    let refresh = new_secret(SecretKind::RefreshToken);
    let event = || AuditEvent::success(Actor::System, "test.token", format!("user:{}", user.id));
    let refresh_id = app
        .store
        .create_refresh_token(
            NewRefreshToken {
                max_active: i64::MAX,
                user_id: user.id,
                name: "test".into(),
                token_hash: app.secrets.digest(&refresh),
                created_at: at,
                expires_at: at + 86_400_000_000,
            },
            event(),
        )
        .await
        .unwrap();
    let token = new_secret(SecretKind::ApiAccessToken);
    let access = NewApiAccessToken {
        refresh_token_id: refresh_id,
        user_id: user.id,
        token_hash: app.secrets.digest(&token),
        created_at: at,
        expires_at: at + seconds * 1_000_000,
    };
    app.store.create_api_access_token(access, event()).await.unwrap();
    token
}

/// The JSON body of `response`, asserting its status first.
pub async fn json_with_status(response: reqwest::Response, status: u16) -> serde_json::Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text}"))
}

/// Asserts the API error shape with status and code; returns the detail.
pub async fn api_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let body = json_with_status(response, status).await;
    assert_eq!(body["error"], code, "error code in {body}");
    body["detail"].as_str().expect("detail is a string").to_string()
}

/// The `oauth2` crate's HTTP client, over this crate's reqwest.
pub async fn oauth2_http(request: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, std::io::Error> {
    let client = reqwest::Client::new();
    let (parts, body) = request.into_parts();
    let mut builder = client.request(parts.method, parts.uri.to_string()).body(body);
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.map_err(std::io::Error::other)?;
    let mut out = oauth2::http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        out = out.header(name.as_str(), value.as_bytes());
    }
    let bytes = response.bytes().await.map_err(std::io::Error::other)?;
    out.body(bytes.to_vec()).map_err(std::io::Error::other)
}

/// Everything the database holds, as bytes an attacker would get: the
/// SQLite file with its WAL, or `pg_dump`'s output.
pub fn database_dump(s: &TestServer) -> String {
    let bytes = if let Some(rest) = s.database_url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap().to_string();
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
            bytes.extend(wal);
        }
        bytes
    } else {
        let out = std::process::Command::new("pg_dump").arg(&s.database_url).output().expect("pg_dump runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A body far over the limit: answered 413, or cut off while it was still
/// being sent (the server answers and closes without reading it all).
pub fn refused_as_too_large(sent: Result<reqwest::Response, reqwest::Error>) {
    match sent {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
}

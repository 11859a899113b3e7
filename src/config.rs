//! Node configuration (SPEC §5): defaults, then a TOML config file, then
//! `KEYWARD_*` environment variables, then command-line flags; later wins.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Deserialize, Serialize)]
pub struct NodeConfig {
    pub listen: String,
    /// `None`: `http://` and the address keyward listens on.
    pub issuer: Option<String>,
    pub data_dir: PathBuf,
    /// `None`: a SQLite file in the data dir.
    pub database_url: Option<String>,
    /// PostgreSQL: where the connection that hears other nodes' changes
    /// goes, when `database_url` passes through a pooler in transaction
    /// mode (which does not carry `LISTEN`). `None`: `database_url`.
    pub notify_database_url: Option<String>,
    pub log_format: LogFormat,
    /// Password of the first admin; random when absent.
    pub admin_password: Option<String>,
    /// Base64 of 32 bytes; generated into the data dir when absent.
    pub master_key: Option<String>,
    /// Connections served at once; `None`: three quarters of the file
    /// descriptor limit.
    pub max_connections: Option<usize>,
    /// Seconds a request head may take, and an idle connection may wait.
    pub head_timeout: u64,
    /// Addresses and networks (comma-separated) of the load balancers whose
    /// `X-Forwarded-For` names the caller; `None`: the peer is the caller.
    pub trusted_proxies: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: "127.0.0.1:8080".into(),
            issuer: None,
            data_dir: PathBuf::from("./keyward-data"),
            database_url: None,
            notify_database_url: None,
            log_format: LogFormat::Text,
            admin_password: None,
            master_key: None,
            max_connections: None,
            head_timeout: 10,
            trusted_proxies: None,
        }
    }
}

// Secrets stay out of debug output.
impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("listen", &self.listen)
            .field("issuer", &self.issuer)
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("notify_database_url", &self.notify_database_url.as_deref().map(redact_url))
            .field("log_format", &self.log_format)
            .finish_non_exhaustive()
    }
}

/// Flag values given on the command line; `None` means "not given".
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<String>,
}

const ENV_KEYS: [&str; 11] = [
    "listen",
    "issuer",
    "data_dir",
    "database_url",
    "notify_database_url",
    "log_format",
    "admin_password",
    "master_key",
    "max_connections",
    "head_timeout",
    "trusted_proxies",
];

impl NodeConfig {
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(NodeConfig::default()));
        if let Some(path) = config_file {
            anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: NodeConfig = figment
            .merge(Env::prefixed("KEYWARD_").only(&ENV_KEYS))
            .merge(Serialized::defaults(overrides))
            .extract()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!(
                "listen must be an address and port such as 127.0.0.1:8080, got {:?}",
                self.listen
            )
        })?;
        if let Some(issuer) = &self.issuer {
            validate_issuer(issuer)?;
        }
        if let Some(url) = &self.notify_database_url {
            let postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
            anyhow::ensure!(
                postgres(url) && self.database_url.as_deref().is_some_and(postgres),
                "notify_database_url must be a postgres:// URL, beside a PostgreSQL database_url"
            );
        }
        anyhow::ensure!(self.max_connections.is_none_or(|n| n >= 1), "max_connections must be at least 1");
        anyhow::ensure!((1..=300).contains(&self.head_timeout), "head_timeout must be 1 to 300 seconds");
        self.proxies()?;
        Ok(())
    }

    /// What this node lets its clients hold, and whose word it takes for
    /// their addresses.
    pub fn connection_policy(&self) -> anyhow::Result<crate::server::ConnectionPolicy> {
        let mut policy = crate::server::ConnectionPolicy::for_this_process();
        if let Some(n) = self.max_connections {
            policy.max_connections = n;
        }
        policy.head_timeout = std::time::Duration::from_secs(self.head_timeout);
        policy.trusted_proxies = std::sync::Arc::new(self.proxies()?);
        Ok(policy)
    }

    fn proxies(&self) -> anyhow::Result<crate::http::client_addr::TrustedProxies> {
        let list = self.trusted_proxies.as_deref().unwrap_or_default();
        crate::http::client_addr::TrustedProxies::parse(list)
            .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))
    }

    /// The configured issuer, or one derived from the address actually bound
    /// (a wildcard address becomes loopback: set `--issuer` for real traffic).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        if let Some(issuer) = &self.issuer {
            return issuer.clone();
        }
        let mut addr = bound;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// The database URL, defaulting to `<data_dir>/keyward.db`.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let dir = std::fs::canonicalize(&self.data_dir)?;
        let path = dir.join("keyward.db");
        let path = path.to_str().ok_or_else(|| anyhow::anyhow!("data dir path is not UTF-8"))?;
        anyhow::ensure!(
            !path.contains(['?', '#', '%']),
            "data dir path may not contain '?', '#' or '%': {path}"
        );
        Ok(format!("sqlite://{path}?mode=rwc"))
    }
}

/// RFC 8414 §2: an https (or, for development, http) URL with no query or
/// fragment. keyward also refuses a trailing slash, because strict clients
/// compare the issuer byte for byte and `https://x/` ≠ `https://x`.
pub fn validate_issuer(issuer: &str) -> anyhow::Result<()> {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .ok_or_else(|| anyhow::anyhow!("issuer must start with https:// or http://, got {issuer:?}"))?;
    let host = rest.split('/').next().unwrap_or("");
    anyhow::ensure!(!host.is_empty(), "issuer has no host: {issuer:?}");
    anyhow::ensure!(!issuer.contains(['?', '#']), "issuer may not have a query or fragment: {issuer:?}");
    anyhow::ensure!(!issuer.ends_with('/'), "issuer may not end with '/': {issuer:?}");
    anyhow::ensure!(
        !issuer.chars().any(|c| c.is_whitespace() || c.is_control()),
        "issuer has spaces: {issuer:?}"
    );
    Ok(())
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_rules() {
        assert!(validate_issuer("http://127.0.0.1:8080").is_ok());
        assert!(validate_issuer("https://auth.example.com/tenant").is_ok());
        assert!(validate_issuer("https://auth.example.com/").is_err());
        assert!(validate_issuer("ftp://x").is_err());
        assert!(validate_issuer("https://").is_err());
        assert!(validate_issuer("https://x?a=b").is_err());
    }

    #[test]
    fn a_notify_url_goes_with_postgresql_only() {
        let with = |database: Option<&str>, notify: &str| NodeConfig {
            database_url: database.map(str::to_string),
            notify_database_url: Some(notify.to_string()),
            ..NodeConfig::default()
        };
        assert!(with(Some("postgres://h/db"), "postgres://direct/db").validate().is_ok());
        assert!(with(None, "postgres://direct/db").validate().is_err());
        assert!(with(Some("sqlite:///x.db"), "postgres://direct/db").validate().is_err());
        assert!(with(Some("postgres://h/db"), "mysql://direct/db").validate().is_err());
        let shown = format!("{:?}", with(Some("postgres://h/db"), "postgres://u:secret@direct/db"));
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let with = |list: &str| NodeConfig { trusted_proxies: Some(list.into()), ..NodeConfig::default() };
        assert!(with("10.0.0.0/8, 192.0.2.7, 2001:db8::/32").validate().is_ok());
        let e = with("10.0.0.0/8, lb.internal").validate().unwrap_err().to_string();
        assert!(e.contains("trusted_proxies") && e.contains("lb.internal"), "{e}");
        assert!(
            with("10.0.0.0/8").connection_policy().unwrap().trusted_proxies.caller(
                "10.0.0.1:80".parse().unwrap(),
                &[(
                    axum::http::header::HeaderName::from_static("x-forwarded-for"),
                    "203.0.113.1".parse().unwrap()
                )]
                .into_iter()
                .collect()
            ) == "203.0.113.1:0".parse().unwrap()
        );
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nissuer = \"https://file.example\"\n").unwrap();
        let o = Overrides { issuer: Some("https://flag.example".into()), ..Default::default() };
        let c = NodeConfig::load(Some(&file), &o).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.issuer.as_deref(), Some("https://flag.example"));
        let bound: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(NodeConfig::default().issuer_for(bound), "http://127.0.0.1:8443");
        assert_eq!(c.issuer_for(bound), "https://flag.example");
        assert!(NodeConfig::load(Some(&dir.path().join("missing.toml")), &o).is_err());
        let bad = Overrides { listen: Some("nowhere".into()), ..Default::default() };
        assert!(NodeConfig::load(None, &bad).is_err());
    }
}

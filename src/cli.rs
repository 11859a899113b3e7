//! The `keyward` command line (SPEC §5).

use crate::bootstrap;
use crate::config::{LogFormat, NodeConfig, Overrides};
use crate::domain::{Actor, Role};
use clap::{Args, Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "keyward", version, about = "Identity and credential hub of a data platform")]
pub struct Cli {
    /// TOML config file; its keys are the long flag names with '_' for '-'.
    #[arg(long, env = "KEYWARD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct NodeArgs {
    /// Address and port to listen on [default: 127.0.0.1:8080]
    #[arg(long, global = true)]
    listen: Option<String>,
    /// The issuer URL, byte-identical in metadata, tokens and redirects [default: http:// and the listen address]
    #[arg(long, global = true)]
    issuer: Option<String>,
    /// Directory for the SQLite database and key files [default: ./keyward-data]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// postgres://… for PostgreSQL [default: SQLite in the data dir]
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// postgres://… for the connection that hears other nodes' changes, when the database URL goes through a pooler in transaction mode [default: the database URL]
    #[arg(long, global = true)]
    notify_database_url: Option<String>,
    /// Log format [default: text]
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Connections served at once; more get 503 [default: 3/4 of the file descriptor limit]
    #[arg(long, global = true)]
    max_connections: Option<usize>,
    /// Load balancers whose X-Forwarded-For names the caller: addresses and networks, comma-separated, e.g. 10.0.1.0/24; only the balancers, as each can name any caller [default: none]
    #[arg(long, global = true)]
    trusted_proxies: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Print a setting, or change it with -s.
    Conf {
        key: String,
        /// The new value.
        #[arg(short = 's', long = "set")]
        set: Option<String>,
        /// Return the setting to its default.
        #[arg(long, conflicts_with = "set")]
        reset: bool,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage machine-to-machine OAuth clients.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Manage JWT signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Add an M2M client; prints its client_id and, this once, its secret.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Access token lifetime in seconds (300 to 259200).
        #[arg(long, default_value_t = 3600)]
        access_token_duration: i64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new signing key; the current one keeps verifying for
    /// keyward.oauth.signing_key_rotation_overlap seconds.
    Rotate {
        /// ES256, EdDSA or RS256 [default: the keyward.oauth.signing_algorithm setting]
        #[arg(long)]
        alg: Option<crate::crypto::SigningAlgorithm>,
    },
    /// List the published signing keys.
    List,
    /// Wrap the data keys under a new master key (generated, or from a file),
    /// without downtime: nodes may restart with either key until
    /// `--retire-old`. With the data dir's key file, the file is replaced.
    RotateMaster {
        /// A file holding the new key (base64 of 32 bytes).
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Once every node runs with the new key: forget the old ones.
        #[arg(long, conflicts_with = "new_key_file")]
        retire_old: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from the first line of standard input.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// An SSO-only user without a password (reads nothing from stdin).
        #[arg(long)]
        sso: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: crate::domain::role::UnknownRole| e.to_string())
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.node.listen,
        issuer: cli.node.issuer,
        data_dir: cli.node.data_dir,
        database_url: cli.node.database_url,
        notify_database_url: cli.node.notify_database_url,
        log_format: cli.node.log_format,
        max_connections: cli.node.max_connections,
        trusted_proxies: cli.node.trusted_proxies,
    };
    let config = match NodeConfig::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keyward: configuration: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command, config: NodeConfig) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Conf { key, set, reset } => {
            let (app, _) = open_for_cli(&config).await?;
            let value = match (set, reset) {
                (Some(v), _) => app.set_setting(Actor::Cli, &key, &v).await?,
                (None, true) => app.reset_setting(Actor::Cli, &key).await?,
                (None, false) => app.setting(&key).await?,
            };
            println!("{value}");
            Ok(())
        }
        Command::Client { command: ClientCommand::Add { name, role, access_token_duration } } => {
            let (app, _) = open_for_cli(&config).await?;
            let created = app.create_m2m_client(Actor::Cli, &name, access_token_duration, role).await?;
            println!("client_id={}", created.client.client_id);
            println!("client_secret={}", created.client_secret);
            Ok(())
        }
        Command::Keys { command } => {
            let (app, _) = open_for_cli(&config).await?;
            match command {
                KeysCommand::Rotate { alg } => {
                    let (kid, alg) = app.rotate_signing_key(Actor::Cli, alg).await?;
                    println!(
                        "new signing key {kid} ({alg}); the previous key keeps verifying during the overlap"
                    );
                }
                KeysCommand::RotateMaster { new_key_file, retire_old } => {
                    rotate_master(&app, &config, new_key_file, retire_old).await?
                }
                KeysCommand::List => {
                    let keys = app.keys.current();
                    for jwk in keys.jwks["keys"].as_array().into_iter().flatten() {
                        println!(
                            "{} {}",
                            jwk["kid"].as_str().unwrap_or(""),
                            jwk["alg"].as_str().unwrap_or("")
                        );
                    }
                    println!("signing with {}", keys.signing_key().kid);
                }
            }
            Ok(())
        }
        Command::User { command: UserCommand::Add { name, role, sso } } => {
            let password = if sso {
                None
            } else {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                let line = line.trim_end_matches(['\r', '\n']).to_string();
                anyhow::ensure!(
                    !line.is_empty(),
                    "no password on standard input (use --sso for an SSO-only user)"
                );
                Some(line)
            };
            let (app, _) = open_for_cli(&config).await?;
            let user = app.create_user(Actor::Cli, &name, password.as_deref(), role).await?;
            println!("created user {} (id {}, role {})", user.username, user.id, user.role);
            Ok(())
        }
    }
}

const PREVIOUS_MASTER_KEY_FILE: &str = "master.key.previous";

async fn rotate_master(
    app: &crate::app::App,
    config: &NodeConfig,
    new_key_file: Option<PathBuf>,
    retire_old: bool,
) -> anyhow::Result<()> {
    let previous = config.data_dir.join(PREVIOUS_MASTER_KEY_FILE);
    if retire_old {
        let retired = app.retire_other_master_keys(Actor::Cli).await?;
        if previous.exists() {
            std::fs::remove_file(&previous)?;
        }
        println!(
            "retired {retired} other master key(s); only {} opens this database now",
            app.master_key.fingerprint()
        );
        return Ok(());
    }
    let (new, text) = match &new_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            (crate::crypto::MasterKey::parse(&text)?, text.trim().to_string())
        }
        None => crate::crypto::MasterKey::generate(),
    };
    app.add_master_key(Actor::Cli, &new).await?;
    if config.master_key.is_none() {
        // The data dir's key file: swap it, keeping the old one until --retire-old.
        let current = config.data_dir.join(crate::crypto::MASTER_KEY_FILE);
        std::fs::rename(&current, &previous)?;
        crate::crypto::write_private_file(&current, format!("{text}\n").as_bytes())?;
        println!(
            "master key {} added; {} now holds it (the old one is in {})",
            new.fingerprint(),
            current.display(),
            previous.display()
        );
        println!("restart keyward, then run: keyward keys rotate-master --retire-old");
    } else {
        println!("master key {} added; both keys open the database now", new.fingerprint());
        if new_key_file.is_none() {
            println!("new KEYWARD_MASTER_KEY (shown once): {text}");
        }
        println!(
            "set it as KEYWARD_MASTER_KEY on every node, restart them, then run: keyward keys rotate-master --retire-old"
        );
    }
    Ok(())
}

/// CLI commands do not listen; the issuer they see is the configured one.
async fn open_for_cli(
    config: &NodeConfig,
) -> anyhow::Result<(std::sync::Arc<crate::app::App>, bootstrap::StartupReport)> {
    let listen = config.listen.parse()?;
    bootstrap::open(config, config.issuer_for(listen), false).await
}

async fn serve(config: NodeConfig) -> anyhow::Result<()> {
    // Before anything else: a SIGTERM while starting (the port may already
    // answer) waits for the start to finish and then stops it gracefully.
    let shutdown = crate::server::shutdown_signal();
    // Bind first: a taken port fails before anything is written.
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    bootstrap::create_private_dir(&config.data_dir)?;
    let _lock = bootstrap::lock_for_serving(&config)?;
    let (app, report) = bootstrap::open(&config, config.issuer_for(addr), true).await?;
    // Operator-facing lines go to stdout, once; logs go to stderr.
    println!("keyward listening on http://{addr} (issuer {})", app.issuer);
    println!("database: {}", report.database);
    if let Some(path) = &report.created_master_key {
        println!(
            "created master key {} (back it up; other nodes need it as KEYWARD_MASTER_KEY)",
            path.display()
        );
    }
    match (&report.admin_password, &report.admin_password_file) {
        (Some(password), Some(path)) => {
            println!("initial admin password for user 'admin': {password}");
            println!("initial admin password written to {}", path.display());
            println!("admin console: {}/admin/ (the first sign-in asks for a new password)", app.issuer);
        }
        _ if report.admin_created => {
            println!("created user 'admin' with the password from KEYWARD_ADMIN_PASSWORD")
        }
        _ => {}
    }
    if report.admin_created {
        println!(
            "sign in at {}/ (admins reach the console at /admin/, users their Account Settings)",
            app.issuer
        );
    }
    let store = app.store.clone();
    let policy = config.connection_policy()?;
    tracing::info!(
        max_connections = policy.max_connections,
        head_timeout_s = policy.head_timeout.as_secs(),
        trusted_proxies = config.trusted_proxies.as_deref().unwrap_or("none"),
        "serving"
    );
    crate::server::serve(listener, app, policy, shutdown).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

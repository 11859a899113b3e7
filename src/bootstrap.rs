//! First start and every start: data dir, master key, database and
//! migrations, data keys, and the first admin.

use crate::app::{App, AppError};
use crate::config::{NodeConfig, redact_url};
use crate::crypto::{MasterKey, MasterKeySource, random_string};
use crate::domain::audit::AuditEvent;
use crate::domain::{Actor, Role};
use crate::store::{NewUser, Store};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";
pub const ADMIN_USERNAME: &str = "admin";

/// What a start did that the operator must hear about.
#[derive(Debug, Default)]
pub struct StartupReport {
    pub database: String,
    pub created_master_key: Option<PathBuf>,
    /// Set when this start created the admin with a random password.
    pub admin_password_file: Option<PathBuf>,
    pub admin_password: Option<String>,
    pub admin_created: bool,
}

/// Opens the store and the app with `issuer`; `create_admin` is false for CLI
/// commands, which must not consume the one-time first-admin creation.
pub async fn open(
    config: &NodeConfig,
    issuer: String,
    create_admin: bool,
) -> anyhow::Result<(Arc<App>, StartupReport)> {
    create_private_dir(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let url = config.database_url()?;
    let mut store =
        Store::open(&url).await.with_context(|| format!("cannot open database {}", redact_url(&url)))?;
    if let Some(notify_url) = &config.notify_database_url {
        store.hear_changes_through(notify_url);
    }
    let (master_key, source) = MasterKey::load_or_create(&config.data_dir, config.master_key.as_deref())?;
    let mut report = StartupReport { database: redact_url(&url), ..Default::default() };
    if let MasterKeySource::CreatedFile(path) = source {
        report.created_master_key = Some(path);
    }
    let app = App::new(Arc::new(store), master_key, issuer).await.map_err(|e| match e {
        AppError::Startup(m) => anyhow::anyhow!(m),
        e => anyhow::anyhow!(e),
    })?;
    if create_admin {
        create_first_admin(&app, config, &mut report).await?;
    }
    Ok((Arc::new(app), report))
}

async fn create_first_admin(
    app: &App,
    config: &NodeConfig,
    report: &mut StartupReport,
) -> anyhow::Result<()> {
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), false),
        None => (random_string::<18>(), true),
    };
    // A configured password that is easy to guess is warned about, not
    // refused: a node that started with it before must start again.
    let guessable = match crate::domain::user::validate_password(ADMIN_USERNAME, &password) {
        Err(crate::domain::user::UserInputError::GuessablePassword) => true,
        checked => {
            checked.context("KEYWARD_ADMIN_PASSWORD")?;
            false
        }
    };
    let hash = app.passwords.hash(&password).await?;
    let event = AuditEvent::success(Actor::System, "user.created", "user:admin").with_detail(
        serde_json::json!({"username": ADMIN_USERNAME, "role": Role::ServerAdmin, "first_start": true}),
    );
    let admin =
        NewUser { username: ADMIN_USERNAME.into(), password_hash: Some(hash), role: Role::ServerAdmin };
    if app.store.bootstrap_admin(admin, generated, event).await?.is_none() {
        return remove_changed_password_file(app, config).await;
    }
    report.admin_created = true;
    if guessable {
        tracing::warn!("KEYWARD_ADMIN_PASSWORD is easy to guess: change the admin's password");
    }
    if generated {
        let path = config.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
        crate::crypto::write_private_file(&path, format!("{password}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        report.admin_password_file = Some(path);
        report.admin_password = Some(password);
    }
    Ok(())
}

/// Removes the printed first password from the data dir once it no longer
/// signs in (the first sign-in must change it), so that no stale secret is
/// left lying about.
async fn remove_changed_password_file(app: &App, config: &NodeConfig) -> anyhow::Result<()> {
    let path = config.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
    let Ok(written) = std::fs::read_to_string(&path) else { return Ok(()) };
    let hash = app.store.user_credentials(ADMIN_USERNAME).await?.and_then(|(_, hash)| hash);
    if !app.passwords.verify(written.trim_end(), hash.as_deref()).await {
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the first admin's printed password: it was changed")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the first admin's changed password file stays")
            }
        }
    }
    Ok(())
}

/// Holds an exclusive lock on `<sqlite file>.serve-lock` for as long as it
/// lives: SQLite is the single-node store, and a second server on the same
/// file would serve from caches that never hear of the other's changes.
pub struct ServeLock(#[allow(dead_code)] Option<std::fs::File>);

/// Takes the serve lock when the database is a SQLite file.
pub fn lock_for_serving(config: &NodeConfig) -> anyhow::Result<ServeLock> {
    let url = config.database_url()?;
    let Some(rest) = url.strip_prefix("sqlite://") else { return Ok(ServeLock(None)) };
    let path = format!("{}.serve-lock", rest.split('?').next().unwrap_or(rest));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(ServeLock(Some(file))),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another keyward already serves this SQLite database ({path} is locked); \
             SQLite is for one node: run several nodes on PostgreSQL (--database-url postgres://…)"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {path}")),
    }
}

/// The data dir holds the database and keys: only its owner may enter it.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

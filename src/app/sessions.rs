//! Browser sign-ins: started by a password or a single sign-on, ended by
//! signing out, by their user from the account page, by idling past
//! `keyward.sessions.idle_timeout` or at `keyward.sessions.lifetime`.

use super::{App, AppError, UserPatch};
use crate::crypto::{SecretKind, new_secret};
use crate::domain::MICROS;
use crate::domain::audit::AuditEvent;
use crate::domain::settings::{SESSION_IDLE_TIMEOUT, SESSION_LIFETIME};
use crate::domain::{Actor, User, UserId, now, to_micros};
use crate::store::SessionRecord;
use serde_json::json;
use std::net::IpAddr;

/// A session's last use is written at most this often (not on every page).
const TOUCH_EVERY_MICROS: i64 = 60 * MICROS;

/// A new sign-in: the cookie's value and how long it may live.
pub struct SignIn {
    pub token: String,
    pub max_age_seconds: i64,
}

/// Who a session cookie signs in.
pub struct SignedIn {
    pub user: User,
    /// The first admin's printed password must be replaced before anything else.
    pub must_change_password: bool,
}

impl App {
    /// Signs a user in with a password.
    pub async fn start_session(
        &self,
        username: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<SignIn, AppError> {
        let user = self.verify_login(username, password, addr, "login").await?;
        self.open_session(&user, "password".into(), addr).await
    }

    /// A session for a user whose sign-in was checked (`method` says how).
    pub(super) async fn open_session(
        &self,
        user: &User,
        method: String,
        addr: IpAddr,
    ) -> Result<SignIn, AppError> {
        let token = new_secret(SecretKind::Session);
        let at = to_micros(now());
        let lifetime = self.setting(SESSION_LIFETIME).await?.as_i64().unwrap_or(28_800);
        self.store
            .create_session(&SessionRecord {
                id_hash: self.secrets.digest(&token),
                user_id: user.id,
                created_at: at,
                expires_at: at + lifetime * MICROS,
                last_seen_at: at,
                method: method.clone(),
                client_addr: Some(addr.to_string()),
            })
            .await?;
        let mut event =
            AuditEvent::success(Actor::User(user.id), "login.succeeded", format!("user:{}", user.id))
                .with_detail(json!({ "method": method }));
        event.client_addr = Some(addr.to_string());
        self.audit.record(event);
        Ok(SignIn { token, max_age_seconds: lifetime })
    }

    /// Signs a browser out: its session ends on every node.
    pub async fn end_session(&self, session: &str) -> Result<(), AppError> {
        Ok(self.store.delete_session(&self.secrets.digest(session)).await?)
    }

    /// The signed-in user of a session cookie, if it is still good; notes
    /// the use (to the minute) for the idle timeout. An error when that
    /// cannot be told now (never "signed out" for an outage).
    pub async fn session_user(&self, session: &str) -> Result<Option<SignedIn>, AppError> {
        if SecretKind::of(session) != Some(SecretKind::Session) || session.len() > 100 {
            return Ok(None);
        }
        let idle = self.setting(SESSION_IDLE_TIMEOUT).await?.as_i64().unwrap_or(3600);
        let at = to_micros(now());
        let id_hash = self.secrets.digest(session);
        let Some(found) = self.store.session_user(&id_hash, at, at - idle * MICROS).await? else {
            return Ok(None);
        };
        if at - found.last_seen_at >= TOUCH_EVERY_MICROS {
            if let Err(e) = self.store.touch_session(&id_hash, at).await {
                tracing::warn!(error = %e, "a session's last use was not recorded");
            }
        }
        Ok(Some(SignedIn { user: found.user, must_change_password: found.must_change_password }))
    }

    /// A user's sign-ins that have not expired, newest first, and which of
    /// them is `current` (the cookie's).
    pub async fn sign_ins(
        &self,
        user_id: UserId,
        current: &str,
    ) -> Result<Vec<(SessionRecord, bool)>, AppError> {
        let current = self.secrets.digest(current);
        let sessions = self.store.sessions_of(user_id, to_micros(now())).await?;
        Ok(sessions
            .into_iter()
            .map(|s| {
                let is_current = s.id_hash == current;
                (s, is_current)
            })
            .collect())
    }

    /// Ends one of the user's own sign-ins (named by its hash).
    pub async fn end_sign_in(&self, user_id: UserId, id_hash: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(Actor::User(user_id), "session.revoked", format!("user:{user_id}"));
        self.store.end_session_of(user_id, id_hash, event).await.map_err(|e| match e {
            crate::store::StoreError::NotFound => AppError::NotFound("you have no such sign-in".into()),
            e => e.into(),
        })
    }

    /// A signed-in user replaces their own password (the current one is
    /// checked, with the sign-in throttle). Every session and token made
    /// with the old one ends; the new sign-in is returned.
    pub async fn change_own_password(
        &self,
        user: &User,
        current: &str,
        new: &str,
        addr: IpAddr,
    ) -> Result<SignIn, AppError> {
        if new == current {
            return Err(AppError::Invalid("the new password must differ from the current one".into()));
        }
        // The hash the current password is checked against must still be
        // the stored one when the new one is written: of two changes made
        // with the same old password, only the first holds.
        let checked = self.store.user_credentials(&user.username).await?.and_then(|(_, hash)| hash);
        self.verify_login(&user.username, current, addr, "password_change").await.map_err(|e| match e {
            AppError::Unauthorized(_) => AppError::Invalid("the current password is wrong".into()),
            e => e,
        })?;
        let Some(checked) = checked else {
            return Err(AppError::Invalid("this account has no password".into()));
        };
        let patch = UserPatch {
            password: Some(new.to_string()),
            replaces_password_hash: Some(checked),
            ..Default::default()
        };
        let user = self.update_user(Actor::User(user.id), user.id, patch).await.map_err(|e| match e {
            AppError::NotFound(_) => {
                AppError::Conflict("the password was changed meanwhile; sign in with the new one".into())
            }
            e => e,
        })?;
        // The change forgot the account's networks; this one just proved
        // the password.
        self.remember_sign_in_network(&user.username, addr).await?;
        self.open_session(&user, "password".into(), addr).await
    }
}

//! Refresh tokens and API access tokens (`/integration/v1`, SPEC §1.3).

use super::{App, AppError};
use crate::crypto::{SecretKind, new_secret};
use crate::domain::api_token::{TokenStatus, validate_token_name};
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::settings::{ACCESS_TOKEN_LIFESPAN, REFRESH_TOKEN_LIFESPAN};
use crate::domain::throttle::{
    KNOWN_NETWORK_SECONDS, LockPolicy, WINDOW_SECONDS, account_key, account_lock_after, lock_after,
    network_of,
};
use crate::domain::user::{USERNAME_MAX, username_key};
use crate::domain::{Actor, AuthSource, User, UserId, now, to_micros};
use crate::domain::{MICROS, excerpt};
use crate::store::{
    ApiAccessTokenRecord, NewApiAccessToken, NewRefreshToken, RefreshTokenRecord, StoreError,
};
use serde_json::json;
use std::net::IpAddr;

/// Tokens this long are not ours; refused before any hashing.
pub const TOKEN_INPUT_MAX: usize = 256;
/// Active refresh tokens one user may hold: enough for every script, not
/// for an unbounded table.
pub const REFRESH_TOKENS_PER_USER: i64 = 100;
pub const PASSWORD_INPUT_MAX: usize = crate::domain::user::PASSWORD_MAX;

/// The same answer for an unknown user, a wrong password, an SSO-only or a
/// disabled account, so that it tells nothing about which.
const BAD_LOGIN: &str = "invalid username or password (accounts that sign in through SSO create refresh tokens \
                         at /account/auth)";
/// The same answer for an unknown token and another user's token.
const BAD_TOKEN: &str = "the token is not valid for this user";

impl App {
    /// Checks a password login, throttled per address, per account at that
    /// address, and per account overall (but not from a network the
    /// account signed in from lately). `via` names the entry point in the
    /// audit log. Every refusal looks the same.
    pub async fn verify_login(
        &self,
        username: &str,
        password: &str,
        addr: IpAddr,
        via: &'static str,
    ) -> Result<User, AppError> {
        if username.chars().count() > USERNAME_MAX || password.len() > PASSWORD_INPUT_MAX {
            return Err(AppError::Unauthorized(BAD_LOGIN.into()));
        }
        let user_key = username_key(username);
        let network = network_of(addr);
        let addr_key = format!("addr:{network}");
        let pair_key = format!("pair:{user_key}|{network}");
        let account_key = account_key(username);
        let at = to_micros(now());
        // Every attempt takes its failure slot before the password is
        // checked, atomically across requests and nodes: a burst cannot all
        // pass one check and then all count. The account-wide key is
        // charged only for attempts the address allowed, so one address
        // cannot push the account into its lock; and a network the account
        // signed in from lately neither meets nor feeds that lock.
        let known = self.store.knows_sign_in_network(&account_key, &network, at).await?;
        let mut keys: Vec<(String, LockPolicy<'_>)> =
            vec![(addr_key.clone(), &lock_after), (pair_key.clone(), &lock_after)];
        if !known {
            keys.push((account_key.clone(), &account_lock_after));
        }
        let reserved = self.store.reserve_attempt(&keys, at, at - WINDOW_SECONDS * MICROS, MICROS).await?;
        if let Some(until) = reserved {
            self.audit.record(login_event(username, addr, via, "locked"));
            return Err(AppError::TooManyRequests { retry_after: ((until - at) / MICROS).max(1) });
        }

        let found = self.store.user_credentials(username).await?;
        let (user, hash) = match &found {
            Some((u, h)) if u.auth_source == AuthSource::Password && !u.disabled => (Some(u), h.as_deref()),
            _ => (None, None),
        };
        // Verified even when there is no user, so both paths take as long.
        let verified = self.passwords.verify(password, hash).await;
        let Some(user) = user.filter(|_| verified) else {
            self.audit.record(login_event(username, addr, via, "bad credentials"));
            return Err(AppError::Unauthorized(BAD_LOGIN.into()));
        };
        // A success gives its slot back and clears the account's count.
        self.store.release_attempt(&addr_key, &lock_after).await?;
        // The account's count is cleared only by a success from a network
        // that takes part in it.
        let cleared = if known { vec![pair_key] } else { vec![pair_key, account_key] };
        self.store.clear_attempts(&cleared).await?;
        self.remember_sign_in_network(&user.username, addr).await?;
        Ok(user.clone())
    }

    /// Remembers that `username` signed in with its password from `addr`'s
    /// network, for [`KNOWN_NETWORK_SECONDS`].
    pub(super) async fn remember_sign_in_network(
        &self,
        username: &str,
        addr: IpAddr,
    ) -> Result<(), AppError> {
        let until = to_micros(now()) + KNOWN_NETWORK_SECONDS * MICROS;
        Ok(self.store.remember_sign_in_network(&account_key(username), &network_of(addr), until).await?)
    }

    /// `createRefreshToken`: a password login, then a refresh token.
    pub async fn create_refresh_token(
        &self,
        username: &str,
        password: &str,
        name: &str,
        addr: IpAddr,
    ) -> Result<(String, RefreshTokenRecord), AppError> {
        validate_token_name(name).map_err(AppError::Invalid)?;
        let user = self.verify_login(username, password, addr, "createRefreshToken").await?;
        self.issue_refresh_token(user.id, name, Some(addr)).await
    }

    /// A new refresh token for a user already known to be who they say (a
    /// checked password, or a signed-in session: SSO users have no password).
    pub async fn issue_refresh_token(
        &self,
        user_id: UserId,
        name: &str,
        addr: Option<IpAddr>,
    ) -> Result<(String, RefreshTokenRecord), AppError> {
        validate_token_name(name).map_err(AppError::Invalid)?;
        let at = to_micros(now());
        let days = self.setting(REFRESH_TOKEN_LIFESPAN).await?.as_i64().unwrap_or(60);
        let token = new_secret(SecretKind::RefreshToken);
        let record = RefreshTokenRecord {
            id: 0,
            user_id,
            name: name.to_string(),
            created_at: at,
            expires_at: at + days * 86_400 * MICROS,
            revoked_at: None,
            last_used_at: None,
        };
        let mut event =
            AuditEvent::success(Actor::User(user_id), "refresh_token.created", format!("user:{user_id}"))
                .with_detail(json!({"name": name, "lifespan_days": days}));
        event.client_addr = addr.map(|a| a.to_string());
        let new = NewRefreshToken {
            max_active: REFRESH_TOKENS_PER_USER,
            user_id,
            name: name.to_string(),
            token_hash: self.secrets.digest(&token),
            created_at: at,
            expires_at: record.expires_at,
        };
        let id = self.store.create_refresh_token(new, event).await?;
        Ok((token, RefreshTokenRecord { id, ..record }))
    }

    /// The refresh token `token` of `user_id`, whatever its status; another
    /// user's token is indistinguishable from an unknown one.
    async fn owned_refresh_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<RefreshTokenRecord, AppError> {
        if token.len() > TOKEN_INPUT_MAX {
            return Err(AppError::Unauthorized(BAD_TOKEN.into()));
        }
        let record = self.store.refresh_token_by_hash(&self.secrets.digest(token)).await?;
        let record = record
            .filter(|r| r.user_id == user_id)
            .ok_or_else(|| AppError::Unauthorized(BAD_TOKEN.into()))?;
        self.token_owner_enabled(user_id).await?;
        Ok(record)
    }

    /// The reference's 403 for a token of a disabled account (asked after
    /// the token is known to be this user's, so only its holder learns it).
    async fn token_owner_enabled(&self, user_id: UserId) -> Result<(), AppError> {
        match self.store.user(user_id).await? {
            Some(u) if !u.disabled => Ok(()),
            Some(_) => Err(AppError::Forbidden("the account is disabled".into())),
            None => Err(AppError::Unauthorized(BAD_TOKEN.into())),
        }
    }

    /// As [`App::owned_refresh_token`], and active.
    async fn active_refresh_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<RefreshTokenRecord, AppError> {
        let record = self.owned_refresh_token(token, user_id).await?;
        inactive(TokenStatus::of(record.revoked_at, record.expires_at, to_micros(now())), "refresh token")?;
        Ok(record)
    }

    /// `regenRefreshToken`: a new refresh token with the same name; the old
    /// one and every access token made from it stop working.
    pub async fn regenerate_refresh_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<(String, RefreshTokenRecord), AppError> {
        let old = self.active_refresh_token(token, user_id).await?;
        let at = to_micros(now());
        let days = self.setting(REFRESH_TOKEN_LIFESPAN).await?.as_i64().unwrap_or(60);
        let fresh = new_secret(SecretKind::RefreshToken);
        // Replaces one: the count stays as it was.
        let new = NewRefreshToken {
            max_active: REFRESH_TOKENS_PER_USER,
            user_id,
            name: old.name.clone(),
            token_hash: self.secrets.digest(&fresh),
            created_at: at,
            expires_at: at + days * 86_400 * MICROS,
        };
        let expires_at = new.expires_at;
        let event =
            AuditEvent::success(Actor::User(user_id), "refresh_token.regenerated", format!("user:{user_id}"))
                .with_detail(json!({"name": old.name, "lifespan_days": days}));
        let id = self.store.regenerate_refresh_token(old.id, new, event).await.map_err(|e| match e {
            StoreError::NotFound => revoked("refresh token"),
            e => e.into(),
        })?;
        let record = RefreshTokenRecord {
            id,
            user_id,
            name: old.name,
            created_at: at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((fresh, record))
    }

    /// `createAPIAccessToken`: revokes every other active access token made
    /// from the same refresh token.
    pub async fn create_api_access_token(
        &self,
        refresh_token: &str,
        user_id: UserId,
    ) -> Result<(String, ApiAccessTokenRecord), AppError> {
        let refresh = self.active_refresh_token(refresh_token, user_id).await?;
        self.issue_api_access_token(refresh).await
    }

    /// An API access token from `refresh` (known active and its owner's).
    async fn issue_api_access_token(
        &self,
        refresh: RefreshTokenRecord,
    ) -> Result<(String, ApiAccessTokenRecord), AppError> {
        let user_id = refresh.user_id;
        let at = to_micros(now());
        let hours = self.setting(ACCESS_TOKEN_LIFESPAN).await?.as_i64().unwrap_or(24);
        let token = new_secret(SecretKind::ApiAccessToken);
        let new = NewApiAccessToken {
            refresh_token_id: refresh.id,
            user_id,
            token_hash: self.secrets.digest(&token),
            created_at: at,
            expires_at: at + hours * 3600 * MICROS,
        };
        let expires_at = new.expires_at;
        let event =
            AuditEvent::success(Actor::User(user_id), "api_access_token.created", format!("user:{user_id}"))
                .with_detail(json!({"refresh_token_name": refresh.name, "lifespan_hours": hours}));
        let id = self.store.create_api_access_token(new, event).await.map_err(|e| match e {
            StoreError::NotFound => revoked("refresh token"),
            e => e.into(),
        })?;
        let record = ApiAccessTokenRecord {
            id,
            refresh_token_id: refresh.id,
            user_id,
            created_at: at,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((token, record))
    }

    /// A user's refresh tokens (the account page lists them).
    pub async fn refresh_tokens_of(&self, user_id: UserId) -> Result<Vec<RefreshTokenRecord>, AppError> {
        Ok(self.store.refresh_tokens_of(user_id).await?)
    }

    /// The user's own active refresh token `id`; someone else's is unknown.
    async fn own_active_refresh_token(
        &self,
        user_id: UserId,
        id: i64,
    ) -> Result<RefreshTokenRecord, AppError> {
        let record = self
            .refresh_tokens_of(user_id)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| AppError::NotFound("no such refresh token".into()))?;
        inactive(TokenStatus::of(record.revoked_at, record.expires_at, to_micros(now())), "refresh token")?;
        Ok(record)
    }

    /// An API access token from the user's own refresh token `id` (the
    /// account page, which never holds the refresh token itself).
    pub async fn api_access_token_from(
        &self,
        user_id: UserId,
        id: i64,
    ) -> Result<(String, ApiAccessTokenRecord), AppError> {
        let refresh = self.own_active_refresh_token(user_id, id).await?;
        self.token_owner_enabled(user_id).await?;
        self.issue_api_access_token(refresh).await
    }

    /// Revokes the user's own refresh token `id` and its access tokens.
    pub async fn revoke_refresh_token(&self, user_id: UserId, id: i64) -> Result<(), AppError> {
        let event =
            AuditEvent::success(Actor::User(user_id), "refresh_token.revoked", format!("user:{user_id}"))
                .with_detail(json!({"refresh_token_id": id}));
        self.store.revoke_refresh_token(id, user_id, to_micros(now()), event).await.map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound("no such active refresh token".into()),
            e => e.into(),
        })
    }

    /// `revokeAPIAccessTokens`: every active access token of the refresh token.
    pub async fn revoke_api_access_tokens(
        &self,
        refresh_token: &str,
        user_id: UserId,
    ) -> Result<u64, AppError> {
        let refresh = self.owned_refresh_token(refresh_token, user_id).await?;
        let event =
            AuditEvent::success(Actor::User(user_id), "api_access_token.revoked", format!("user:{user_id}"))
                .with_detail(json!({"refresh_token_name": refresh.name}));
        Ok(self.store.revoke_api_access_tokens(refresh.id, to_micros(now()), event).await?)
    }

    /// `validateRefreshToken`: the record if active; otherwise says why.
    pub async fn validate_refresh_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<RefreshTokenRecord, AppError> {
        let result = self.active_refresh_token(token, user_id).await;
        if let Err(e) = &result {
            self.audit.record(validation_failed("refresh_token", user_id, e));
        }
        result
    }

    /// `validateAPIAccessToken`: the record if active; otherwise says why.
    pub async fn validate_api_access_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<ApiAccessTokenRecord, AppError> {
        let result = self.active_api_access_token(token, user_id).await;
        if let Err(e) = &result {
            self.audit.record(validation_failed("api_access_token", user_id, e));
        }
        result
    }

    async fn active_api_access_token(
        &self,
        token: &str,
        user_id: UserId,
    ) -> Result<ApiAccessTokenRecord, AppError> {
        if token.len() > TOKEN_INPUT_MAX {
            return Err(AppError::Unauthorized(BAD_TOKEN.into()));
        }
        let record = self.store.api_access_token_by_hash(&self.secrets.digest(token)).await?;
        let record = record
            .filter(|r| r.user_id == user_id)
            .ok_or_else(|| AppError::Unauthorized(BAD_TOKEN.into()))?;
        self.token_owner_enabled(user_id).await?;
        inactive(
            TokenStatus::of(record.revoked_at, record.expires_at, to_micros(now())),
            "API access token",
        )?;
        Ok(record)
    }
}

fn inactive(status: TokenStatus, what: &str) -> Result<(), AppError> {
    match status {
        TokenStatus::Active => Ok(()),
        TokenStatus::Expired => {
            Err(AppError::TokenInactive { status, message: format!("the {what} has expired") })
        }
        TokenStatus::Revoked => Err(revoked(what)),
    }
}

fn revoked(what: &str) -> AppError {
    AppError::TokenInactive { status: TokenStatus::Revoked, message: format!("the {what} has been revoked") }
}

fn login_event(username: &str, addr: IpAddr, via: &str, reason: &str) -> AuditEvent {
    let shown = excerpt(username, USERNAME_MAX);
    AuditEvent {
        actor: Actor::System,
        action: "login.failed",
        target: Some(format!("username:{shown}")),
        outcome: Outcome::Failure,
        client_addr: Some(addr.to_string()),
        detail: json!({"reason": reason, "via": via}),
    }
}

/// The caller of a failed validation proved nothing, so it is not the actor:
/// the user id it named is only the target (as a failed sign-in's is).
fn validation_failed(kind: &str, user_id: UserId, error: &AppError) -> AuditEvent {
    AuditEvent {
        actor: Actor::System,
        action: "token.validation_failed",
        target: Some(format!("user:{user_id}")),
        outcome: Outcome::Failure,
        client_addr: None,
        detail: json!({"kind": kind, "reason": error.to_string()}),
    }
}

use super::{App, AppError};
use crate::domain::audit::AuditEvent;
use crate::domain::throttle::account_key;
use crate::domain::user::{validate_password, validate_username};
use crate::domain::{Actor, Role, User, UserId};
use crate::store::{NewUser, StoreError, UserUpdate};
use serde_json::json;

/// A change to a user; absent fields stay as they are.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub password: Option<String>,
    pub disabled: Option<bool>,
    /// Only while the stored password hash is still this one.
    pub replaces_password_hash: Option<String>,
}

impl App {
    /// Creates a user; `password: None` makes an SSO-only user.
    pub async fn create_user(
        &self,
        actor: Actor,
        username: &str,
        password: Option<&str>,
        role: Role,
    ) -> Result<User, AppError> {
        validate_username(username).map_err(|e| AppError::Invalid(e.to_string()))?;
        let password_hash = match password {
            Some(p) => {
                validate_password(username, p).map_err(|e| AppError::Invalid(e.to_string()))?;
                Some(self.passwords.hash(p).await?)
            }
            None => None,
        };
        let event = AuditEvent::success(actor, "user.created", "user:?")
            .with_detail(json!({"username": username, "role": role}));
        let user = NewUser { username: username.to_string(), password_hash, role };
        Ok(self.store.create_user(user, event).await?)
    }

    pub async fn user(&self, id: UserId) -> Result<User, AppError> {
        self.store.user(id).await?.ok_or_else(|| user_not_found(id))
    }

    pub async fn update_user(&self, actor: Actor, id: UserId, patch: UserPatch) -> Result<User, AppError> {
        let end_credentials = patch.password.is_some() || patch.disabled == Some(true);
        let before = if end_credentials { Some(self.user(id).await?) } else { None };
        if let (Some(p), Some(user)) = (&patch.password, &before) {
            validate_password(&user.username, p).map_err(|e| AppError::Invalid(e.to_string()))?;
        }
        let password_hash = match &patch.password {
            Some(p) => Some(self.passwords.hash(p).await?),
            None => None,
        };
        // A new password or a disabled account ends every session, token
        // and grant the user had: whoever held the old password, or the
        // account, keeps nothing made with it (not even a network that
        // passes the account's sign-in lock).
        let event = AuditEvent::success(actor, "user.updated", format!("user:{id}")).with_detail(json!({
            "role": patch.role,
            "password_changed": patch.password.is_some(),
            "disabled": patch.disabled,
            "credentials_ended": end_credentials,
        }));
        let update = UserUpdate {
            role: patch.role,
            password_hash,
            disabled: patch.disabled,
            end_credentials,
            replaces_password_hash: patch.replaces_password_hash,
        };
        let updated = self.store.update_user(id, update, event).await.map_err(|e| match e {
            StoreError::NotFound => user_not_found(id),
            e => e.into(),
        })?;
        if let Some(user) = before {
            self.store.forget_sign_in_networks(&account_key(&user.username)).await?;
        }
        Ok(updated)
    }

    pub async fn delete_user(&self, actor: Actor, id: UserId) -> Result<(), AppError> {
        let user = self.user(id).await?;
        let event = AuditEvent::success(actor, "user.deleted", format!("user:{id}"));
        self.store.delete_user(id, &Actor::User(id).to_string(), event).await.map_err(|e| match e {
            StoreError::NotFound => user_not_found(id),
            e => e.into(),
        })?;
        // A new account of the same name starts with no known networks.
        Ok(self.store.forget_sign_in_networks(&account_key(&user.username)).await?)
    }
}

fn user_not_found(id: UserId) -> AppError {
    AppError::NotFound(format!("no user with id {id}"))
}

//! Authentication of platform API callers: a credential in, a [`Caller`] out.

use super::{App, AppError};
use crate::crypto::SecretKind;
use crate::domain::{Caller, Principal, now, to_micros};

/// A credential as presented, before it is checked.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The `TOKEN` header: an API access token.
    ApiAccessToken(&'a str),
    /// `Authorization: Bearer`: an API access token or a JWT access token.
    Bearer(&'a str),
}

impl App {
    /// Resolves a credential into a caller, or says why not. Every refusal
    /// is `Unauthorized`; the message never tells whether a token exists.
    pub async fn authenticate(&self, credential: Credential<'_>) -> Result<Caller, AppError> {
        let token = match credential {
            Credential::ApiAccessToken(t) | Credential::Bearer(t) => t,
        };
        match (SecretKind::of(token), credential) {
            (Some(SecretKind::ApiAccessToken), _) => self.authenticate_api_access_token(token).await,
            (None, Credential::Bearer(jwt)) if jwt.matches('.').count() == 2 => {
                self.authenticate_jwt(jwt).await
            }
            _ => Err(AppError::Unauthorized("the access token is not valid".into())),
        }
    }

    async fn authenticate_api_access_token(&self, token: &str) -> Result<Caller, AppError> {
        let invalid = || AppError::Unauthorized("the access token is not valid".into());
        let digest = self.secrets.digest(token);
        let at = to_micros(now());
        let grant = match self.api_tokens.get(&digest, |g| g.expires_at > at) {
            Some(grant) => grant,
            None => {
                let generation = self.api_tokens.generation();
                let grant = self.store.api_access_token_grant(&digest).await?.ok_or_else(invalid)?;
                // Only a token good now is remembered; anything that ends it
                // (a revocation, a user's change) forgets it.
                let good =
                    grant.revoked_at.is_none() && grant.refresh_revoked_at.is_none() && !grant.user.disabled;
                if good && grant.expires_at > at {
                    self.api_tokens.put(digest, grant.clone(), generation);
                }
                grant
            }
        };
        if grant.revoked_at.is_some() || grant.refresh_revoked_at.is_some() {
            return Err(AppError::Unauthorized("the access token has been revoked".into()));
        }
        if grant.expires_at <= at {
            return Err(AppError::Unauthorized("the access token has expired".into()));
        }
        if grant.user.disabled {
            return Err(invalid());
        }
        self.usage.record(grant.token_id, at);
        Ok(Caller {
            principal: Principal::User { id: grant.user.id, username: grant.user.username },
            role: grant.user.role,
            scope: None,
            via_client: None,
        })
    }
}

//! Protected resources: their declaration by admins, the scopes a token for
//! them may carry, and the checks of the protected-resource gateway.

use super::error::oauth_store_error;
use super::tokens::Rejected;
use super::{App, AppError};
use crate::domain::audit::AuditEvent;
use crate::domain::oauth::{OAuthError, OAuthErrorCode, parse_scope};

/// Resource indicators one request may name.
const MAX_RESOURCES: usize = 10;
use crate::domain::resource::{
    ProtectedResource, ScopeSpec, allowed_scopes, check_scopes, default_scopes, gateway_resource,
    validate_declaration, validate_name,
};
use crate::domain::token::AccessTokenClaims;
use crate::domain::{Actor, Caller, excerpt, now};
use crate::store::StoreError;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// A declaration as the admin API receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDeclaration {
    pub display_name: String,
    /// A resource server's URL (not served here).
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Vec<ScopeSpec>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Where keyward's gateway sends requests for `<issuer>/r/<name>/…`.
    #[serde(default)]
    pub upstream_url: Option<String>,
}

/// Why the gateway refuses a request (RFC 6750 §3.1).
#[derive(Debug)]
pub enum GatewayRefusal {
    /// No token, or one that is not valid for this resource: 401.
    Unauthenticated { error: Option<&'static str>, description: &'static str },
    /// A valid token without every required scope: 403.
    InsufficientScope(Vec<String>),
    /// The token could not be checked now (the database is out of reach): 503.
    Unavailable,
}

impl App {
    /// Creates (`replace` false) or replaces resource `name`.
    pub async fn put_resource(
        &self,
        actor: Actor,
        name: &str,
        d: ResourceDeclaration,
        replace: bool,
    ) -> Result<ProtectedResource, AppError> {
        validate_name(name).map_err(AppError::Invalid)?;
        let indicator = validate_declaration(
            &d.display_name,
            d.resource.as_deref(),
            &d.scopes,
            &d.required_scopes,
            d.upstream_url.as_deref(),
        )
        .map_err(AppError::Invalid)?;
        if let Some(upstream) = &d.upstream_url {
            let parsed = url::Url::parse(upstream)
                .map_err(|_| AppError::Invalid("upstream_url must be an absolute URL".into()))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.query().is_some()
                || parsed.host_str().is_none()
                || !parsed.username().is_empty()
            {
                return Err(AppError::Invalid(
                    "upstream_url must be an http(s) URL with a host, without a query or user".into(),
                ));
            }
        }
        if indicator.as_deref() == Some(self.issuer.as_str()) {
            return Err(AppError::Invalid("keyward itself is not a resource to declare".into()));
        }
        let resource = ProtectedResource {
            name: name.to_string(),
            resource: indicator.unwrap_or_else(|| gateway_resource(&self.issuer, name)),
            display_name: d.display_name.trim().to_string(),
            scopes: d.scopes,
            required_scopes: d.required_scopes,
            upstream_url: d.upstream_url,
            created_at: now(),
        };
        let action = if replace { "resource.updated" } else { "resource.created" };
        let event = AuditEvent::success(actor, action, format!("resource:{name}")).with_detail(json!({
            "resource": resource.resource, "scopes": resource.scopes, "upstream_url": resource.upstream_url,
        }));
        match self.store.put_resource(&resource, replace, event).await {
            Ok(()) => Ok(self.resource(name).await?),
            Err(StoreError::NotFound) => Err(not_found(name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn resource(&self, name: &str) -> Result<ProtectedResource, AppError> {
        self.store.resource(name).await?.ok_or_else(|| not_found(name))
    }

    /// The resource named `name` for the gateway: from the node's cache when
    /// it can be trusted, else from the store (and then cached).
    pub async fn resource_record(&self, name: &str) -> Result<Option<Arc<ProtectedResource>>, AppError> {
        Ok(self.resources.get_or_read(name, self.store.resource(name)).await?)
    }

    pub async fn resources(&self) -> Result<Vec<ProtectedResource>, AppError> {
        Ok(self.store.resources().await?)
    }

    pub async fn delete_resource(&self, actor: Actor, name: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "resource.deleted", format!("resource:{name}"));
        self.store.delete_resource(name, event).await.map_err(|e| match e {
            StoreError::NotFound => not_found(name),
            e => e.into(),
        })
    }

    /// The scopes a token for `resources` gets: the requested ones (checked
    /// against what the audience understands) or the audience's defaults;
    /// sorted and distinct.
    pub async fn scopes_for(
        &self,
        requested: Option<&str>,
        resources: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let mut scopes = match requested {
            Some(raw) => parse_scope(raw)?,
            None => vec![],
        };
        if resources.len() > MAX_RESOURCES {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                format!("at most {MAX_RESOURCES} resources in one request"),
            ));
        }
        // The common case (keyward's own APIs) needs no lookup.
        let declared = if resources.is_empty() {
            vec![]
        } else {
            self.store
                .resources_by_indicator(resources)
                .await
                .map_err(oauth_store_error("resource lookup failed"))?
        };
        let undeclared = declared.len() < resources.len();
        if undeclared && !declared.is_empty() {
            // One token for keyward's APIs and another server would let that
            // server replay it against keyward.
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidTarget,
                "a token is for declared resources or for keyward's own APIs, not both; ask for one token each",
            ));
        }
        if scopes.is_empty() {
            scopes = default_scopes(&declared, undeclared);
        }
        check_scopes(&scopes, &allowed_scopes(&declared, undeclared))?;
        scopes.sort();
        scopes.dedup();
        Ok(scopes)
    }

    /// What each scope of `scope` lets the app do, in the consent page's
    /// words: keyward's own, or as the resource's admin described it.
    pub async fn describe_scopes(
        &self,
        scope: &str,
        resources: &[String],
    ) -> Result<Vec<(String, String)>, AppError> {
        // Unread, no consent is asked: a user must see what each scope means.
        let declared = self.store.resources_by_indicator(resources).await?;
        Ok(scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let own = crate::domain::oauth::scope_description(s);
                let description = if own.is_empty() {
                    declared
                        .iter()
                        .find_map(|r| {
                            r.scopes.iter().find(|d| d.name == s).map(|d| match d.description.as_str() {
                                "" => format!("at {}", r.display_name),
                                text => format!("{text} (at {})", r.display_name),
                            })
                        })
                        .unwrap_or_default()
                } else {
                    own.to_string()
                };
                (s.to_string(), description)
            })
            .collect())
    }

    /// `scope` (space-separated) less what `audience` does not understand:
    /// a token narrowed to fewer resources than its grant keeps only the
    /// scopes that still have an addressee. Unchanged when nothing narrowed.
    pub async fn scopes_within(
        &self,
        scope: &str,
        granted: &[String],
        audience: &[String],
    ) -> Result<String, OAuthError> {
        if granted == audience {
            return Ok(scope.to_string());
        }
        let declared = self
            .store
            .resources_by_indicator(audience)
            .await
            .map_err(oauth_store_error("resource lookup failed"))?;
        let allowed = allowed_scopes(&declared, declared.len() < audience.len());
        let kept: Vec<&str> = scope.split(' ').filter(|s| allowed.iter().any(|a| a == s)).collect();
        // Only scopes for no resource (offline_access, openid) left: nothing to do there.
        if kept.iter().all(|s| crate::domain::resource::ANY_AUDIENCE_SCOPES.contains(s)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "none of the granted scopes applies to the requested resource",
            ));
        }
        Ok(kept.join(" "))
    }

    /// Every scope keyward or a declared resource understands (metadata).
    pub async fn scopes_supported(&self) -> Result<Vec<String>, AppError> {
        let declared = self.store.resources().await?;
        let mut all = allowed_scopes(&[], false);
        for s in allowed_scopes(&declared, true) {
            if !all.contains(&s) {
                all.push(s);
            }
        }
        Ok(all)
    }

    /// The gateway's check of a bearer token for `resource`: valid, meant
    /// for it (`aud`), and carrying every scope it requires.
    pub async fn gateway_check(
        &self,
        resource: &ProtectedResource,
        bearer: Option<&str>,
    ) -> Result<(AccessTokenClaims, Caller), GatewayRefusal> {
        let token = bearer.ok_or(GatewayRefusal::Unauthenticated {
            error: None,
            description: "an access token is required",
        })?;
        let claims = self.verify_access_token(token, Some(&resource.resource)).await.map_err(|r| {
            GatewayRefusal::Unauthenticated {
                error: Some("invalid_token"),
                description: match r {
                    Rejected::Expired => "the access token has expired",
                    Rejected::Revoked => "the access token has been revoked",
                    Rejected::Invalid => "the access token is not valid for this resource",
                    Rejected::Unavailable => return GatewayRefusal::Unavailable,
                },
            }
        })?;
        let Some(caller) = self.token_subject(&claims).await.map_err(|_| GatewayRefusal::Unavailable)? else {
            return Err(GatewayRefusal::Unauthenticated {
                error: Some("invalid_token"),
                description: "the access token's client or user is no longer active",
            });
        };
        let missing = resource.missing_scopes(&claims.scope);
        if !missing.is_empty() {
            return Err(GatewayRefusal::InsufficientScope(missing));
        }
        Ok((claims, caller))
    }
}

fn not_found(name: &str) -> AppError {
    AppError::NotFound(format!("no resource named {:?}", excerpt(name, 64)))
}

//! Protected resources (RFC 8707 resource indicators, RFC 9728 metadata):
//! what an admin declares about a resource server — the scopes it
//! understands, the ones every request needs, and, for the gateway, where
//! it lives — and the rule that a token's scopes fit its audience.

use super::excerpt;
use super::oauth::{OAuthError, OAuthErrorCode, normalize_resource};
use serde::{Deserialize, Serialize};

pub const NAME_MAX: usize = 64;
pub const SCOPES_MAX: usize = 50;
const SCOPE_NAME_MAX: usize = 64;
const TEXT_MAX: usize = 200;
/// Where the gateway serves resource `name`: `<issuer>/r/<name>/…`.
pub const GATEWAY_PREFIX: &str = "/r/";

/// Scopes keyward knows on its own: its APIs (`api`), the platform's MCP
/// server (`mcp`), refresh tokens, and `openid`, which clients send out of
/// habit (accepted; keyward issues no ID token).
pub const BUILTIN_RESOURCE_SCOPES: [&str; 2] = ["api", "mcp"];
pub const ANY_AUDIENCE_SCOPES: [&str; 2] = [super::oauth::OFFLINE_ACCESS, "openid"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResource {
    pub name: String,
    /// The resource indicator: tokens for it carry it as `aud`.
    pub resource: String,
    pub display_name: String,
    pub scopes: Vec<ScopeSpec>,
    /// Scopes every request through the gateway needs.
    pub required_scopes: Vec<String>,
    pub upstream_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl ProtectedResource {
    pub fn understands(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.name == scope)
    }

    /// The required scopes `granted` (space-separated) lacks.
    pub fn missing_scopes(&self, granted: &str) -> Vec<String> {
        let granted: Vec<&str> = granted.split(' ').collect();
        self.required_scopes.iter().filter(|s| !granted.contains(&s.as_str())).cloned().collect()
    }
}

/// The resource indicator of a gateway resource.
pub fn gateway_resource(issuer: &str, name: &str) -> String {
    format!("{issuer}{GATEWAY_PREFIX}{name}")
}

/// A resource's name: lowercase letters, digits and `-`, as it appears in
/// the gateway's path.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("name must be 1 to {NAME_MAX} lowercase letters, digits or '-', not starting with '-'"))
    }
}

/// What an admin sends to declare a resource, checked.
pub fn validate_declaration(
    display_name: &str,
    resource: Option<&str>,
    scopes: &[ScopeSpec],
    required: &[String],
    upstream_url: Option<&str>,
) -> Result<Option<String>, String> {
    if display_name.trim().is_empty()
        || display_name.chars().count() > TEXT_MAX
        || display_name.chars().any(char::is_control)
    {
        return Err(format!("display_name must be 1 to {TEXT_MAX} characters"));
    }
    if scopes.len() > SCOPES_MAX {
        return Err(format!("at most {SCOPES_MAX} scopes"));
    }
    for (i, scope) in scopes.iter().enumerate() {
        let valid = !scope.name.is_empty()
            && scope.name.len() <= SCOPE_NAME_MAX
            && scope.name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !valid {
            return Err(format!(
                "scope names are 1 to {SCOPE_NAME_MAX} printable characters without spaces, quotes or \\"
            ));
        }
        if ANY_AUDIENCE_SCOPES.contains(&scope.name.as_str())
            || BUILTIN_RESOURCE_SCOPES.contains(&scope.name.as_str())
        {
            return Err(format!("scope {:?} is keyward's own and cannot be declared", scope.name));
        }
        if scopes[..i].iter().any(|s| s.name == scope.name) {
            return Err(format!("scope {:?} is declared twice", scope.name));
        }
        if scope.description.chars().count() > TEXT_MAX || scope.description.chars().any(char::is_control) {
            return Err(format!("scope descriptions are at most {TEXT_MAX} characters"));
        }
    }
    if let Some(missing) = required.iter().find(|r| !scopes.iter().any(|s| &s.name == *r)) {
        return Err(format!("required scope {missing:?} is not among the declared scopes"));
    }
    match (resource, upstream_url) {
        (Some(_), Some(_)) => {
            Err("a gateway resource's indicator is its gateway URL; give resource or upstream_url, not both"
                .into())
        }
        (None, None) => {
            Err("give resource (a resource server's URL) or upstream_url (to serve it here)".into())
        }
        (Some(r), None) => normalize_resource(r).map(Some).map_err(|e| e.description),
        (None, Some(_)) => Ok(None),
    }
}

/// RFC 8707 + RFC 6749 §3.3: the scopes a token for `declared` (the
/// requested resources keyward knows) may carry. Keyward's own scopes are
/// for keyward and for resources nobody declared (the platform's APIs);
/// a declared resource's are for it.
pub fn allowed_scopes(declared: &[ProtectedResource], undeclared: bool) -> Vec<String> {
    let mut allowed: Vec<String> = ANY_AUDIENCE_SCOPES.iter().map(|s| s.to_string()).collect();
    if undeclared || declared.is_empty() {
        allowed.extend(BUILTIN_RESOURCE_SCOPES.iter().map(|s| s.to_string()));
    }
    for r in declared {
        for s in &r.scopes {
            if !allowed.contains(&s.name) {
                allowed.push(s.name.clone());
            }
        }
    }
    allowed
}

/// Checks requested `scopes` against what the audience allows.
pub fn check_scopes(scopes: &[String], allowed: &[String]) -> Result<(), OAuthError> {
    match scopes.iter().find(|s| !allowed.contains(s)) {
        None => Ok(()),
        Some(s) => Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            format!(
                "scope {:?} is not available for the requested resource; available: {}",
                excerpt(s, 64),
                allowed.join(" ")
            ),
        )),
    }
}

/// The scopes a request for `declared` gets when it names none.
pub fn default_scopes(declared: &[ProtectedResource], undeclared: bool) -> Vec<String> {
    if undeclared || declared.is_empty() {
        return BUILTIN_RESOURCE_SCOPES.iter().map(|s| s.to_string()).collect();
    }
    let mut scopes: Vec<String> = Vec::new();
    for r in declared {
        for s in &r.required_scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(scopes: &[&str], required: &[&str]) -> ProtectedResource {
        ProtectedResource {
            name: "demo".into(),
            resource: "https://mcp.example/r/demo".into(),
            display_name: "Demo".into(),
            scopes: scopes
                .iter()
                .map(|s| ScopeSpec { name: s.to_string(), description: String::new() })
                .collect(),
            required_scopes: required.iter().map(|s| s.to_string()).collect(),
            upstream_url: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn scopes_fit_the_audience() {
        let r = resource(&["tools:read", "tools:write"], &["tools:read"]);
        let for_r = allowed_scopes(std::slice::from_ref(&r), false);
        assert!(
            check_scopes(&["tools:read".into(), "offline_access".into(), "openid".into()], &for_r).is_ok()
        );
        // keyward's own API scope is not for another resource server.
        assert!(check_scopes(&["api".into()], &for_r).is_err());
        let for_keyward = allowed_scopes(&[], false);
        assert!(check_scopes(&["api".into(), "mcp".into()], &for_keyward).is_ok());
        assert!(check_scopes(&["tools:read".into()], &for_keyward).is_err());
        assert_eq!(default_scopes(std::slice::from_ref(&r), false), ["tools:read"]);
        assert_eq!(default_scopes(&[], true), ["api", "mcp"]);
        assert_eq!(r.missing_scopes("openid tools:write"), ["tools:read"]);
        assert!(r.missing_scopes("tools:read").is_empty());
    }

    #[test]
    fn declarations_are_checked() {
        let s = |n: &str| ScopeSpec { name: n.into(), description: String::new() };
        assert!(validate_name("demo-1").is_ok());
        for bad in ["", "Demo", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_declaration("D", None, &[s("a")], &["a".into()], Some("http://127.0.0.1:1/")),
            Ok(None)
        );
        assert_eq!(
            validate_declaration("D", Some("https://api.example/"), &[], &[], None),
            Ok(Some("https://api.example".into()))
        );
        assert!(validate_declaration("D", None, &[], &[], None).is_err());
        assert!(validate_declaration("D", Some("https://a/"), &[], &[], Some("http://x/")).is_err());
        assert!(validate_declaration("D", None, &[s("a")], &["b".into()], Some("http://x/")).is_err());
        assert!(validate_declaration("D", None, &[s("a"), s("a")], &[], Some("http://x/")).is_err());
        assert!(validate_declaration("D", None, &[s("offline_access")], &[], Some("http://x/")).is_err());
        assert!(validate_declaration("D", None, &[s("a b")], &[], Some("http://x/")).is_err());
        assert!(validate_declaration("", None, &[], &[], Some("http://x/")).is_err());
    }
}

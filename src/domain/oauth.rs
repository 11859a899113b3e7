//! OAuth 2.0 vocabulary shared by the endpoints: error codes (RFC 6749 §5.2,
//! RFC 8707), scopes (§3.3) and resource indicators (RFC 8707).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    /// The server cannot answer now (its database is out of reach): never a
    /// verdict on the caller's credentials.
    TemporarilyUnavailable,
    /// The server failed (a bug, data it cannot read): never a verdict
    /// either.
    ServerError,
    /// A user must act first (authorize a connection): the error comes
    /// with the link that starts it ([`UserAction`]).
    AuthorizationRequired,
}

impl OAuthErrorCode {
    /// The name on the wire (RFC 6749 §4.1.2.1, §5.2; RFC 8707).
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::AuthorizationRequired => "authorization_required",
        }
    }
}

/// An OAuth error: the code and a description for the developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {description}")]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    /// With `authorization_required`: what the user must do.
    pub user_action: Option<UserAction>,
}

/// A link a user opens in a browser to authorize a connection, so that an
/// agent that was refused can tell them where to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAction {
    pub connect_uri: String,
    pub connection_id: String,
    /// Seconds the link stays usable.
    pub expires_in: i64,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        OAuthError { code, description: description.into(), user_action: None }
    }

    pub fn authorization_required(description: impl Into<String>, action: UserAction) -> Self {
        OAuthError {
            user_action: Some(action),
            ..Self::new(OAuthErrorCode::AuthorizationRequired, description)
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, description)
    }

    pub fn temporarily_unavailable() -> Self {
        Self::new(OAuthErrorCode::TemporarilyUnavailable, UNAVAILABLE)
    }

    pub fn server_error() -> Self {
        Self::new(OAuthErrorCode::ServerError, "the server failed to answer; the failure was logged")
    }

    /// Whether the server, not the request, is at fault.
    pub fn is_server_side(&self) -> bool {
        matches!(self.code, OAuthErrorCode::TemporarilyUnavailable | OAuthErrorCode::ServerError)
    }
}

/// What a caller is told while the database is out of reach.
pub const UNAVAILABLE: &str = "the service is unavailable for a moment; try again shortly";

/// Seconds a caller is asked to wait (`Retry-After`) then.
pub const UNAVAILABLE_RETRY_AFTER: i64 = 5;

/// A refresh token for a delegated client (nothing on its own). keyward's
/// other scopes: `api` (the platform's REST APIs, keyward's own among them,
/// at the principal's role) and `mcp` (the platform's MCP server only); see
/// [`crate::domain::resource`] for which fit which audience.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// What a scope lets an app do, in the words of the consent page.
pub fn scope_description(scope: &str) -> &'static str {
    match scope {
        "api" => {
            "use the platform's REST APIs as you, with everything your role allows \
                  (including administration if you are an admin)"
        }
        "mcp" => "use the platform's MCP server as you (no other API)",
        OFFLINE_ACCESS => {
            "stay signed in while you are away: a refresh token that keeps the access \
                           above alive until you withdraw it (grants nothing on its own)"
        }
        "openid" => "know that it is you who signed in (nothing more)",
        _ => "",
    }
}

/// Parses a `scope` parameter into its distinct tokens, in request order.
/// Which scopes are available depends on the audience: see
/// [`crate::domain::resource::allowed_scopes`].
pub fn parse_scope(raw: &str) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in raw.split(' ').filter(|t| !t.is_empty()) {
        // RFC 6749 §3.3: NQCHAR = %x21 / %x23-5B / %x5D-7E
        if !token.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "scope has characters RFC 6749 §3.3 forbids",
            ));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_string());
        }
    }
    Ok(scopes)
}

/// A client-credentials token has no refresh token, so `offline_access`
/// would promise what it cannot be.
pub fn refuse_offline_access(scopes: &[String]) -> Result<(), OAuthError> {
    if scopes.iter().any(|s| s == OFFLINE_ACCESS) {
        return Err(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "offline_access is not available to client_credentials: there is no refresh token",
        ));
    }
    Ok(())
}

pub const RESOURCE_MAX: usize = 2048;

/// Checks an RFC 8707 resource indicator (an absolute http(s) URI without a
/// fragment) and normalizes a bare origin's trailing slash away, since
/// clients differ on `https://host/` vs `https://host`.
pub fn normalize_resource(raw: &str) -> Result<String, OAuthError> {
    let invalid = |why: &str| OAuthError::new(OAuthErrorCode::InvalidTarget, format!("resource {why}"));
    if raw.len() > RESOURCE_MAX {
        return Err(invalid(&format!("is longer than {RESOURCE_MAX} characters")));
    }
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| invalid("must be an absolute https:// or http:// URI"))?;
    if raw.contains('#') {
        return Err(invalid("must not have a fragment"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces"));
    }
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if rest.len() == host.len() + 1 && rest.ends_with('/') {
        return Ok(raw[..raw.len() - 1].to_string());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(parse_scope("api  mcp api").unwrap(), vec!["api", "mcp"]);
        assert_eq!(parse_scope("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_scope("a\"b").unwrap_err().code, OAuthErrorCode::InvalidScope);
        assert!(refuse_offline_access(&["api".into(), "mcp".into()]).is_ok());
        assert!(refuse_offline_access(&["api".into(), OFFLINE_ACCESS.into()]).is_err());
    }

    #[test]
    fn resources() {
        assert_eq!(normalize_resource("https://api.example.com/").unwrap(), "https://api.example.com");
        assert_eq!(normalize_resource("https://api.example.com").unwrap(), "https://api.example.com");
        assert_eq!(normalize_resource("https://x.example/mcp/").unwrap(), "https://x.example/mcp/");
        for bad in ["api.example.com", "https://", "https://x#frag", "urn:x", "https://a b"] {
            assert_eq!(normalize_resource(bad).unwrap_err().code, OAuthErrorCode::InvalidTarget, "{bad}");
        }
    }
}

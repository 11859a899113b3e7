//! Delegated (user-initiated) OAuth clients (SPEC §1.1, §3): registration
//! rules, redirect URIs and their matching, PKCE.

use super::excerpt;
use serde::Serialize;

pub const REFRESH_LIFETIME_MIN: i64 = 259_200; // 3 days
pub const REFRESH_LIFETIME_MAX: i64 = 15_552_000; // 180 days
pub const ACCESS_LIFETIME_MIN: i64 = 3_600; // 1 hour
pub const ACCESS_LIFETIME_MAX: i64 = 259_200; // 3 days
pub const REDIRECT_URIS_MAX: usize = 20;
pub const REDIRECT_URI_MAX_LEN: usize = 2_048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
}

/// A registered delegated client, as every layer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DelegatedClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_type: ClientType,
    pub refresh_token_lifetime: i64,
    pub access_token_lifetime: i64,
    /// Always true for public clients.
    pub pkce_enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// `dynamic` for clients that registered themselves (RFC 7591).
    pub registration: crate::domain::registration::Registration,
    pub offline_access: OfflineAccess,
}

/// When a client's grants come with a refresh token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineAccess {
    /// When the app asks for `offline_access`.
    #[default]
    OnRequest,
    /// Always: `offline_access` is added to its requests (and shown on the
    /// consent page). For apps registered for refresh tokens whose SDKs do
    /// not ask for the scope.
    Always,
}

impl OfflineAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            OfflineAccess::OnRequest => "on_request",
            OfflineAccess::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "on_request" => Some(OfflineAccess::OnRequest),
            "always" => Some(OfflineAccess::Always),
            _ => None,
        }
    }
}

impl DelegatedClient {
    pub fn requires_pkce(&self) -> bool {
        self.pkce_enabled || self.grant_type == ClientType::Public
    }

    /// Public clients get a new refresh token on every use.
    pub fn rotates_refresh_tokens(&self) -> bool {
        true
    }

    /// The registered URI that `requested` matches, if any (SPEC §3): the
    /// loopback port may vary only for public (native) clients, RFC 8252 §7.3.
    pub fn matching_redirect_uri(&self, requested: &str) -> Option<&str> {
        let any_port = self.grant_type == ClientType::Public;
        self.redirect_uris
            .iter()
            .find(|r| *r == requested || any_port && redirect_uri_matches(r, requested))
            .map(String::as_str)
    }
}

pub fn validate_lifetimes(refresh: i64, access: i64) -> Result<(), String> {
    if !(REFRESH_LIFETIME_MIN..=REFRESH_LIFETIME_MAX).contains(&refresh) {
        return Err(format!(
            "refresh_token_lifetime must be from {REFRESH_LIFETIME_MIN} to {REFRESH_LIFETIME_MAX} seconds \
             (3 to 180 days), got {refresh}"
        ));
    }
    if !(ACCESS_LIFETIME_MIN..=ACCESS_LIFETIME_MAX).contains(&access) {
        return Err(format!(
            "access_token_lifetime must be from {ACCESS_LIFETIME_MIN} to {ACCESS_LIFETIME_MAX} seconds \
             (1 hour to 3 days), got {access}"
        ));
    }
    Ok(())
}

/// A URI split into the parts matching needs.
struct Parts<'a> {
    scheme: &'a str,
    host: &'a str,
    rest: &'a str,
}

fn split(uri: &str) -> Option<Parts<'_>> {
    let (scheme, after) = uri.split_once("://")?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &authority[..close + 2];
        // After the bracket: nothing, or a port.
        let after = &authority[close + 2..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    // A port is 1 to 5 digits and at most 65535: what a URL parser accepts.
    let port_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    let stray_bracket = !host.starts_with('[') && host.contains(['[', ']']);
    if host.is_empty() || stray_bracket || port.is_some_and(|p| !port_ok(p)) {
        return None;
    }
    Some(Parts { scheme, host, rest })
}

pub fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// Registration rule: absolute, no fragment, no user info; https, or http
/// only for a loopback host (RFC 8252 §7.3).
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("redirect URI {:?} {why}", excerpt(uri, 100)));
    if uri.len() > REDIRECT_URI_MAX_LEN {
        return bad(&format!("is longer than {REDIRECT_URI_MAX_LEN} characters"));
    }
    if uri.contains('#') {
        return bad("must not have a fragment");
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces");
    }
    let Some(parts) = split(uri) else { return bad("must be an absolute URI with a host") };
    match parts.scheme {
        "https" => Ok(()),
        "http" if is_loopback_host(parts.host) => Ok(()),
        "http" => bad("must use https (http only for 127.0.0.1, [::1] or localhost)"),
        _ => bad("must use https"),
    }
}

/// SPEC §3: exact match, except that a loopback http URI may differ in port.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (split(registered), split(requested)) {
        (Some(r), Some(q)) => {
            r.scheme == "http"
                && q.scheme == "http"
                && is_loopback_host(r.host)
                && r.host == q.host
                && r.rest == q.rest
        }
        _ => false,
    }
}

/// The reference's known redirect URLs, offered as named presets.
pub const REDIRECT_PRESETS: &[(&str, &str, &[&str])] = &[
    (
        "vscode",
        "Visual Studio Code",
        &[
            "https://vscode.dev/redirect",
            "https://insiders.vscode.dev/redirect",
            "http://127.0.0.1:33418/",
            // Its fallback: any loopback port.
            "http://127.0.0.1/",
        ],
    ),
    (
        "claude",
        "Claude",
        &["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"],
    ),
    // Claude Code listens on a port of its choosing.
    ("claude-code", "Claude Code", &["http://localhost/callback"]),
    ("chatgpt", "ChatGPT connectors", &["https://chatgpt.com/connector_platform_oauth_redirect"]),
    (
        "mcp-inspector",
        "MCP Inspector",
        &["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"],
    ),
];

/// The names of the presets, for messages.
pub fn preset_names() -> String {
    REDIRECT_PRESETS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
}

pub fn preset(name: &str) -> Option<&'static [&'static str]> {
    REDIRECT_PRESETS.iter().find(|(n, _, _)| *n == name).map(|(_, _, uris)| *uris)
}

/// RFC 7636 §4.1: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~].
pub fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
            "http://localhost:8080/cb",
            "http://[::1]:9/x",
            "https://vscode.dev/redirect",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "/relative",
            "app.example/cb",
            "javascript:alert(1)",
            "https://user@evil.example/",
            "ftp://x/",
            "https://:80/",
            "http://127.0.0.1.evil.example/",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact_but_for_loopback_ports() {
        assert!(redirect_uri_matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!redirect_uri_matches("https://app.example/cb", "https://app.example/cb/"));
        assert!(!redirect_uri_matches("https://app.example/cb", "https://app.example:444/cb"));
        assert!(!redirect_uri_matches("https://app.example/cb", "https://app.example/cb?x=1"));
        assert!(redirect_uri_matches("http://127.0.0.1:33418/", "http://127.0.0.1:51234/"));
        assert!(redirect_uri_matches("http://127.0.0.1/", "http://127.0.0.1:51234/"));
        assert!(redirect_uri_matches("http://localhost/cb", "http://localhost:1/cb"));
        assert!(!redirect_uri_matches("http://localhost/cb", "http://localhost:1/other"));
        assert!(!redirect_uri_matches("http://127.0.0.1/", "http://localhost:1/"));
        assert!(!redirect_uri_matches("http://127.0.0.1/", "https://127.0.0.1:1/"));
        assert!(!redirect_uri_matches("http://127.0.0.1/", "http://127.0.0.1.evil.example/"));
        // Crafted authorities that once passed and then failed to parse.
        assert!(!redirect_uri_matches("http://127.0.0.1/", "http://127.0.0.1:65536/"));
        assert!(!redirect_uri_matches("http://127.0.0.1/", "http://127.0.0.1:99999999999/"));
        assert!(!redirect_uri_matches("http://[::1]/", "http://[::1]junk/"));
        assert!(!redirect_uri_matches("http://[::1]/", "http://[::1]:/"));
        assert!(redirect_uri_matches("http://[::1]/", "http://[::1]:65535/"));
        // Whatever matches also parses as a URL.
        for q in ["http://127.0.0.1:0/", "http://[::1]:8080/", "http://localhost:65535/"] {
            assert!(redirect_uri_matches("http://localhost/", q) == q.contains("localhost"));
            assert!(url::Url::parse(q).is_ok());
        }
    }

    #[test]
    fn loopback_ports_vary_only_for_public_clients() {
        let mut client = DelegatedClient {
            client_id: "c".into(),
            name: "n".into(),
            redirect_uris: vec!["http://127.0.0.1:8080/cb".into()],
            grant_type: ClientType::Public,
            refresh_token_lifetime: REFRESH_LIFETIME_MIN,
            access_token_lifetime: ACCESS_LIFETIME_MIN,
            pkce_enabled: true,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            registration: crate::domain::registration::Registration::Admin,
            offline_access: OfflineAccess::OnRequest,
        };
        assert!(client.matching_redirect_uri("http://127.0.0.1:9/cb").is_some());
        client.grant_type = ClientType::Confidential;
        assert!(client.matching_redirect_uri("http://127.0.0.1:9/cb").is_none());
        assert!(client.matching_redirect_uri("http://127.0.0.1:8080/cb").is_some());
    }

    #[test]
    fn lifetimes_name_the_field_and_range() {
        assert!(validate_lifetimes(2_592_000, 3_600).is_ok());
        let e = validate_lifetimes(100, 3_600).unwrap_err();
        assert!(e.contains("refresh_token_lifetime") && e.contains("259200") && e.contains("15552000"));
        let e = validate_lifetimes(2_592_000, 60).unwrap_err();
        assert!(e.contains("access_token_lifetime") && e.contains("3600") && e.contains("259200"));
    }

    #[test]
    fn pkce_strings() {
        assert!(valid_pkce_string("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!valid_pkce_string("short"));
        assert!(!valid_pkce_string(&"a+".repeat(30)));
    }
}

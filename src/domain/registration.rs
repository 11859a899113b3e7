//! Dynamic client registration (RFC 7591, managed per RFC 7592): which
//! metadata a self-registering client may have, and the redirect-URI policy
//! that keeps an open registration endpoint from becoming an open
//! redirector. No HTTP, no storage.

use super::delegated::{
    ClientType, OfflineAccess, REDIRECT_URI_MAX_LEN, REDIRECT_URIS_MAX, validate_redirect_uri,
};
use super::excerpt;
use super::oauth::parse_scope;
use serde::{Deserialize, Serialize};

/// How a delegated client came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// By an admin, through `/oauth/v1/register/`.
    Admin,
    /// By the client itself, through RFC 7591.
    Dynamic,
    /// Its `client_id` is the URL of its metadata document.
    MetadataDocument,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Admin => "admin",
            Registration::Dynamic => "dynamic",
            Registration::MetadataDocument => "metadata_document",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Registration::Admin),
            "dynamic" => Some(Registration::Dynamic),
            "metadata_document" => Some(Registration::MetadataDocument),
            _ => None,
        }
    }
}

/// `keyward.oauth.dynamic_registration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationPolicy {
    Off,
    Open,
    InitialAccessToken,
}

impl RegistrationPolicy {
    pub fn parse(s: &str) -> Self {
        match s {
            "open" => RegistrationPolicy::Open,
            "initial_access_token" => RegistrationPolicy::InitialAccessToken,
            _ => RegistrationPolicy::Off,
        }
    }
}

/// Lifetimes a dynamically registered client gets (seconds): an hour of
/// access, 30 days of refresh (within the ranges of admin-registered ones).
pub const DYNAMIC_ACCESS_LIFETIME: i64 = 3_600;
pub const DYNAMIC_REFRESH_LIFETIME: i64 = 2_592_000;
/// A dynamic client no user has approved is removed after this long.
pub const UNAPPROVED_CLIENT_LIFETIME_SECONDS: i64 = 86_400;
const NAME_MAX: usize = 200;
const TEXT_MAX: usize = 2_048;
const CONTACTS_MAX: usize = 10;

/// An RFC 7591 §2 metadata document as a client sends it. Members keyward
/// does not know are ignored (§3.1); wrong types are refused.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub redirect_uris: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub application_type: Option<String>,
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
}

/// What keyward registers: the metadata it will honour, as it answers it
/// (RFC 7591 §3.2.1 lets the server replace requested values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub application_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl RegisteredMetadata {
    /// Public (`none`) or confidential (a secret method).
    pub fn client_type(&self) -> ClientType {
        if self.token_endpoint_auth_method == "none" { ClientType::Public } else { ClientType::Confidential }
    }

    /// What the client may ask for, as it registered.
    pub fn limits(&self) -> ClientLimits {
        ClientLimits {
            scope: self.scope.clone(),
            refresh_token_grant: self.grant_types.iter().any(|g| g == "refresh_token"),
        }
    }

    /// Registered for the refresh_token grant: refresh tokens always.
    pub fn offline_access(&self) -> OfflineAccess {
        if self.grant_types.iter().any(|g| g == "refresh_token") {
            OfflineAccess::Always
        } else {
            OfflineAccess::OnRequest
        }
    }
}

/// The limits a client set itself when it registered (or in its metadata
/// document): the scopes it may ask for (`None`: any), and whether it may
/// have refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    pub scope: Option<String>,
    pub refresh_token_grant: bool,
}

impl ClientLimits {
    /// The first of `scopes` outside these limits.
    pub fn outside<'a>(&self, scopes: &'a [String]) -> Option<&'a String> {
        scopes.iter().find(|s| match &self.scope {
            _ if s.as_str() == super::oauth::OFFLINE_ACCESS => !self.refresh_token_grant,
            Some(listed) => !listed.split(' ').any(|l| l == s.as_str()),
            None => false,
        })
    }
}

/// RFC 7591 §3.2.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationError {
    InvalidRedirectUri(String),
    InvalidClientMetadata(String),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            RegistrationError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            RegistrationError::InvalidRedirectUri(d) | RegistrationError::InvalidClientMetadata(d) => d,
        }
    }
}

fn bad_metadata(d: impl Into<String>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(d.into())
}

/// Private-use schemes of MCP clients that predate RFC 8252's reverse-DNS
/// rule. Any other scheme must be a reverse domain name (`com.example.app`),
/// so that browsers' and operating systems' own launchers
/// (`microsoft-edge:`, `intent:`, `search-ms:`, …) are never a target.
const KNOWN_APP_SCHEMES: &[&str] = &["cursor", "vscode", "vscode-insiders", "windsurf", "claude", "zed"];

/// The redirect-URI policy of self-registered clients: loopback http (any
/// port), a native app's private-use scheme, or https on a host an admin
/// trusts (`trusted_hosts`, compared without case).
pub fn dynamic_redirect_uri_allowed(uri: &str, trusted_hosts: &[String]) -> Result<(), String> {
    let shown = excerpt(uri, 100);
    let bad = |why: &str| Err(format!("redirect URI {shown:?} {why}"));
    if uri.len() > REDIRECT_URI_MAX_LEN {
        return bad(&format!("is longer than {REDIRECT_URI_MAX_LEN} characters"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    if uri.contains('#') {
        return bad("must not have a fragment");
    }
    let Ok(url) = url::Url::parse(uri) else { return bad("is not an absolute URI") };
    if !url.username().is_empty() || url.password().is_some() {
        return bad("must not carry user information");
    }
    match url.scheme() {
        // The admin rule allows http only for a loopback host, judged on the
        // URI's text as matching judges it.
        "http" => validate_redirect_uri(uri),
        "https" => {
            let host = url.host_str().unwrap_or("").to_ascii_lowercase();
            if trusted_hosts.iter().any(|t| t.eq_ignore_ascii_case(&host)) {
                Ok(())
            } else {
                bad(&format!(
                    "is on host {host:?}, which is not among the trusted redirect hosts of dynamic \
                     registration (keyward.oauth.dynamic_registration.trusted_redirect_hosts); \
                     ask an admin to register the client or to trust the host"
                ))
            }
        }
        scheme if !KNOWN_APP_SCHEMES.contains(&scheme) && !scheme.contains('.') => {
            bad("uses a scheme that is not an app's own (a reverse domain name such as com.example.app)")
        }
        _ if url.cannot_be_a_base() && url.path().is_empty() => bad("needs a path after its scheme"),
        _ => Ok(()),
    }
}

fn optional_https(name: &str, value: Option<String>) -> Result<Option<String>, RegistrationError> {
    let Some(v) = value else { return Ok(None) };
    let ok = v.len() <= TEXT_MAX
        && url::Url::parse(&v).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
    if ok { Ok(Some(v)) } else { Err(bad_metadata(format!("{name} must be an https URL"))) }
}

fn short_text(name: &str, value: Option<String>, max: usize) -> Result<Option<String>, RegistrationError> {
    match value {
        // Format characters (bidi overrides, zero-width) would let a name
        // read as another on the consent page.
        Some(v)
            if v.chars().count() > max
                || v.chars().any(|c| c.is_control() || super::user::is_invisible(c)) =>
        {
            Err(bad_metadata(format!(
                "{name} must be at most {max} characters, without control or format characters"
            )))
        }
        v => Ok(v),
    }
}

/// `body` as client metadata: a JSON object (serde would take an array for a
/// struct), or why not.
pub fn parse_metadata<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !value.is_object() {
        return Err("client metadata is a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| format!("the body is not client metadata: {e}"))
}

/// Checks `meta` against the policy and says what keyward registers.
pub fn accept_metadata(
    meta: ClientMetadata,
    trusted_hosts: &[String],
) -> Result<RegisteredMetadata, RegistrationError> {
    let redirect_uris = meta.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(RegistrationError::InvalidRedirectUri(
            "redirect_uris must name at least one redirect URI".into(),
        ));
    }
    if redirect_uris.len() > REDIRECT_URIS_MAX {
        return Err(RegistrationError::InvalidRedirectUri(format!(
            "at most {REDIRECT_URIS_MAX} redirect URIs"
        )));
    }
    let mut uris: Vec<String> = Vec::new();
    for uri in redirect_uris {
        dynamic_redirect_uri_allowed(&uri, trusted_hosts).map_err(RegistrationError::InvalidRedirectUri)?;
        if !uris.contains(&uri) {
            uris.push(uri);
        }
    }
    // RFC 7591 §2: client_secret_basic when the client does not say.
    let method = meta.token_endpoint_auth_method.unwrap_or_else(|| "client_secret_basic".into());
    if !["none", "client_secret_basic", "client_secret_post"].contains(&method.as_str()) {
        return Err(bad_metadata(format!(
            "token_endpoint_auth_method {:?} is not supported; use none, client_secret_basic or \
             client_secret_post",
            excerpt(&method, 64)
        )));
    }
    // Grants keyward will not give (device code, …) are dropped, not refused.
    let asked = meta.grant_types.unwrap_or_else(|| vec!["authorization_code".into()]);
    if !asked.iter().any(|g| g == "authorization_code") {
        return Err(bad_metadata(
            "grant_types must include authorization_code: dynamic registration is for apps acting for \
             a user (machines get an M2M client from an admin)",
        ));
    }
    let grant_types: Vec<String> = ["authorization_code", "refresh_token"]
        .iter()
        .filter(|g| asked.iter().any(|a| a == *g))
        .map(|g| g.to_string())
        .collect();
    let response_types = meta.response_types.unwrap_or_else(|| vec!["code".into()]);
    if !response_types.iter().any(|r| r == "code") {
        return Err(bad_metadata("response_types must include code"));
    }
    let scope = match meta.scope {
        Some(raw) if raw.len() > TEXT_MAX => return Err(bad_metadata("scope is too long")),
        Some(raw) => {
            let scopes = parse_scope(&raw).map_err(|e| bad_metadata(e.description))?;
            (!scopes.is_empty()).then(|| scopes.join(" "))
        }
        None => None,
    };
    let application_type = meta.application_type.unwrap_or_else(|| "web".into());
    if !["web", "native"].contains(&application_type.as_str()) {
        return Err(bad_metadata("application_type must be web or native"));
    }
    let client_name = short_text("client_name", meta.client_name, NAME_MAX)?
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Unnamed client".into());
    let contacts = match meta.contacts {
        Some(c) if c.len() > CONTACTS_MAX => {
            return Err(bad_metadata(format!("at most {CONTACTS_MAX} contacts")));
        }
        Some(c) => {
            for contact in &c {
                short_text("contacts", Some(contact.clone()), NAME_MAX)?;
            }
            Some(c)
        }
        None => None,
    };
    Ok(RegisteredMetadata {
        client_name,
        redirect_uris: uris,
        token_endpoint_auth_method: method,
        grant_types,
        response_types: vec!["code".into()],
        scope,
        application_type,
        logo_uri: optional_https("logo_uri", meta.logo_uri)?,
        client_uri: optional_https("client_uri", meta.client_uri)?,
        policy_uri: optional_https("policy_uri", meta.policy_uri)?,
        tos_uri: optional_https("tos_uri", meta.tos_uri)?,
        contacts,
        software_id: short_text("software_id", meta.software_id, NAME_MAX)?,
        software_version: short_text("software_version", meta.software_version, NAME_MAX)?,
    })
}

/// The callback hosts of hosted MCP clients, trusted by default.
pub const DEFAULT_TRUSTED_REDIRECT_HOSTS: &str =
    "claude.ai claude.com chatgpt.com vscode.dev insiders.vscode.dev";

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<String> {
        DEFAULT_TRUSTED_REDIRECT_HOSTS.split(' ').map(String::from).collect()
    }

    #[test]
    fn redirect_policy() {
        let t = trusted();
        for ok in [
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
            "http://localhost:6274/oauth/callback",
            "http://localhost/callback",
            "http://[::1]:9/x",
            "https://claude.ai/api/mcp/auth_callback",
            "https://VSCODE.dev/redirect",
            "com.example.app:/oauth2redirect",
            "cursor://anysphere.cursor-retrieval/oauth/user-x/callback",
        ] {
            assert!(dynamic_redirect_uri_allowed(ok, &t).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/cb",
            "https://claude.ai.evil.example/cb",
            "http://localhost.evil.test/cb",
            "http://127.0.0.1.evil.example/",
            "http://example.com/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "microsoft-edge:https://evil.example/cb",
            "intent://evil.example/#Intent;end",
            "search-ms:query=x",
            "x-safari-https://evil.example/cb",
            "https://claude.ai/cb#frag",
            "https://user@claude.ai/cb",
            "relative/path",
            "com.example.app:",
            "http://127.0.0.1:99999/",
        ] {
            assert!(dynamic_redirect_uri_allowed(bad, &t).is_err(), "{bad}");
        }
        // An admin's list is what counts.
        assert!(dynamic_redirect_uri_allowed("https://claude.ai/cb", &[]).is_err());
    }

    fn meta(json: serde_json::Value) -> ClientMetadata {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn what_real_clients_send_is_accepted() {
        // VS Code: several redirect URIs and a grant it will not get.
        let m = accept_metadata(
            meta(serde_json::json!({
                "client_name": "Visual Studio Code",
                "redirect_uris": ["https://vscode.dev/redirect", "http://127.0.0.1:33418/", "http://127.0.0.1/"],
                "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "unknown_member": {"x": 1},
                "resource": "https://mcp.example/"
            })),
            &trusted(),
        )
        .unwrap();
        assert_eq!(m.client_type(), ClientType::Public);
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.redirect_uris.len(), 3);
        // Claude asks for client_secret_post: confidential.
        let m = accept_metadata(
            meta(serde_json::json!({
                "client_name": "Claude",
                "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
                "token_endpoint_auth_method": "client_secret_post",
                "scope": "mcp offline_access"
            })),
            &trusted(),
        )
        .unwrap();
        assert_eq!(m.client_type(), ClientType::Confidential);
        assert_eq!(m.scope.as_deref(), Some("mcp offline_access"));
        // Defaults: client_secret_basic, the code grant, a name.
        let m = accept_metadata(meta(serde_json::json!({"redirect_uris": ["http://localhost/cb"]})), &[])
            .unwrap();
        assert_eq!(m.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(m.grant_types, ["authorization_code"]);
        assert_eq!(m.client_name, "Unnamed client");
    }

    #[test]
    fn bad_metadata_names_the_member() {
        let cases = [
            (serde_json::json!({}), "invalid_redirect_uri", "redirect_uris"),
            (
                serde_json::json!({"redirect_uris": ["https://evil.example/cb"]}),
                "invalid_redirect_uri",
                "trusted",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
                "token_endpoint_auth_method",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
                "authorization_code",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
                "response_types",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "logo_uri": "javascript:x"}),
                "invalid_client_metadata",
                "logo_uri",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "client_name": "x".repeat(300)}),
                "invalid_client_metadata",
                "client_name",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "client_name": "Keyward \u{202e}nimdA"}),
                "invalid_client_metadata",
                "client_name",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/cb"], "scope": "a\"b"}),
                "invalid_client_metadata",
                "scope",
            ),
        ];
        for (json, code, says) in cases {
            let e = accept_metadata(meta(json.clone()), &trusted()).unwrap_err();
            assert_eq!(e.code(), code, "{json}");
            assert!(e.description().contains(says), "{json}: {}", e.description());
        }
        let too_many: Vec<String> = (0..21).map(|i| format!("http://localhost/{i}")).collect();
        assert!(accept_metadata(meta(serde_json::json!({"redirect_uris": too_many})), &[]).is_err());
    }
}

//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-
//! document, as the MCP 2026-07-28 revision profiles it): a client whose
//! `client_id` is an https URL publishes its metadata there. These are the
//! rules for such a URL and its document; fetching is the app's.

use super::delegated::{ClientType, DelegatedClient, OfflineAccess, REDIRECT_URIS_MAX};
use super::excerpt;
use super::registration::{
    ClientLimits, DYNAMIC_ACCESS_LIFETIME, DYNAMIC_REFRESH_LIFETIME, Registration, parse_metadata,
};
use serde::Deserialize;

/// Documents larger than this are refused (the draft suggests 5 KB).
pub const DOCUMENT_MAX_BYTES: usize = 16 * 1024;
pub const URL_MAX_LEN: usize = 2_048;
/// How long a fetched document is kept when it says nothing, and the bounds
/// of what its `Cache-Control: max-age` may say (seconds).
pub const DEFAULT_CACHE_SECONDS: u64 = 300;
pub const MAX_CACHE_SECONDS: u64 = 86_400;

/// Whether `client_id` is meant as a metadata document's URL: https, a
/// host, a path beyond `/`, no fragment, user information or dot segments.
pub fn is_document_url(client_id: &str) -> bool {
    document_url(client_id).is_ok()
}

/// The URL of a metadata document, or why `client_id` is not one.
pub fn document_url(client_id: &str) -> Result<url::Url, String> {
    if !client_id.starts_with("https://") {
        return Err("is not an https URL".into());
    }
    if client_id.len() > URL_MAX_LEN {
        return Err(format!("is longer than {URL_MAX_LEN} characters"));
    }
    if client_id.contains('#') || client_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not have a fragment or spaces".into());
    }
    let url = url::Url::parse(client_id).map_err(|_| "is not a URL".to_string())?;
    if !url.username().is_empty() || url.password().is_some() || url.host_str().is_none() {
        return Err("must have a host and no user information".into());
    }
    if url.path() == "/" || client_id.split('/').skip(3).any(|s| s == "." || s == "..") {
        return Err("needs a path (and no dot segments)".into());
    }
    // The document's own client_id must equal this string byte for byte;
    // a URL the parser rewrites could never match, so refuse it up front.
    if url.as_str() != client_id {
        return Err("is not in its normal form".into());
    }
    Ok(url)
}

#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    jwks: Option<serde_json::Value>,
    #[serde(default)]
    jwks_uri: Option<String>,
}

/// Where a `private_key_jwt` client's public keys are.
#[derive(Debug, Clone)]
pub enum DocumentKeys {
    /// In the document (`jwks`), checked to hold public keys only.
    Inline(jsonwebtoken::jwk::JwkSet),
    /// At `jwks_uri`, fetched under the same rules as the document.
    At(url::Url),
}

/// A client a metadata document describes.
#[derive(Debug, Clone)]
pub struct DocumentClient {
    pub client: DelegatedClient,
    pub limits: ClientLimits,
    /// `Some` for a confidential client (`private_key_jwt`): the keys its
    /// assertions are verified with. `None`: a public client.
    pub keys: Option<DocumentKeys>,
    /// Where the keys were fetched from (`jwks_uri`), if not in the document.
    pub keys_from: Option<url::Url>,
}

/// Keys a client may publish: a set of 1 to this many, public parts only.
pub const JWKS_MAX_KEYS: usize = 10;

/// A JWKS as published: public keys only (no `d`, no symmetric `k`).
pub fn public_key_set(value: serde_json::Value) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let keys = value.get("keys").and_then(|k| k.as_array()).ok_or("the jwks has no keys array")?;
    if keys.is_empty() || keys.len() > JWKS_MAX_KEYS {
        return Err(format!("the jwks must hold 1 to {JWKS_MAX_KEYS} keys"));
    }
    if keys.iter().any(|k| ["d", "p", "q", "k"].iter().any(|private| k.get(private).is_some())) {
        return Err("the jwks must hold public keys only".into());
    }
    serde_json::from_value(value).map_err(|e| format!("the jwks is not valid: {e}"))
}

/// A client as its document describes it — public, or confidential with
/// `private_key_jwt`; PKCE; loopback redirect URIs without a port matching
/// any port — and the limits it set itself.
pub fn client_from_document(url: &str, body: &[u8]) -> Result<DocumentClient, String> {
    let doc: Document =
        parse_metadata(body).map_err(|e| format!("the client metadata document is not valid: {e}"))?;
    if doc.client_id != url {
        return Err("the document's client_id is not the URL it was fetched from".into());
    }
    if doc.client_secret.is_some() {
        return Err("a metadata document must not carry a client_secret".into());
    }
    let keys = match doc.token_endpoint_auth_method.as_deref() {
        None | Some("none") => None,
        Some("private_key_jwt") => Some(match (doc.jwks, doc.jwks_uri) {
            (Some(set), None) => DocumentKeys::Inline(public_key_set(set)?),
            (None, Some(uri)) => {
                DocumentKeys::At(document_url(&uri).map_err(|e| format!("the jwks_uri {e}"))?)
            }
            _ => return Err("private_key_jwt needs exactly one of jwks and jwks_uri".into()),
        }),
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method {:?} is not supported for metadata documents; use none or \
                 private_key_jwt",
                excerpt(other, 64)
            ));
        }
    };
    if doc.redirect_uris.is_empty() || doc.redirect_uris.len() > REDIRECT_URIS_MAX {
        return Err(format!("redirect_uris must list 1 to {REDIRECT_URIS_MAX} URIs"));
    }
    for uri in &doc.redirect_uris {
        super::delegated::validate_redirect_uri(uri)
            .or_else(|e| if native_scheme(uri) { Ok(()) } else { Err(e) })?;
    }
    let grants = doc.grant_types.unwrap_or_else(|| vec!["authorization_code".into()]);
    if !grants.iter().any(|g| g == "authorization_code") {
        return Err("grant_types must include authorization_code".into());
    }
    if doc.response_types.is_some_and(|r| !r.iter().any(|t| t == "code")) {
        return Err("response_types must include code".into());
    }
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    // A name that could read as another on the consent page is refused.
    if doc.client_name.as_ref().is_some_and(|n| {
        n.chars().count() > 200 || n.chars().any(|c| c.is_control() || super::user::is_invisible(c))
    }) {
        return Err("client_name must be at most 200 characters, without control or format characters".into());
    }
    let name = doc.client_name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| host.clone());
    let scope = match doc.scope {
        Some(raw) => Some(super::oauth::parse_scope(&raw).map_err(|e| e.description)?.join(" ")),
        None => None,
    };
    let limits = ClientLimits { scope, refresh_token_grant: grants.iter().any(|g| g == "refresh_token") };
    let client = DelegatedClient {
        client_id: url.to_string(),
        name,
        redirect_uris: doc.redirect_uris,
        grant_type: if keys.is_some() { ClientType::Confidential } else { ClientType::Public },
        refresh_token_lifetime: DYNAMIC_REFRESH_LIFETIME,
        access_token_lifetime: DYNAMIC_ACCESS_LIFETIME,
        pkce_enabled: true,
        created_at: super::now(),
        registration: Registration::MetadataDocument,
        offline_access: if limits.refresh_token_grant {
            OfflineAccess::Always
        } else {
            OfflineAccess::OnRequest
        },
    };
    Ok(DocumentClient { client, limits, keys, keys_from: None })
}

/// `client_assertion_type` of RFC 7523 §2.2 client authentication.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead a client assertion may expire (clock skew aside): it is
/// single use, so its `jti` is kept until then. An hour, what client
/// libraries (authlib) make by default.
pub const ASSERTION_MAX_SECONDS: i64 = 3600;

/// Unexpired spent assertions kept at once for the clients of one document
/// host: past it, that host's clients wait (nobody else's do).
pub const ASSERTIONS_PER_HOST: i64 = 100_000;

/// A `private_key_jwt` assertion's claims once its signature verified
/// (RFC 7523 §3): `iss` and `sub` the client, `aud` the token endpoint or
/// the issuer and nothing else, `exp` soon, a `jti`. `(jti, exp)`, or why not.
pub fn check_assertion(
    assertion: &str,
    keys: &jsonwebtoken::jwk::JwkSet,
    client_id: &str,
    audiences: &[&str],
    now: i64,
) -> Result<(String, i64), String> {
    let expected =
        super::signed_jwt::Expected { issuer: client_id, audiences, required: &["iss", "sub", "aud"] };
    let claims = super::signed_jwt::verify(assertion, keys, &expected)?;
    if claims.get("sub").and_then(|s| s.as_str()) != Some(client_id) {
        return Err("its sub is not the client".into());
    }
    if !super::signed_jwt::has_single_audience(&claims) {
        return Err("it must name exactly one audience (aud), this server".into());
    }
    let exp = claims.get("exp").and_then(|e| e.as_i64()).ok_or("its exp is not a number")?;
    if exp > now + ASSERTION_MAX_SECONDS + super::signed_jwt::LEEWAY_SECONDS as i64 {
        return Err(format!("it expires more than {ASSERTION_MAX_SECONDS} seconds from now"));
    }
    match claims.get("jti").and_then(|j| j.as_str()) {
        Some(jti) if !jti.is_empty() && jti.len() <= 256 => Ok((jti.to_string(), exp)),
        _ => Err("it needs a jti of 1 to 256 characters".into()),
    }
}

/// A native app's own scheme (RFC 8252 §7.1), e.g. `com.example.app:/cb`.
fn native_scheme(uri: &str) -> bool {
    super::registration::dynamic_redirect_uri_allowed(uri, &[]).is_ok() && !uri.starts_with("http")
}

/// How long to keep a document, from its `Cache-Control` (None: not at all;
/// several header lines are given joined with commas).
pub fn cache_seconds(cache_control: Option<&str>) -> Option<u64> {
    let Some(value) = cache_control else { return Some(DEFAULT_CACHE_SECONDS) };
    let directives: Vec<String> = value.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
    if directives.iter().any(|d| d == "no-store" || d == "no-cache" || d == "private") {
        return None;
    }
    let max_age = directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age=").map(|v| v.trim_matches('"').parse::<u64>()));
    match max_age {
        // Unparsable (negative, say): not kept.
        Some(Err(_)) | Some(Ok(0)) => None,
        Some(Ok(n)) => Some(n.min(MAX_CACHE_SECONDS)),
        None => Some(DEFAULT_CACHE_SECONDS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://client.example/oauth/metadata.json";

    #[test]
    fn urls() {
        assert!(is_document_url(URL));
        for bad in [
            "http://client.example/m.json",
            "https://client.example/",
            "https://client.example",
            "https://u@client.example/m.json",
            "https://client.example/a/../m.json",
            "https://client.example/m.json#x",
            "https://CLIENT.example/m.json",
            "oac_0123",
        ] {
            assert!(!is_document_url(bad), "{bad}");
        }
    }

    fn doc(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn documents() {
        // Claude Code's shape: loopback without a port, any port matches.
        let DocumentClient { client: c, limits, keys, .. } = client_from_document(
            URL,
            &doc(serde_json::json!({
                "client_id": URL, "client_name": "Claude Code",
                "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"
            })),
        )
        .unwrap();
        assert_eq!(c.grant_type, ClientType::Public);
        assert!(keys.is_none());
        assert!(c.matching_redirect_uri("http://localhost:54321/callback").is_some());
        assert!(c.matching_redirect_uri("http://localhost:54321/other").is_none());
        assert_eq!(c.offline_access, OfflineAccess::Always);
        assert!(limits.refresh_token_grant && limits.scope.is_none());
        for (bad, says) in [
            (
                serde_json::json!({"client_id": "https://other.example/m.json", "redirect_uris": ["http://localhost/cb"]}),
                "client_id",
            ),
            (
                serde_json::json!({"client_id": format!("{URL}/"), "redirect_uris": ["http://localhost/cb"]}),
                "client_id",
            ),
            (serde_json::json!({"client_id": URL, "redirect_uris": []}), "redirect_uris"),
            (serde_json::json!({"client_id": URL, "redirect_uris": ["http://evil.example/cb"]}), "https"),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "client_secret": "x"}),
                "client_secret",
            ),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "exactly one of jwks and jwks_uri",
            ),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "private_key_jwt",
                                   "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
                "public keys only",
            ),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "private_key_jwt",
                                   "jwks_uri": "http://client.example/jwks.json"}),
                "jwks_uri",
            ),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
                "private_key_jwt",
            ),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "grant_types": ["client_credentials"]}),
                "authorization_code",
            ),
            (serde_json::json!([URL, "Array Client", ["http://localhost/cb"]]), "JSON object"),
            (
                serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/cb"], "client_name": "Admin\u{202e}x"}),
                "format",
            ),
        ] {
            let e = client_from_document(URL, &doc(bad.clone())).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn caching() {
        assert_eq!(cache_seconds(None), Some(DEFAULT_CACHE_SECONDS));
        assert_eq!(cache_seconds(Some("public, max-age=60")), Some(60));
        assert_eq!(cache_seconds(Some("max-age=999999999")), Some(MAX_CACHE_SECONDS));
        assert_eq!(cache_seconds(Some("no-store")), None);
        assert_eq!(cache_seconds(Some("max-age=0")), None);
        assert_eq!(cache_seconds(Some("max-age=-1")), None);
        assert_eq!(cache_seconds(Some("max-age=86400, no-store")), None);
    }
}

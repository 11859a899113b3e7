//! Identity Assertion JWT Authorization Grants (ID-JAG): the MCP
//! enterprise-managed authorization extension
//! (`io.modelcontextprotocol/enterprise-managed-authorization`). An
//! enterprise IdP an admin trusts vouches that its user may use a client
//! against a resource; the client presents that JWT with the RFC 7523
//! `jwt-bearer` grant. The signature is [`super::signed_jwt`]'s to verify;
//! this module checks what the verified claims must say.

use serde_json::Value;

pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The `typ` of an ID-JAG's header (RFC 8725 explicit typing).
pub const ID_JAG_TYPE: &str = "oauth-id-jag+jwt";
/// Claims the signature check requires besides `exp`.
pub const REQUIRED_CLAIMS: &[&str] = &["aud", "iat", "sub", "jti"];
/// An assertion may live at most this long (`exp - iat`): its `jti` is
/// kept until it expires.
pub const MAX_LIFETIME_SECONDS: i64 = 3600;
/// Larger assertions are refused before anything is parsed.
pub const MAX_BYTES: usize = 16 * 1024;

/// What an accepted assertion grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityAssertion {
    /// The user at the IdP (its `sub`).
    pub subject: String,
    pub resource: String,
    /// Space-separated; `None` when the IdP said nothing.
    pub scope: Option<String>,
    pub jti: String,
    pub expires_at: i64,
}

/// Whether the header's `typ` is the ID-JAG one (case-insensitively, as
/// media types compare).
pub fn is_id_jag_type(header: &Value) -> bool {
    header.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(ID_JAG_TYPE))
}

/// Checks the claims of an assertion whose signature, `iss`, `aud` and
/// `exp` were verified: issued to `client_id`, for a resource, not from the
/// future, not too long-lived. `Err` says why, as "it …".
pub fn check_claims(
    claims: &Value,
    client_id: &str,
    now: i64,
    leeway: i64,
) -> Result<IdentityAssertion, String> {
    let text =
        |name: &str| claims.get(name).and_then(Value::as_str).filter(|v| !v.is_empty() && v.len() <= 2048);
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    if text("client_id") != Some(client_id) {
        return Err("it was issued to another client (client_id)".into());
    }
    // One authorization server: an assertion several could redeem is not
    // single use.
    if !super::signed_jwt::has_single_audience(claims) {
        return Err("it must name exactly one audience (aud), this server".into());
    }
    let subject = text("sub").ok_or("it has no subject (sub)")?;
    let resource = text("resource").ok_or("it names no resource")?;
    let jti = text("jti").ok_or("it has no jti")?;
    let (iat, exp) = (number("iat").ok_or("it has no iat")?, number("exp").ok_or("it has no exp")?);
    if iat > now + leeway {
        return Err("it was issued in the future (iat)".into());
    }
    if exp.checked_sub(iat).is_none_or(|lifetime| lifetime > MAX_LIFETIME_SECONDS) {
        return Err(format!("it lives longer than {MAX_LIFETIME_SECONDS} seconds (exp - iat)"));
    }
    let scope = match claims.get("scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("its scope is not a space-separated string".into()),
    };
    Ok(IdentityAssertion {
        subject: subject.to_string(),
        resource: resource.to_string(),
        scope,
        jti: jti.to_string(),
        expires_at: exp,
    })
}

/// The scope a token gets: what the client asks, or else all of
/// `ceiling` — the assertion's scope, or where it names none the
/// resource's default scopes. Never wider than `ceiling`.
pub fn granted_scope(requested: Option<&str>, ceiling: &str) -> Result<String, String> {
    let allowed: Vec<&str> = ceiling.split(' ').filter(|s| !s.is_empty()).collect();
    let Some(asked) = requested else { return Ok(allowed.join(" ")) };
    match asked.split(' ').filter(|s| !s.is_empty()).find(|s| !allowed.contains(s)) {
        Some(extra) => Err(format!("the scope {extra:?} was not granted by the identity assertion")),
        None => Ok(asked.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "sub": "U1", "aud": "https://kw.example", "client_id": "dc_1",
               "resource": "https://mcp.example/mcp", "jti": "j1", "iat": 1000, "exp": 1300, "scope": "mcp"})
    }

    #[test]
    fn a_good_assertion() {
        let a = check_claims(&claims(), "dc_1", 1010, 60).unwrap();
        assert_eq!(
            a,
            IdentityAssertion {
                subject: "U1".into(),
                resource: "https://mcp.example/mcp".into(),
                scope: Some("mcp".into()),
                jti: "j1".into(),
                expires_at: 1300
            }
        );
    }

    #[test]
    fn bad_assertions_say_why() {
        let cases: [(&str, Value, &str); 9] = [
            ("client_id", json!("dc_2"), "another client"),
            ("client_id", Value::Null, "another client"),
            ("resource", Value::Null, "resource"),
            ("jti", json!(""), "jti"),
            ("iat", json!(5000), "future"),
            ("exp", json!(1000 + MAX_LIFETIME_SECONDS + 1), "longer"),
            ("iat", json!(i64::MIN), "longer"),
            ("aud", json!(["https://kw.example", "https://other.example"]), "exactly one audience"),
            ("scope", json!(["mcp"]), "scope"),
        ];
        for (claim, value, why) in cases {
            let mut c = claims();
            c[claim] = value;
            let e = check_claims(&c, "dc_1", 1010, 60).unwrap_err();
            assert!(e.contains(why), "{claim}: {e}");
        }
    }

    #[test]
    fn types_and_scopes() {
        assert!(is_id_jag_type(&json!({"typ": "oauth-id-jag+jwt"})));
        assert!(is_id_jag_type(&json!({"typ": "OAuth-ID-JAG+JWT"})));
        assert!(!is_id_jag_type(&json!({"typ": "JWT"})));
        assert!(!is_id_jag_type(&json!({})));
        assert_eq!(granted_scope(None, "mcp api"), Ok("mcp api".into()));
        assert_eq!(granted_scope(Some("mcp"), "mcp api"), Ok("mcp".into()));
        assert!(granted_scope(Some("api"), "mcp").is_err());
        assert!(granted_scope(Some("api"), "").is_err());
        assert_eq!(granted_scope(None, ""), Ok(String::new()));
    }
}

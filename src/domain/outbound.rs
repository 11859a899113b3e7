//! Outbound OAuth clients (SPEC §1.4): other systems' OAuth apps that the
//! platform's connectors use, as an admin registers them ("OAuth profiles").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundGrant {
    AuthorizationCode,
    ClientCredentials,
}

/// How keyward authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    Basic,
    Post,
}

/// Everything about an outbound client but its secret, which is write-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundClientSettings {
    pub name: String,
    pub grant_type: OutboundGrant,
    pub client_id: String,
    /// Required for the authorization code grant.
    pub authorization_url: Option<String>,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// How the provider wants scopes joined: " ", "," or "+".
    pub scope_separator: String,
    pub extra_authorization_params: BTreeMap<String, String>,
    pub extra_token_params: BTreeMap<String, String>,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub pkce_enabled: bool,
    /// Overrides (or supplies) the provider's `expires_in`, in milliseconds.
    pub access_token_lifetime_ms: Option<i64>,
    /// 0: the refresh token never expires.
    pub refresh_token_lifetime_ms: i64,
    /// Connections may call only below this URL.
    pub api_base_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundClient {
    pub id: String,
    #[serde(flatten)]
    pub settings: OutboundClientSettings,
    pub has_client_secret: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

const FIELD_MAX: usize = 512;
/// Ten years, in milliseconds: longer lifetimes are typing errors.
const LIFETIME_MAX_MS: i64 = 315_360_000_000;
const PARAMS_MAX: usize = 20;
/// Parameters keyward sets itself; an admin may not override them. (It
/// sets `scope` too, from `scopes`, in the authorization request and a
/// `client_credentials` token request; code redemption and refresh send
/// none, so some providers need one there.)
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "client_secret",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "grant_type",
    "redirect_uri",
    "refresh_token",
    "response_type",
    "state",
];

/// An absolute URL without fragment or user info that keyward may send
/// secrets to (see [`check_outbound_target`]).
pub fn validate_outbound_url(field: &str, url: &str, allow_private: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{field} {why}"));
    if url.len() > 2048 {
        return bad("is longer than 2048 characters");
    }
    let Ok(parsed) = url::Url::parse(url) else { return bad("must be an absolute URL") };
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("must not have a fragment or user info");
    }
    check_outbound_target(&parsed, allow_private).map_err(|why| format!("{field} {why}"))
}

/// The rule for every URL keyward calls out to (tokens, the proxy,
/// webhooks): https to a public host. The setting
/// `keyward.outbound.allow_private_addresses` (development and tests) also
/// allows private and loopback addresses, and plain http to loopback only:
/// a secret never crosses a network in clear text. Names are checked
/// again where they resolve, at connect time.
pub fn check_outbound_target(url: &url::Url, allow_private: bool) -> Result<(), String> {
    const HINT: &str = "(loopback or private addresses, and http to loopback, only with the setting \
                        keyward.outbound.allow_private_addresses)";
    let Some(host) = url.host() else { return Err("must have a host".into()) };
    let (public, loopback) = match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            // Only `localhost` itself counts as loopback for clear text: a
            // subdomain is whatever a resolver makes of it.
            (name != "localhost" && !name.ends_with(".localhost"), name == "localhost")
        }
        url::Host::Ipv4(ip) => (is_public_address(IpAddr::V4(ip)), ip.is_loopback()),
        url::Host::Ipv6(ip) => (is_public_address(IpAddr::V6(ip)), ip.is_loopback()),
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_private && loopback => {}
        "http" if allow_private => return Err("must be an https URL (http only to loopback)".into()),
        "http" => return Err(format!("must be an https URL {HINT}")),
        _ => return Err("must be an http(s) URL".into()),
    }
    if public || allow_private { Ok(()) } else { Err(format!("must name a public host {HINT}")) }
}

/// Whether `ip` belongs to the public internet: not loopback, private,
/// shared (CGNAT), link-local, unique-local, multicast, unspecified,
/// broadcast or documentation space, also when mapped into IPv6.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let first = segments[0];
            // 6to4 (2002::/16) carries an IPv4 address: judge that one.
            if first == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return is_public_address(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            // IPv4-compatible (::a.b.c.d, deprecated but still parsed).
            if segments[..6].iter().all(|&x| x == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_public_address(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            // Teredo (2001::/32) tunnels to an address it hides.
            if first == 0x2001 && segments[1] == 0 {
                return false;
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // Site-local (deprecated, fec0::/10) and IPv4-translated (::ffff:0:a.b.c.d).
                || (first & 0xffc0) == 0xfec0
                || segments[..4].iter().all(|&x| x == 0) && segments[4] == 0xffff && segments[5] == 0
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

fn validate_params(field: &str, params: &BTreeMap<String, String>, scope_set: bool) -> Result<(), String> {
    if params.len() > PARAMS_MAX {
        return Err(format!("{field} may have at most {PARAMS_MAX} entries"));
    }
    for (k, v) in params {
        if k.is_empty() || k.len() > FIELD_MAX || v.len() > FIELD_MAX {
            return Err(format!("{field}: names and values are 1 to {FIELD_MAX} characters"));
        }
        refuse_reserved(field, k, scope_set)?;
    }
    Ok(())
}

/// A parameter keyward sets may not be set for it, in `extra_*_params` or
/// in the query of the URL it is sent to (where a provider reading the
/// first of two would take the admin's). Names are compared as some
/// providers read them: without case.
fn refuse_reserved(field: &str, name: &str, scope_set: bool) -> Result<(), String> {
    let scope = scope_set && name.eq_ignore_ascii_case("scope");
    if scope || RESERVED_PARAMS.iter().any(|reserved| reserved.eq_ignore_ascii_case(name)) {
        return Err(format!("{field} may not set {name:?}: keyward sets it"));
    }
    Ok(())
}

/// The same for the parameters already in `url`'s query.
fn refuse_reserved_in_query(field: &str, url: &str, scope_set: bool) -> Result<(), String> {
    let Ok(url) = url::Url::parse(url) else { return Ok(()) };
    url.query_pairs().try_for_each(|(name, _)| refuse_reserved(field, &name, scope_set))
}

impl OutboundClientSettings {
    /// Where the client sends its secret and its connections' tokens: a
    /// change of any of these is a change of who receives them.
    pub fn endpoints(&self) -> (&str, Option<&str>, &str) {
        (&self.token_url, self.authorization_url.as_deref(), &self.api_base_url)
    }

    pub fn validate(&self, allow_private: bool) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > 200 || self.name.chars().any(char::is_control) {
            return Err("name must be 1 to 200 characters".into());
        }
        if self.client_id.is_empty() || self.client_id.len() > FIELD_MAX {
            return Err(format!("client_id must be 1 to {FIELD_MAX} characters"));
        }
        validate_outbound_url("token_url", &self.token_url, allow_private)?;
        validate_outbound_url("api_base_url", &self.api_base_url, allow_private)?;
        match (&self.grant_type, &self.authorization_url) {
            (OutboundGrant::AuthorizationCode, None) => {
                return Err("authorization_url is required for the authorization_code grant".into());
            }
            (_, Some(url)) => validate_outbound_url("authorization_url", url, allow_private)?,
            _ => {}
        }
        if !matches!(self.scope_separator.as_str(), " " | "," | "+") {
            return Err("scope_separator must be \" \", \",\" or \"+\"".into());
        }
        if self.scopes.len() > 50
            || self.scopes.iter().any(|s| s.is_empty() || s.len() > 200 || s.contains(char::is_whitespace))
        {
            return Err("scopes: at most 50, each 1 to 200 characters without spaces".into());
        }
        validate_params("extra_authorization_params", &self.extra_authorization_params, true)?;
        let token_request_has_scope = self.grant_type == OutboundGrant::ClientCredentials;
        validate_params("extra_token_params", &self.extra_token_params, token_request_has_scope)?;
        if let Some(url) = &self.authorization_url {
            refuse_reserved_in_query("authorization_url", url, true)?;
        }
        refuse_reserved_in_query("token_url", &self.token_url, token_request_has_scope)?;
        if self.access_token_lifetime_ms.is_some_and(|ms| !(1..=LIFETIME_MAX_MS).contains(&ms)) {
            return Err(format!(
                "access_token_lifetime_ms must be 1 to {LIFETIME_MAX_MS} (ten years), or absent to use the provider's"
            ));
        }
        if !(0..=LIFETIME_MAX_MS).contains(&self.refresh_token_lifetime_ms) {
            return Err(format!(
                "refresh_token_lifetime_ms must be 0 (never expires) to {LIFETIME_MAX_MS} (ten years)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> OutboundClientSettings {
        OutboundClientSettings {
            name: "End system".into(),
            grant_type: OutboundGrant::AuthorizationCode,
            client_id: "abc".into(),
            authorization_url: Some("https://account.endsystem.com/api/oauth2/authorize".into()),
            token_url: "https://api.endsystem.com/oauth2/token".into(),
            scopes: vec!["read".into()],
            scope_separator: " ".into(),
            extra_authorization_params: BTreeMap::new(),
            extra_token_params: BTreeMap::new(),
            token_endpoint_auth: TokenEndpointAuth::Basic,
            pkce_enabled: true,
            access_token_lifetime_ms: Some(3_600_000),
            refresh_token_lifetime_ms: 0,
            api_base_url: "https://api.endsystem.com/v1/".into(),
        }
    }

    #[test]
    fn the_reference_profile_is_valid() {
        assert_eq!(settings().validate(false), Ok(()));
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let cases: Vec<(Box<dyn Fn(&mut OutboundClientSettings)>, &str)> = vec![
            (Box::new(|s| s.token_url = "http://api.endsystem.com/token".into()), "token_url"),
            (Box::new(|s| s.authorization_url = None), "authorization_url"),
            (Box::new(|s| s.api_base_url = "ftp://x".into()), "api_base_url"),
            (Box::new(|s| s.scope_separator = ";".into()), "scope_separator"),
            (
                Box::new(|s| {
                    s.extra_token_params.insert("client_secret".into(), "x".into());
                }),
                "extra_token_params",
            ),
            // Reserved names in any case, and the scope that `scopes` sets.
            (
                Box::new(|s| {
                    s.extra_authorization_params.insert("Redirect_Uri".into(), "x".into());
                }),
                "extra_authorization_params",
            ),
            (
                Box::new(|s| {
                    s.extra_authorization_params.insert("scope".into(), "x".into());
                }),
                "extra_authorization_params",
            ),
            // … nor in the query of the URLs they go to (found by an outside probe).
            (
                Box::new(|s| {
                    s.authorization_url = Some("https://p.example/auth?redirect_uri=https://evil".into())
                }),
                "authorization_url",
            ),
            (
                Box::new(|s| s.authorization_url = Some("https://p.example/auth?x=1&Scope=admin".into())),
                "authorization_url",
            ),
            (Box::new(|s| s.token_url = "https://p.example/token?grant_type=password".into()), "token_url"),
            (Box::new(|s| s.refresh_token_lifetime_ms = -1), "refresh_token_lifetime_ms"),
            (Box::new(|s| s.access_token_lifetime_ms = Some(0)), "access_token_lifetime_ms"),
            (Box::new(|s| s.refresh_token_lifetime_ms = i64::MAX), "refresh_token_lifetime_ms"),
        ];
        for (change, field) in cases {
            let mut s = settings();
            change(&mut s);
            let e = s.validate(false).unwrap_err();
            assert!(e.contains(field), "{field}: {e}");
        }
        // A token request's scope is the admin's to set where keyward sends
        // none (code redemption, refresh), not where it does.
        let mut token_scope = settings();
        token_scope.extra_token_params.insert("scope".into(), "offline".into());
        assert_eq!(token_scope.validate(false), Ok(()));
        token_scope.grant_type = OutboundGrant::ClientCredentials;
        token_scope.authorization_url = None;
        assert!(token_scope.validate(false).unwrap_err().contains("extra_token_params"));
        let mut loopback = settings();
        loopback.token_url = "http://127.0.0.1:9999/token".into();
        assert!(loopback.validate(false).unwrap_err().contains("allow_private_addresses"));
        assert_eq!(loopback.validate(true), Ok(()));
    }

    #[test]
    fn private_targets_need_the_setting() {
        for private in [
            "https://127.0.0.1/",
            "https://localhost/",
            "https://api.localhost/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[2002:7f00:1::]/",
            "https://[2002:a00:1::]/",
            "https://[2001:0:4136:e378::1]/",
            "https://[::7f00:1]/",
            "https://[64:ff9b:1::a00:1]/",
            "https://[fec0::1]/",
            "https://[::ffff:0:7f00:1]/",
            "https://192.0.0.8/",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://[::1]/",
        ] {
            let url = url::Url::parse(private).unwrap();
            assert!(check_outbound_target(&url, false).is_err(), "{private}");
            assert!(check_outbound_target(&url, true).is_ok(), "{private}");
        }
        // Clear text leaves the machine never, whatever the setting.
        for clear in [
            "http://api.endsystem.com/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://8.8.8.8/",
            "http://x.localhost/",
        ] {
            let url = url::Url::parse(clear).unwrap();
            assert!(check_outbound_target(&url, true).unwrap_err().contains("https"), "{clear}");
            assert!(check_outbound_target(&url, false).is_err(), "{clear}");
        }
        for public in ["https://api.endsystem.com/v1/", "https://8.8.8.8/", "https://[2606:4700::1111]/"] {
            assert!(check_outbound_target(&url::Url::parse(public).unwrap(), false).is_ok(), "{public}");
        }
        assert!(check_outbound_target(&url::Url::parse("ftp://x.example/").unwrap(), true).is_err());
    }
}

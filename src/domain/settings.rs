//! Runtime settings shared by every node through the database (`keyward conf`,
//! `/admin/api/config/{key}/`). This module knows each key, its type, default
//! and range; storage only keeps the normalized string.

use super::excerpt;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    /// A whole number in an inclusive range, with the unit it is counted in.
    Integer {
        min: i64,
        max: i64,
        unit: &'static str,
    },
    Bool,
    /// One of a fixed set of names, compared case-insensitively.
    Choice(&'static [&'static str]),
    /// An https URL (http on loopback), or empty for none.
    Url,
    /// Host names separated by spaces or commas (stored lowercase, one
    /// space apart), or empty for none.
    Hosts,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SettingSpec {
    pub key: &'static str,
    pub kind: SettingKind,
    pub default: &'static str,
    pub description: &'static str,
}

pub const REFRESH_TOKEN_LIFESPAN: &str = "alation.authentication.token.refresh_token_lifespan";
pub const ACCESS_TOKEN_LIFESPAN: &str = "alation.authentication.token.access_token_lifespan";
pub const ENABLE_SWAGGER: &str = "alation.feature_flags.enable_swagger";
pub const SIGNING_ALGORITHM: &str = "keyward.oauth.signing_algorithm";
pub const CLIENT_SECRET_OVERLAP: &str = "keyward.oauth.client_secret_rotation_overlap";
pub const SIGNING_KEY_OVERLAP: &str = "keyward.oauth.signing_key_rotation_overlap";
pub const REFRESH_REUSE_GRACE: &str = "keyward.oauth.refresh_token_reuse_grace";
pub const ROTATE_CONFIDENTIAL_REFRESH: &str = "keyward.oauth.rotate_confidential_refresh_tokens";
pub const CONNECTION_SWEEP_INTERVAL: &str = "keyward.connections.sweep_interval";
pub const CONNECTION_KEEP_ALIVE: &str = "keyward.connections.refresh_keep_alive";
pub const CONNECTION_WEBHOOK_URL: &str = "keyward.connections.webhook_url";
pub const CONNECTION_OWNER_READS: &str = "keyward.connections.owners_read_tokens";
pub const OUTBOUND_ALLOW_PRIVATE: &str = "keyward.outbound.allow_private_addresses";
pub const PUBLIC_CLIENTS: &str = "keyward.oauth.public_clients";
pub const DYNAMIC_REGISTRATION: &str = "keyward.oauth.dynamic_registration";
pub const DYNAMIC_TRUSTED_HOSTS: &str = "keyward.oauth.dynamic_registration.trusted_redirect_hosts";
pub const DYNAMIC_MAX_UNAPPROVED: &str = "keyward.oauth.dynamic_registration.max_unapproved_clients";
pub const DYNAMIC_PER_NETWORK: &str = "keyward.oauth.dynamic_registration.per_network_hourly";
pub const DYNAMIC_CODE_QUOTA: &str = "keyward.oauth.dynamic_registration.codes_per_client";
pub const DYNAMIC_GRANT_QUOTA: &str = "keyward.oauth.dynamic_registration.grants_per_client";
pub const CLIENT_METADATA_DOCUMENTS: &str = "keyward.oauth.client_metadata.enabled";
pub const CLIENT_METADATA_ALLOW_PRIVATE: &str = "keyward.oauth.client_metadata.allow_private_addresses";
pub const CLIENT_METADATA_ALLOWED_HOSTS: &str = "keyward.oauth.client_metadata.allowed_hosts";
pub const CLIENT_METADATA_DENIED_HOSTS: &str = "keyward.oauth.client_metadata.denied_hosts";
pub const SESSION_LIFETIME: &str = "keyward.sessions.lifetime";
pub const SESSION_IDLE_TIMEOUT: &str = "keyward.sessions.idle_timeout";
pub const AUDIT_RETENTION: &str = "keyward.retention.audit_days";
pub const TOKEN_RETENTION: &str = "keyward.retention.expired_tokens_days";

/// Every setting keyward knows. Unknown keys are refused, so a typo never
/// silently configures nothing.
pub static SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: REFRESH_TOKEN_LIFESPAN,
        kind: SettingKind::Integer { min: 1, max: 3650, unit: "days" },
        default: "60",
        description: "Lifespan of refresh tokens created from now on, in days.",
    },
    SettingSpec {
        key: ACCESS_TOKEN_LIFESPAN,
        kind: SettingKind::Integer { min: 1, max: 8760, unit: "hours" },
        default: "24",
        description: "Lifespan of API access tokens created from now on, in hours.",
    },
    SettingSpec {
        key: ENABLE_SWAGGER,
        kind: SettingKind::Bool,
        default: "false",
        description: "Serve the Swagger UI pages of the OpenAPI documents.",
    },
    SettingSpec {
        key: SIGNING_ALGORITHM,
        kind: SettingKind::Choice(&["ES256", "EdDSA", "RS256"]),
        default: "ES256",
        description: "Algorithm of signing keys generated from now on (first start, `keyward keys rotate`).",
    },
    SettingSpec {
        key: CLIENT_SECRET_OVERLAP,
        kind: SettingKind::Integer { min: 0, max: 604_800, unit: "seconds" },
        default: "3600",
        description: "How long a rotated client secret keeps working beside the new one, in seconds.",
    },
    SettingSpec {
        key: SIGNING_KEY_OVERLAP,
        kind: SettingKind::Integer { min: 259_500, max: 2_592_000, unit: "seconds" },
        default: "259500",
        description: "How long a rotated signing key still verifies, in seconds (at least the longest \
                      access token lifetime, 72 hours, plus five minutes).",
    },
    SettingSpec {
        key: REFRESH_REUSE_GRACE,
        kind: SettingKind::Integer { min: 0, max: 259_200, unit: "seconds" },
        default: "10",
        description: "How long after a delegated refresh token is rotated a duplicate use of it gets the same \
                      new pair instead of revoking the whole family, in seconds; never longer than the \
                      client's access-token lifetime (multi-process agents keep stale generations).",
    },
    SettingSpec {
        key: ROTATE_CONFIDENTIAL_REFRESH,
        kind: SettingKind::Bool,
        default: "true",
        description: "Rotate refresh tokens of confidential delegated clients on every use (public clients \
                      always rotate).",
    },
    SettingSpec {
        key: PUBLIC_CLIENTS,
        kind: SettingKind::Bool,
        default: "true",
        description: "Allow public delegated clients (no secret, PKCE only): public apps an admin registers, \
                      self-registered ones asking for token_endpoint_auth_method none, and client metadata \
                      documents. Off: every delegated client authenticates with its secret, `none` leaves the \
                      server metadata, and public clients already registered get no code and no token.",
    },
    SettingSpec {
        key: CONNECTION_SWEEP_INTERVAL,
        kind: SettingKind::Integer { min: 5, max: 3600, unit: "seconds" },
        default: "60",
        description: "How often each node refreshes connection tokens that would expire before its next round.",
    },
    SettingSpec {
        key: CONNECTION_KEEP_ALIVE,
        kind: SettingKind::Integer { min: 60, max: 2_592_000, unit: "seconds" },
        default: "86400",
        description: "Connections unused this long get their refresh token used anyway, so that providers which \
                      expire idle refresh tokens do not cut them off.",
    },
    SettingSpec {
        key: CONNECTION_WEBHOOK_URL,
        kind: SettingKind::Url,
        default: "",
        description: "Where to POST a signed notice when a connection needs authorizing again (empty: nowhere). \
                      The Keyward-Signature header is a JWS verifiable with the JWKS.",
    },
    SettingSpec {
        key: CONNECTION_OWNER_READS,
        kind: SettingKind::Bool,
        default: "false",
        description: "Let a connection's owner read its provider access token at /api/v2/connections/{id}/token/. \
                      Off, provider tokens leave keyward only through the proxy, a token exchange by a client an \
                      admin allowed, or a service identity; every read is audited either way.",
    },
    SettingSpec {
        key: OUTBOUND_ALLOW_PRIVATE,
        kind: SettingKind::Bool,
        default: "false",
        description: "Let outbound clients, connections, the proxy and the webhook use http and loopback or \
                      private addresses (development and tests only: otherwise an admin could reach services \
                      on keyward's own network through them).",
    },
    SettingSpec {
        key: DYNAMIC_REGISTRATION,
        kind: SettingKind::Choice(&["off", "open", "initial_access_token"]),
        default: "open",
        description: "Dynamic client registration (RFC 7591) at /oauth/v2/register/: off, open to anyone \
                      (within the redirect-URI policy and the limits below), or only with an initial access \
                      token an admin issued.",
    },
    SettingSpec {
        key: DYNAMIC_TRUSTED_HOSTS,
        kind: SettingKind::Hosts,
        default: crate::domain::registration::DEFAULT_TRUSTED_REDIRECT_HOSTS,
        description: "Hosts whose https redirect URIs self-registered clients may use (loopback http and \
                      native apps' own schemes are always allowed).",
    },
    SettingSpec {
        key: DYNAMIC_MAX_UNAPPROVED,
        kind: SettingKind::Integer { min: 0, max: 1_000_000, unit: "clients" },
        default: "1000",
        description: "How many self-registered clients no user has approved yet may exist at once; they \
                      are removed a day after registering.",
    },
    SettingSpec {
        key: DYNAMIC_PER_NETWORK,
        kind: SettingKind::Integer { min: 0, max: 1_000_000, unit: "registrations" },
        default: "300",
        description: "Open registrations one network (an IPv4 address, an IPv6 /64; an IPv6 /48 four \
                      times as many) may make in a clock hour; further ones wait for the next hour (0: no \
                      limit). Hosted clients and offices register from shared addresses, so keep it well \
                      above their number of users; behind a load balancer, name it in trusted_proxies.",
    },
    SettingSpec {
        key: DYNAMIC_CODE_QUOTA,
        kind: SettingKind::Integer { min: 1, max: 100_000, unit: "codes" },
        default: "100",
        description: "How many unexpired authorization codes one self-registered client may hold.",
    },
    SettingSpec {
        key: DYNAMIC_GRANT_QUOTA,
        kind: SettingKind::Integer { min: 1, max: 10_000_000, unit: "grants" },
        default: "100000",
        description: "How many active grants (users' authorizations) one self-registered client may hold.",
    },
    SettingSpec {
        key: CLIENT_METADATA_DOCUMENTS,
        kind: SettingKind::Bool,
        default: "true",
        description: "Accept https URLs as client ids (Client ID Metadata Documents): keyward fetches the \
                      client's metadata from there.",
    },
    SettingSpec {
        key: CLIENT_METADATA_ALLOW_PRIVATE,
        kind: SettingKind::Bool,
        default: "false",
        description: "Let client metadata documents be fetched from loopback or private addresses \
                      (development and tests only).",
    },
    SettingSpec {
        key: CLIENT_METADATA_ALLOWED_HOSTS,
        kind: SettingKind::Hosts,
        default: "",
        description: "If not empty, the only hosts whose client metadata documents are accepted.",
    },
    SettingSpec {
        key: CLIENT_METADATA_DENIED_HOSTS,
        kind: SettingKind::Hosts,
        default: "",
        description: "Hosts whose client metadata documents are refused.",
    },
    SettingSpec {
        key: SESSION_LIFETIME,
        kind: SettingKind::Integer { min: 300, max: 2_592_000, unit: "seconds" },
        default: "28800",
        description: "How long a browser sign-in lasts at most, however active, in seconds (sign-ins made \
                      from now on).",
    },
    SettingSpec {
        key: SESSION_IDLE_TIMEOUT,
        kind: SettingKind::Integer { min: 60, max: 2_592_000, unit: "seconds" },
        default: "3600",
        description: "How long a browser sign-in may go unused before it ends, in seconds.",
    },
    SettingSpec {
        key: AUDIT_RETENTION,
        kind: SettingKind::Integer { min: 1, max: 3650, unit: "days" },
        default: "90",
        description: "Audit records older than this are deleted by the purge job (every node, every 10 \
                      minutes), in days; ship the log elsewhere to keep it longer.",
    },
    SettingSpec {
        key: TOKEN_RETENTION,
        kind: SettingKind::Integer { min: 1, max: 3650, unit: "days" },
        default: "30",
        description: "Refresh tokens and API access tokens expired or revoked longer ago than this, and \
                      delegated refresh tokens expired that long ago, are deleted by the purge job, in days \
                      (until then they are listed with their status).",
    },
];

pub fn spec(key: &str) -> Option<&'static SettingSpec> {
    SETTINGS.iter().find(|s| s.key == key)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingError {
    #[error("unknown setting {0:?}")]
    UnknownKey(String),
    #[error("{key} must be a whole number of {unit} from {min} to {max}, got {got:?}")]
    OutOfRange { key: &'static str, unit: &'static str, min: i64, max: i64, got: String },
    #[error("{key} must be one of {options}, got {got:?}")]
    NotOneOf { key: &'static str, options: String, got: String },
    #[error("{why}")]
    NotUrl { key: &'static str, why: String },
    #[error("{key} must be host names separated by spaces, got {got:?}")]
    NotHosts { key: &'static str, got: String },
    #[error("{key} must be true or false, got {got:?}")]
    NotBool { key: &'static str, got: String },
}

impl SettingSpec {
    /// Checks `raw` and returns the canonical form that is stored.
    pub fn normalize(&self, raw: &str) -> Result<String, SettingError> {
        let raw = raw.trim();
        let shown = || excerpt(raw, 64).to_owned();
        match self.kind {
            SettingKind::Integer { min, max, unit } => match raw.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n.to_string()),
                _ => Err(SettingError::OutOfRange { key: self.key, unit, min, max, got: shown() }),
            },
            SettingKind::Choice(options) => {
                options.iter().find(|o| o.eq_ignore_ascii_case(raw)).map(|o| o.to_string()).ok_or_else(|| {
                    SettingError::NotOneOf { key: self.key, options: options.join(", "), got: shown() }
                })
            }
            SettingKind::Url => {
                if raw.is_empty() {
                    return Ok(String::new());
                }
                // https, or http to loopback for development; where it may
                // point is checked again when it is used.
                let loopback_http = url::Url::parse(raw).is_ok_and(|u| {
                    u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
                });
                crate::domain::outbound::validate_outbound_url(self.key, raw, loopback_http)
                    .map(|()| raw.to_string())
                    .map_err(|why| SettingError::NotUrl { key: self.key, why })
            }
            SettingKind::Hosts => {
                let mut hosts: Vec<String> = Vec::new();
                for host in raw.split([' ', ',']).filter(|h| !h.is_empty()) {
                    let valid = host.len() <= 253
                        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                    if !valid {
                        return Err(SettingError::NotHosts {
                            key: self.key,
                            got: excerpt(host, 64).to_owned(),
                        });
                    }
                    let host = host.to_ascii_lowercase();
                    if !hosts.contains(&host) {
                        hosts.push(host);
                    }
                }
                Ok(hosts.join(" "))
            }
            SettingKind::Bool => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok("true".into()),
                "false" | "0" | "no" | "off" => Ok("false".into()),
                _ => Err(SettingError::NotBool { key: self.key, got: shown() }),
            },
        }
    }
}

/// A setting's effective value: the stored one, or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingValue {
    pub spec: &'static SettingSpec,
    pub value: String,
    pub is_default: bool,
}

impl SettingValue {
    pub fn resolve(spec: &'static SettingSpec, stored: Option<String>) -> Self {
        match stored {
            Some(value) => SettingValue { spec, value, is_default: false },
            None => SettingValue { spec, value: spec.default.to_string(), is_default: true },
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        self.value.parse().ok()
    }

    pub fn as_bool(&self) -> bool {
        self.value == "true"
    }

    pub fn as_hosts(&self) -> Vec<String> {
        self.value.split(' ').filter(|h| !h.is_empty()).map(String::from).collect()
    }
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid() {
        for s in SETTINGS {
            assert_eq!(s.normalize(s.default).unwrap(), s.default, "{}", s.key);
        }
    }

    #[test]
    fn integers_are_range_checked() {
        let s = spec(REFRESH_TOKEN_LIFESPAN).unwrap();
        assert_eq!(s.normalize(" 180 ").unwrap(), "180");
        assert!(matches!(s.normalize("0"), Err(SettingError::OutOfRange { .. })));
        assert!(matches!(s.normalize("3651"), Err(SettingError::OutOfRange { .. })));
        assert!(matches!(s.normalize("1.5"), Err(SettingError::OutOfRange { .. })));
        let msg = s.normalize("abc").unwrap_err().to_string();
        assert!(msg.contains("1 to 3650") && msg.contains("days"), "{msg}");
    }

    #[test]
    fn bools_accept_the_documented_true() {
        let s = spec(ENABLE_SWAGGER).unwrap();
        assert_eq!(s.normalize("True").unwrap(), "true");
        assert_eq!(s.normalize("off").unwrap(), "false");
        assert!(s.normalize("maybe").is_err());
    }

    #[test]
    fn choices_are_canonicalized() {
        let s = spec(SIGNING_ALGORITHM).unwrap();
        assert_eq!(s.normalize("eddsa").unwrap(), "EdDSA");
        assert!(s.normalize("HS256").unwrap_err().to_string().contains("ES256, EdDSA, RS256"));
    }

    #[test]
    fn host_lists_are_canonicalized() {
        let s = spec(DYNAMIC_TRUSTED_HOSTS).unwrap();
        assert_eq!(s.normalize(" Claude.AI, vscode.dev claude.ai ").unwrap(), "claude.ai vscode.dev");
        assert_eq!(s.normalize("").unwrap(), "");
        assert!(s.normalize("https://claude.ai/").unwrap_err().to_string().contains("host names"));
    }

    #[test]
    fn unknown_keys_are_absent() {
        assert!(spec("alation.nope").is_none());
    }
}

//! Property tests of the parsers that read untrusted input (`proptest`):
//! each holds for generated input, mostly built from the pieces attackers
//! combine (dot segments, encodings, user information, odd hosts), not
//! only for the examples the unit tests name. Run longer with
//! `scripts/fuzz 600` (ten minutes each, fresh cases every run).

use crate::harness::{Backend, TestServer};
use keyward::domain::client_metadata::{
    MAX_CACHE_SECONDS, cache_seconds, client_from_document, document_url,
};
use keyward::domain::delegated::{ClientType, DelegatedClient, OfflineAccess, validate_redirect_uri};
use keyward::domain::oauth::{normalize_resource, parse_scope};
use keyward::domain::proxy::proxy_target;
use keyward::domain::registration::{ClientMetadata, Registration, accept_metadata, parse_metadata};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pieces of paths, URLs and encodings that parsers get wrong.
const PIECES: &[&str] = &[
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "%252e%252e",
    "..;x",
    ".;",
    "a",
    "b c",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "/",
    "//",
    "@",
    "evil.example",
    "127.0.0.1",
    "[::1]",
    "localhost",
    ":",
    ":80",
    ":65536",
    "?",
    "#",
    "%00",
    "%",
    "%zz",
    "~",
    "é",
    "\u{202e}",
    "\t",
    "http://",
    "https://",
    "callback",
    "?x=1",
    "&",
    "=",
    "%3f",
    "%23",
    ";",
    "..%2f",
];

fn pieced(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..max).prop_map(|p| p.concat())
}

/// Pieces or any printable text.
fn hostile(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![pieced(max), "\\PC{0,40}"]
}

fn config() -> Config {
    // PROPTEST_CASES, when set, runs each property longer.
    Config { failure_persistence: None, ..Config::default() }
}

fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

proptest! {
    #![proptest_config(config())]

    /// The proxy's and the gateway's path rule: whatever it lets through is
    /// below the base, on its origin, and stays below it for a server that
    /// decodes the path once or twice more.
    #[test]
    fn proxied_paths_stay_below_the_base(path in hostile(12), query in proptest::option::of(hostile(4))) {
        let base = "https://api.example/v2/";
        if let Ok(target) = proxy_target(base, &path, query.as_deref()) {
            prop_assert_eq!(target.host_str(), Some("api.example"));
            prop_assert_eq!(target.scheme(), "https");
            prop_assert!(target.username().is_empty() && target.password().is_none());
            prop_assert!(target.fragment().is_none());
            for seen in [target.path().to_string(), percent_decoded(target.path()), percent_decoded(&percent_decoded(target.path()))] {
                prop_assert!(seen.starts_with("/v2/"), "{seen}");
                let segments: Vec<&str> = seen.split(['/', '\\']).collect();
                prop_assert!(!segments.iter().any(|s| *s == ".." || s.starts_with("..;")), "{seen}");
            }
        }
    }

    /// Scopes: distinct NQCHAR tokens; parsing what it gave back gives the same.
    #[test]
    fn scopes_parse_to_a_fixed_point(raw in hostile(10)) {
        if let Ok(scopes) = parse_scope(&raw) {
            for s in &scopes {
                prop_assert!(!s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
            }
            let mut distinct = scopes.clone();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), scopes.len());
            prop_assert_eq!(parse_scope(&scopes.join(" ")).unwrap(), scopes);
        }
    }

    /// Resource indicators: absolute http(s), no fragment or spaces, and
    /// normalizing twice changes nothing.
    #[test]
    fn resources_normalize_once(raw in prop_oneof![hostile(10), hostile(8).prop_map(|s| format!("https://{s}"))]) {
        if let Ok(resource) = normalize_resource(&raw) {
            prop_assert!(resource.starts_with("https://") || resource.starts_with("http://"));
            prop_assert!(!resource.contains('#') && !resource.chars().any(char::is_whitespace));
            prop_assert_eq!(normalize_resource(&resource).unwrap(), resource);
        }
    }

    /// A metadata document's URL is https, in its normal form, with a host
    /// and a path, and no user information or fragment.
    #[test]
    fn document_urls_are_normal_https(raw in prop_oneof![hostile(10), hostile(8).prop_map(|s| format!("https://{s}"))]) {
        if let Ok(url) = document_url(&raw) {
            prop_assert_eq!(url.as_str(), raw.as_str());
            prop_assert_eq!(url.scheme(), "https");
            prop_assert!(url.host_str().is_some() && url.username().is_empty() && url.fragment().is_none());
            prop_assert!(url.path() != "/");
        }
    }

    /// Redirect URIs: a confidential client's must match byte for byte; a
    /// public client's loopback one may differ in its port only, never in
    /// its host, user information or path.
    #[test]
    fn redirect_uris_match_only_themselves(requested in prop_oneof![
        hostile(10),
        (hostile(3), hostile(4)).prop_map(|(port, rest)| format!("http://127.0.0.1{port}/callback{rest}")),
    ]) {
        let registered = "http://127.0.0.1/callback";
        let _ = validate_redirect_uri(&requested);
        for (grant_type, any_port) in [(ClientType::Confidential, false), (ClientType::Public, true)] {
            let client = client_with(grant_type, registered);
            if client.matching_redirect_uri(&requested).is_some() {
                if !any_port {
                    prop_assert_eq!(requested.as_str(), registered);
                }
                let url = url::Url::parse(&requested);
                prop_assert!(url.is_ok(), "{requested}");
                let url = url.unwrap();
                prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
                prop_assert_eq!(url.path(), "/callback");
                prop_assert!(url.username().is_empty() && url.query().is_none());
            }
        }
    }

    /// A metadata document is never taken for another URL, and a client
    /// always has redirect URIs; any bytes at all are an answer, not a panic.
    #[test]
    fn documents_describe_their_own_url(body in document_bodies()) {
        let url = "https://client.example/oauth/client.json";
        if let Ok(found) = client_from_document(url, body.as_bytes()) {
            prop_assert_eq!(found.client.client_id.as_str(), url);
            prop_assert!(!found.client.redirect_uris.is_empty());
            prop_assert_eq!(found.keys.is_some(), found.client.grant_type == ClientType::Confidential);
        }
    }

    /// Dynamic registration's metadata: any JSON at all is accepted or
    /// refused with a reason, and what is accepted keeps to the policy.
    #[test]
    fn registrations_keep_to_the_policy(body in document_bodies()) {
        if let Ok(meta) = parse_metadata::<ClientMetadata>(body.as_bytes())
            && let Ok(accepted) = accept_metadata(meta, &["claude.ai".to_string()])
        {
            for uri in &accepted.redirect_uris {
                prop_assert!(keyward::domain::registration::dynamic_redirect_uri_allowed(uri, &["claude.ai".to_string()]).is_ok());
            }
        }
    }

    /// Cache-Control never keeps a document longer than the cap.
    #[test]
    fn documents_are_kept_at_most_a_day(header in hostile(6)) {
        if let Some(seconds) = cache_seconds(Some(&header)) {
            prop_assert!(seconds <= MAX_CACHE_SECONDS);
        }
    }

    /// Someone else's JWT: garbage and near-JWTs are refused, never trusted.
    #[test]
    fn foreign_jwts_are_refused(parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 1..5)) {
        let jwt = parts.join(".");
        let keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(serde_json::json!({"keys": []})).unwrap();
        let expected = keyward::domain::signed_jwt::Expected { issuer: "x", audiences: &["y"], required: &[] };
        prop_assert!(keyward::domain::signed_jwt::verify(&jwt, &keys, &expected).is_err());
    }
}

/// JSON bodies of client metadata, mostly objects with the members clients
/// send (with values of every type), sometimes anything.
fn document_bodies() -> impl Strategy<Value = String> {
    let url = "https://client.example/oauth/client.json";
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        hostile(6).prop_map(serde_json::Value::from),
        Just(serde_json::Value::from(url)),
        Just(serde_json::json!(["http://127.0.0.1/callback"])),
        Just(serde_json::json!(["https://claude.ai/api/mcp/auth_callback", "http://evil.example/cb"])),
        Just(serde_json::json!("private_key_jwt")),
        Just(serde_json::json!("none")),
        Just(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]})),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from)]
    });
    let member = prop::sample::select(
        &[
            "client_id",
            "client_name",
            "redirect_uris",
            "grant_types",
            "response_types",
            "token_endpoint_auth_method",
            "scope",
            "jwks",
            "jwks_uri",
            "client_secret",
            "logo_uri",
            "application_type",
            "contacts",
            "x",
        ][..],
    );
    prop_oneof![
        prop::collection::btree_map(member, value, 0..8).prop_map(|m| serde_json::to_string(&m).unwrap()),
        "\\PC{0,60}",
    ]
}

fn client_with(grant_type: ClientType, redirect_uri: &str) -> DelegatedClient {
    DelegatedClient {
        client_id: "oac_x".into(),
        name: "x".into(),
        redirect_uris: vec![redirect_uri.into()],
        grant_type,
        refresh_token_lifetime: 259_200,
        access_token_lifetime: 3600,
        pkce_enabled: true,
        created_at: keyward::domain::now(),
        registration: Registration::Admin,
        offline_access: OfflineAccess::OnRequest,
    }
}

/// The token endpoint's parsers as a client meets them (Basic credentials,
/// form bodies, assertions): generated requests get a 4xx, never a 5xx,
/// on a real server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_never_get_a_5xx() {
    let s = TestServer::start(Backend::Sqlite).await;
    let header = prop_oneof![
        hostile(8),
        hostile(8).prop_map(|s| format!("Basic {s}")),
        (hostile(4), hostile(4)).prop_map(|(id, secret)| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
        }),
    ];
    let field = prop::sample::select(
        &[
            "grant_type",
            "client_id",
            "client_secret",
            "code",
            "refresh_token",
            "scope",
            "resource",
            "redirect_uri",
            "code_verifier",
            "client_assertion",
            "client_assertion_type",
        ][..],
    );
    let value = prop_oneof![
        hostile(6),
        Just("client_credentials".to_string()),
        Just("authorization_code".to_string()),
        Just("refresh_token".to_string()),
        Just("urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string()),
        Just("https://client.example/oauth/client.json".to_string()),
    ];
    let body = prop::collection::vec((field, value), 0..6)
        .prop_map(|pairs| url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish());
    let requests = (proptest::option::of(header), prop_oneof![body, hostile(10)]);
    let handle = tokio::runtime::Handle::current();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        runner
            .run(&requests, |(authorization, body)| {
                let mut request = s
                    .http
                    .post(s.url("/oauth/v2/token/"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone());
                if let Some(value) = authorization.as_deref() {
                    match reqwest::header::HeaderValue::from_str(value) {
                        Ok(v) => request = request.header("authorization", v),
                        Err(_) => return Ok(()),
                    }
                }
                let status = handle.block_on(request.send()).unwrap().status();
                prop_assert!(status.is_client_error(), "{status} for {authorization:?} {body:?}");
                Ok(())
            })
            .unwrap();
    });
}

/// JSON made of hostile text: nested, with repeated keys and odd numbers.
fn hostile_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-0".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        hostile(6).prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..6).prop_map(|pairs| {
                let fields: Vec<String> =
                    pairs.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::from(*k))).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Field names the JSON and form routes read.
const FIELDS: &[&str] = &[
    "name",
    "username",
    "password",
    "role",
    "value",
    "redirect_uris",
    "grant_types",
    "grant_type",
    "scope",
    "scopes",
    "client_name",
    "token_endpoint_auth_method",
    "upstream_url",
    "required_scopes",
    "display_name",
    "access_token_duration",
    "disabled",
    "issuer",
    "client_id",
    "client_secret",
    "token_url",
    "authorization_url",
    "api_base_url",
    "refresh_token",
    "user_id",
    "token",
    "credentials",
    "data_product_id",
    "jwks",
    "jwks_uri",
    "description",
    "keys",
    "expires_in",
    "",
];

/// Every route that reads a JSON or form body, with an admin's token (so
/// that bodies reach the handlers' own parsers), gets generated bodies:
/// never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_never_get_a_5xx() {
    use reqwest::Method;
    let s = TestServer::start(Backend::Sqlite).await;
    let token = s.admin_token().await;
    let (m2m_id, _) = s.m2m_client("viewer", 600).await;
    let m2m = format!("/admin/api/m2m_clients/{m2m_id}/");
    let routes: Vec<(Method, String)> = vec![
        (Method::POST, "/admin/api/users/".into()),
        (Method::PATCH, "/admin/api/users/1/".into()),
        (Method::PUT, "/admin/api/config/keyward.oauth.refresh_token_reuse_grace/".into()),
        (Method::POST, "/admin/api/data_products/".into()),
        (Method::POST, "/admin/api/m2m_clients/".into()),
        (Method::PATCH, m2m),
        (Method::POST, "/admin/api/initial_access_tokens/".into()),
        (Method::POST, "/admin/api/resources/".into()),
        (Method::POST, "/admin/api/sso_providers/".into()),
        (Method::POST, "/oauth/v1/register/".into()),
        (Method::POST, "/oauth/v2/register/".into()),
        (Method::POST, "/admin/api/outbound_clients/".into()),
        (Method::POST, "/api/v2/connections/".into()),
        (Method::POST, "/api/v2/auth/credentials/".into()),
        (Method::POST, "/internal/v1/credentials/".into()),
        (Method::POST, "/integration/v1/createRefreshToken/".into()),
        (Method::POST, "/integration/v1/createAPIAccessToken/".into()),
        (Method::POST, "/integration/v1/validateAPIAccessToken/".into()),
        (Method::POST, "/integration/v1/revokeAPIAccessTokens/".into()),
        (Method::POST, "/oauth/v2/introspect/".into()),
        (Method::POST, "/oauth/v2/revoke/".into()),
    ];
    let form = prop::collection::vec((prop::sample::select(FIELDS), hostile(6)), 0..6)
        .prop_map(|pairs| url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish());
    let bodies = prop_oneof![
        hostile_json().prop_map(|b| ("application/json", b)),
        form.prop_map(|b| ("application/x-www-form-urlencoded", b)),
        hostile(10).prop_map(|b| ("application/json", b)),
    ];
    let requests = (prop::sample::select(routes), bodies);
    let handle = tokio::runtime::Handle::current();
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        runner
            .run(&requests, |((method, path), (content_type, body))| {
                let request = s
                    .send(method.clone(), &path, &token)
                    .header("content-type", content_type)
                    .body(body.clone());
                let status = handle.block_on(request.send()).unwrap().status();
                prop_assert!(status.as_u16() < 500, "{status} for {method} {path} {body:?}");
                Ok(())
            })
            .unwrap();
    });
}

//! JWTs signed by someone else's published keys (a JWKS): an SSO
//! provider's ID tokens, a client's `private_key_jwt` assertions. One
//! verification for both: an asymmetric algorithm only, the key the header
//! names (or any of the set), `iss`, `aud`, `exp` and whatever else the
//! caller requires, with a minute of clock skew.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 60;

/// The algorithms accepted. `none` and the HMAC family are not: a key
/// someone published can only verify, never sign for them.
pub const ASYMMETRIC_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The names of [`ASYMMETRIC_ALGORITHMS`], as metadata documents list them.
pub fn algorithm_names() -> Vec<String> {
    ASYMMETRIC_ALGORITHMS.iter().map(|a| format!("{a:?}")).collect()
}

/// What a verified JWT must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    /// Any one of these in `aud` will do.
    pub audiences: &'a [&'a str],
    /// Registered claims that must be present (`exp` always is).
    pub required: &'a [&'static str],
}

/// Whether `aud` names exactly one audience (a string, or a list of one):
/// an assertion that several servers accept could be replayed at each of
/// them, so assertions made for keyward must name keyward alone.
pub fn has_single_audience(claims: &serde_json::Value) -> bool {
    match claims.get("aud") {
        Some(serde_json::Value::String(_)) => true,
        Some(serde_json::Value::Array(list)) => list.len() == 1,
        _ => false,
    }
}

/// The key id a JWT's header names, if any (to fetch fresh keys when it
/// is unknown).
pub fn key_id(jwt: &str) -> Option<String> {
    jsonwebtoken::decode_header(jwt).ok()?.kid
}

/// The claims of `jwt` if one of `keys` verifies its signature and it says
/// what `expected` asks; else why not, as "it …".
pub fn verify(jwt: &str, keys: &JwkSet, expected: &Expected<'_>) -> Result<serde_json::Value, String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| "it is not a signed JWT".to_string())?;
    if !ASYMMETRIC_ALGORITHMS.contains(&header.alg) {
        return Err("it is not signed with an asymmetric algorithm".into());
    }
    // RFC 7515 §4.1.11: extensions it must understand, and keyward
    // understands none.
    if has_critical_parameters(jwt) {
        return Err("it names critical header parameters (crit) that are not understood".into());
    }
    let named = |jwk: &&Jwk| header.kid.is_none() || jwk.common.key_id == header.kid;
    let candidates: Vec<&Jwk> =
        keys.keys.iter().filter(named).filter(|jwk| signs_with(jwk, header.alg)).collect();
    if candidates.is_empty() {
        return Err("no published key matches it".into());
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(expected.audiences);
    let mut required = vec!["exp"];
    required.extend(expected.required);
    validation.set_required_spec_claims(&required);
    let mut last = "no published key verifies it".to_string();
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                last = match e.kind() {
                    ErrorKind::ExpiredSignature => "it has expired".into(),
                    ErrorKind::ImmatureSignature => "it is not valid yet".into(),
                    ErrorKind::InvalidIssuer => "it is from another issuer".into(),
                    ErrorKind::InvalidAudience => "it is for another audience".into(),
                    ErrorKind::MissingRequiredClaim(c) => format!("it has no {c} claim"),
                    ErrorKind::InvalidSignature => "its signature does not verify".into(),
                    _ => last,
                };
            }
        }
    }
    Err(last)
}

/// Part `index` of a compact JWT (0 the header, 1 the claims) as JSON,
/// read without verifying anything: only to decide how to verify it.
pub fn unverified_part(jwt: &str, index: usize) -> Option<serde_json::Value> {
    let part = jwt.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the JWT's protected header has a `crit` member.
fn has_critical_parameters(jwt: &str) -> bool {
    unverified_part(jwt, 0).is_some_and(|h| h.get("crit").is_some())
}

/// Whether `jwk` may verify a signature made with `alg`: not a key marked
/// for encryption only, nor one pinned to another algorithm.
fn signs_with(jwk: &Jwk, alg: Algorithm) -> bool {
    let for_signing = match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => true,
        Some(_) => false,
    };
    let verifies = jwk.common.key_operations.as_ref().is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let same_alg = jwk.common.key_algorithm.is_none_or(|pinned| format!("{pinned:?}") == format!("{alg:?}"));
    for_signing && verifies && same_alg
}

//! High-entropy secrets handed to callers (tokens, client secrets) and the
//! keyed hash under which they are stored. A 256-bit random secret needs no
//! slow password hash: HMAC-SHA-256 under a server-held key is enough to make
//! a stolen database useless, and it costs a microsecond.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a secret is for; its prefix makes it recognizable in a config file or
/// a secret scanner, and tells authentication which table to look in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    RefreshToken,
    ApiAccessToken,
    ClientSecret,
    /// Refresh tokens of delegated OAuth clients.
    OAuthRefreshToken,
    AuthorizationCode,
    Session,
    /// RFC 7592: manages one self-registered client.
    RegistrationAccessToken,
    /// RFC 7591 §3: lets its holder register a client.
    InitialAccessToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::RefreshToken => "kwrt_",
            SecretKind::ApiAccessToken => "kwat_",
            SecretKind::ClientSecret => "kwcs_",
            SecretKind::OAuthRefreshToken => "kwor_",
            SecretKind::AuthorizationCode => "kwac_",
            SecretKind::Session => "kwss_",
            SecretKind::RegistrationAccessToken => "kwra_",
            SecretKind::InitialAccessToken => "kwia_",
        }
    }

    pub fn of(secret: &str) -> Option<SecretKind> {
        [
            SecretKind::RefreshToken,
            SecretKind::ApiAccessToken,
            SecretKind::ClientSecret,
            SecretKind::OAuthRefreshToken,
            SecretKind::AuthorizationCode,
            SecretKind::Session,
            SecretKind::RegistrationAccessToken,
            SecretKind::InitialAccessToken,
        ]
        .into_iter()
        .find(|k| secret.starts_with(k.prefix()))
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("the OS random generator is available");
    out
}

/// `N` random bytes as unpadded base64url.
pub fn random_string<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// A new 256-bit secret with the kind's prefix.
pub fn new_secret(kind: SecretKind) -> String {
    format!("{}{}", kind.prefix(), random_string::<32>())
}

/// Keyed hash of secrets. Its key is a data key kept wrapped by the master key,
/// so rotating the master key does not change any stored hash.
#[derive(Clone)]
pub struct SecretHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    pub fn new(key: &[u8; 32]) -> Self {
        SecretHasher { key: hmac::Key::new(hmac::HMAC_SHA256, key) }
    }

    /// The stored form of `secret`: deterministic, so it is also the lookup key.
    pub fn digest(&self, secret: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, secret.as_bytes()).as_ref())
    }
}

/// RFC 7636 §4.2: the S256 challenge of a verifier.
pub fn pkce_s256_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, compared in
/// constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = pkce_s256_challenge(verifier);
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_unique_and_long() {
        let a = new_secret(SecretKind::ApiAccessToken);
        let b = new_secret(SecretKind::ApiAccessToken);
        assert_ne!(a, b);
        assert!(a.starts_with("kwat_"));
        assert_eq!(a.len(), 5 + 43);
        assert_eq!(SecretKind::of(&a), Some(SecretKind::ApiAccessToken));
        assert_eq!(SecretKind::of(&new_secret(SecretKind::RefreshToken)), Some(SecretKind::RefreshToken));
        assert_eq!(SecretKind::of("eyJhbGciOi"), None);
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_s256_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }

    #[test]
    fn digest_is_keyed_and_deterministic() {
        let h1 = SecretHasher::new(&[1u8; 32]);
        let h2 = SecretHasher::new(&[2u8; 32]);
        assert_eq!(h1.digest("x"), h1.digest("x"));
        assert_ne!(h1.digest("x"), h1.digest("y"));
        assert_ne!(h1.digest("x"), h2.digest("x"));
        assert!(!h1.digest("kwat_abc").contains("abc"));
    }
}

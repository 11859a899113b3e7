//! JWT signing keys. Key pairs are parsed once and kept, because parsing a
//! key on every signature halves token throughput; the JWS compact form
//! (RFC 7515 §7.1) is three base64url parts joined by dots, so it is built
//! here rather than through a library that re-parses the key per call.
//! Verification, the security-critical side, uses the `jsonwebtoken` crate.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    Es256,
    EdDsa,
    Rs256,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 3] =
        [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa, SigningAlgorithm::Rs256];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }

    pub fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown signing algorithm {s:?}; expected ES256, EdDSA or RS256"))
    }
}

enum Signer {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(rsa::KeyPair),
}

/// A private signing key, ready to sign.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlgorithm,
    signer: Signer,
    /// `{"alg","typ"}` header, base64url-encoded once.
    header_b64: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} {})", self.alg, self.kid)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("signing key material is not valid for {0}")]
pub struct KeyMaterialError(pub SigningAlgorithm);

impl SigningKey {
    /// A new key pair as PKCS#8 DER (what is stored, sealed).
    pub fn generate_pkcs8(alg: SigningAlgorithm) -> Vec<u8> {
        let fail = "key generation with the OS random generator";
        match alg {
            SigningAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .expect(fail)
                .as_ref()
                .to_vec(),
            SigningAlgorithm::EdDsa => {
                Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8()).expect(fail).as_ref().to_vec()
            }
            SigningAlgorithm::Rs256 => rsa::KeyPair::generate(rsa::KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .expect(fail)
                .as_ref()
                .to_vec(),
        }
    }

    pub fn from_pkcs8(kid: &str, alg: SigningAlgorithm, der: &[u8]) -> Result<Self, KeyMaterialError> {
        let bad = |_| KeyMaterialError(alg);
        let signer = match alg {
            SigningAlgorithm::Es256 => {
                Signer::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(bad)?)
            }
            SigningAlgorithm::EdDsa => Signer::EdDsa(Ed25519KeyPair::from_pkcs8(der).map_err(bad)?),
            SigningAlgorithm::Rs256 => Signer::Rs256(rsa::KeyPair::from_pkcs8(der).map_err(bad)?),
        };
        let header = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            signer,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            rng: SystemRandom::new(),
        })
    }

    /// The public key as a JWK (RFC 7517) for the JWKS document.
    pub fn public_jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.signer {
            Signer::Es256(k) => {
                // Uncompressed point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
            Signer::EdDsa(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())}),
            Signer::Rs256(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
        };
        jwk["kid"] = Value::from(self.kid.clone());
        jwk["alg"] = Value::from(self.alg.as_str());
        jwk["use"] = Value::from("sig");
        jwk
    }

    /// `claims` as a signed JWT with header `{alg, typ: "at+jwt", kid}`.
    pub fn sign_jwt(&self, claims: &impl Serialize) -> String {
        self.sign_with_header(&self.header_b64, claims)
    }

    /// `claims` signed with header `{alg, typ, kid}`, for signatures that
    /// must never pass as access tokens.
    pub fn sign_typed(&self, typ: &str, claims: &impl Serialize) -> String {
        let header = json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        self.sign_with_header(&URL_SAFE_NO_PAD.encode(header.to_string()), claims)
    }

    fn sign_with_header(&self, header_b64: &str, claims: &impl Serialize) -> String {
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let mut jwt = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 400);
        jwt.push_str(header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jwt);
        let signature = self.sign(jwt.as_bytes());
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        jwt
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let fail = "signing with a validated key does not fail";
        match &self.signer {
            Signer::Es256(k) => k.sign(&self.rng, message).expect(fail).as_ref().to_vec(),
            Signer::EdDsa(k) => k.sign(message).as_ref().to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut sig).expect(fail);
                sig
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};

    #[test]
    fn every_algorithm_signs_what_jsonwebtoken_verifies_from_the_jwk() {
        for alg in SigningAlgorithm::ALL {
            let der = SigningKey::generate_pkcs8(alg);
            let key = SigningKey::from_pkcs8("k1", alg, &der).unwrap();
            let jwt = key.sign_jwt(&json!({"sub": "x", "exp": 4_000_000_000u64, "aud": "a"}));
            let jwk: Jwk = serde_json::from_value(key.public_jwk()).unwrap();
            let mut validation = Validation::new(alg.jsonwebtoken());
            validation.set_audience(&["a"]);
            let data =
                jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
                    .unwrap();
            assert_eq!(data.claims["sub"], "x", "{alg}");
            assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(data.header.kid.as_deref(), Some("k1"));
            // The key material round-trips and is refused under another algorithm.
            let other = SigningAlgorithm::ALL.into_iter().find(|a| *a != alg).unwrap();
            assert!(SigningKey::from_pkcs8("k1", other, &der).is_err());
        }
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("es256".parse::<SigningAlgorithm>().unwrap(), SigningAlgorithm::Es256);
        assert_eq!("EdDSA".parse::<SigningAlgorithm>().unwrap(), SigningAlgorithm::EdDsa);
        assert!("HS256".parse::<SigningAlgorithm>().is_err());
        assert!("none".parse::<SigningAlgorithm>().is_err());
    }
}

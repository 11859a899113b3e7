//! Cryptography keyward performs itself: at-rest encryption under the master
//! key, high-entropy secrets and their keyed hashes, and password hashing.
//! Everything here is pure (no HTTP, no SQL); `aws-lc-rs` is the one backend.

mod master_key;
mod password;
mod secret;
mod signing;

pub use master_key::{
    AeadKey, MASTER_KEY_FILE, MasterKey, MasterKeyError, MasterKeySource, write_private_file,
};
pub use password::PasswordHasher;
pub use secret::{
    SecretHasher, SecretKind, new_secret, pkce_s256_challenge, pkce_s256_matches, random_bytes, random_string,
};
pub use signing::{KeyMaterialError, SigningAlgorithm, SigningKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ciphertext does not decrypt under this key")]
pub struct DecryptError;

//! The master key: 32 bytes from `KEYWARD_MASTER_KEY` or a 0600 file in the
//! data dir. It never encrypts data directly; it wraps data keys (AES-256-GCM,
//! with the wrapped thing's identity as associated data), so rotating it only
//! re-wraps keys.

use super::DecryptError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const MASTER_KEY_FILE: &str = "master.key";
const SEALED_VERSION: u8 = 1;

/// An AES-256-GCM key that seals small records with a random nonce and the
/// record's identity as associated data. The master key is one; the data
/// key it wraps is another.
pub struct AeadKey {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

/// The master key: it wraps the data keys and nothing else.
pub struct MasterKey {
    aead: AeadKey,
    /// Names this key without revealing it: which wrapped keyring is ours.
    fingerprint: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

impl std::ops::Deref for MasterKey {
    type Target = AeadKey;
    fn deref(&self) -> &AeadKey {
        &self.aead
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    Environment,
    ExistingFile(PathBuf),
    CreatedFile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key must be 32 bytes encoded in base64 (make one with `openssl rand -base64 32`)")]
    Malformed,
    #[error("cannot read or write the master key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl AeadKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key");
        AeadKey { key }
    }

    /// Encrypts `plaintext`; `context` names what it is (a table and row) so a
    /// ciphertext moved to another record does not decrypt.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context), &mut in_out)
            .expect("AES-GCM sealing does not fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        out
    }

    /// `plaintext` sealed and base64-encoded: how records store it.
    pub fn seal_text(&self, context: &[u8], plaintext: &[u8]) -> String {
        STANDARD.encode(self.seal(context, plaintext))
    }

    /// The plaintext of [`AeadKey::seal_text`]'s output.
    pub fn open_text(&self, context: &[u8], sealed: &str) -> Result<Vec<u8>, DecryptError> {
        let sealed = STANDARD.decode(sealed).map_err(|_| DecryptError)?;
        self.open(context, &sealed)
    }

    /// As [`AeadKey::open_text`], for a sealed UTF-8 string.
    pub fn open_string(&self, context: &[u8], sealed: &str) -> Result<String, DecryptError> {
        String::from_utf8(self.open_text(context, sealed)?).map_err(|_| DecryptError)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let (&version, rest) = sealed.split_first().ok_or(DecryptError)?;
        if version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| DecryptError)?;
        let mut in_out = ciphertext.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(context), &mut in_out).map_err(|_| DecryptError)?;
        Ok(plain.to_vec())
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let id = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, bytes),
            b"keyward master key id",
        );
        let fingerprint = id.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        MasterKey { aead: AeadKey::from_bytes(bytes), fingerprint }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A new random key and its base64 text (what a key file holds).
    pub fn generate() -> (Self, String) {
        let bytes: [u8; 32] = super::random_bytes();
        (Self::from_bytes(&bytes), STANDARD.encode(bytes))
    }

    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::Malformed)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| MasterKeyError::Malformed)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key from the environment if given, else from `<data_dir>/master.key`,
    /// created with mode 0600 on first use.
    pub fn load_or_create(
        data_dir: &Path,
        from_env: Option<&str>,
    ) -> Result<(Self, MasterKeySource), MasterKeyError> {
        if let Some(text) = from_env {
            return Ok((Self::parse(text)?, MasterKeySource::Environment));
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        let io = |source| MasterKeyError::Io { path: path.clone(), source };
        match fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text)?, MasterKeySource::ExistingFile(path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = super::random_bytes();
                write_private_file(&path, format!("{}\n", STANDARD.encode(bytes)).as_bytes()).map_err(io)?;
                Ok((Self::from_bytes(&bytes), MasterKeySource::CreatedFile(path)))
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Writes a file only its owner can read, failing if it already exists (so a
/// racing second start never overwrites a key or password another wrote).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let key = MasterKey::from_bytes(&[7u8; 32]);
        let sealed = key.seal(b"table:1", b"secret");
        assert_ne!(&sealed[13..sealed.len() - 16], b"secret");
        assert_eq!(key.open(b"table:1", &sealed).unwrap(), b"secret");
        assert_eq!(key.open(b"table:2", &sealed), Err(DecryptError));
        let other = MasterKey::from_bytes(&[8u8; 32]);
        assert_eq!(other.open(b"table:1", &sealed), Err(DecryptError));
        assert_eq!(key.open(b"table:1", &sealed[..5]), Err(DecryptError));
        assert_eq!(key.open(b"table:1", &[]), Err(DecryptError));
    }

    #[test]
    fn text_form_round_trips() {
        let key = AeadKey::from_bytes(&[9u8; 32]);
        let sealed = key.seal_text(b"ctx", "pässword".as_bytes());
        assert_eq!(key.open_string(b"ctx", &sealed).unwrap(), "pässword");
        assert_eq!(key.open_string(b"other", &sealed), Err(DecryptError));
        assert_eq!(key.open_string(b"ctx", "not base64!"), Err(DecryptError));
    }

    #[test]
    fn creates_a_private_file_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, src) = MasterKey::load_or_create(dir.path(), None).unwrap();
        assert!(matches!(src, MasterKeySource::CreatedFile(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(MASTER_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, src) = MasterKey::load_or_create(dir.path(), None).unwrap();
        assert!(matches!(src, MasterKeySource::ExistingFile(_)));
        assert_eq!(b.open(b"x", &a.seal(b"x", b"y")).unwrap(), b"y");
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(MasterKey::parse("not base64!").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert!(MasterKey::parse(&STANDARD.encode([1u8; 32])).is_ok());
    }
}

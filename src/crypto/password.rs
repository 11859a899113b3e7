//! argon2id password hashing, run on tokio's blocking pool behind a semaphore:
//! each hash takes tens of milliseconds and ~19 MiB, so it must neither stall
//! the async workers nor let a login flood exhaust memory.

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use std::sync::{Arc, LazyLock};
use tokio::sync::Semaphore;

/// A hash of a password nobody has, verified when a user does not exist so
/// that the unknown-user path costs the same as the wrong-password path.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"keyward-dummy-password")
        .expect("argon2 with default parameters")
        .to_string()
});

#[derive(Clone, Debug)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    /// `concurrency` hashes may run at once; more wait their turn.
    pub fn new(concurrency: usize) -> Self {
        PasswordHasher { permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.to_owned();
        self.run(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hash failed: {e}"))
        })
        .await?
    }

    /// Whether `password` matches `stored`; `None` verifies against a dummy
    /// hash and returns false, taking the same time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(move || {
            let (hash, real) = match &stored {
                Some(h) => (h.as_str(), true),
                None => (DUMMY_HASH.as_str(), false),
            };
            let ok = Argon2::default().verify_password(password.as_bytes(), hash).is_ok();
            ok && real
        })
        .await
        .unwrap_or(false)
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        Ok(tokio::task::spawn_blocking(work).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let h = PasswordHasher::new(2);
        let stored = h.hash("correct horse").await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains("correct horse"));
        assert!(h.verify("correct horse", Some(&stored)).await);
        assert!(!h.verify("wrong horse", Some(&stored)).await);
        assert!(!h.verify("correct horse", None).await);
        assert!(!h.verify("x", Some("not a phc string")).await);
    }
}

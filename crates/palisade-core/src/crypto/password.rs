//! Argon2id password hashing (OWASP: m=19 MiB, t=2, p=1) on the blocking pool, behind a
//! semaphore sized to the cores so a sign-in flood queues instead of starving other requests.
//! The queue is bounded: past `QUEUE_PER_PERMIT` waiters per permit a request is refused at once
//! (429 `rate_limited`, policy `password_hashing`) instead of waiting seconds for its turn.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::limits::{Decision, Limited};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
struct HashError(String);

#[derive(Debug, thiserror::Error)]
#[error("password hashing task failed")]
struct JoinError(#[source] tokio::task::JoinError);

/// Waiters allowed per permit: with ~50 ms a hash, about 1.5 s of queue at most.
pub const QUEUE_PER_PERMIT: usize = 32;

#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Requests waiting for or holding a permit, and how many may.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// A real hash of a random password, verified against when the account does not exist so
    /// unknown and known emails cost the same time.
    dummy: Arc<str>,
}

fn argon2() -> Result<Argon2<'static>> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| Error::internal(HashError(e.to_string())))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String> {
    let hash = argon2()?
        .hash_password(password)
        .map_err(|e| Error::internal(HashError(e.to_string())))?;
    Ok(hash.to_string())
}

impl Passwords {
    /// `concurrency` is the number of hashes computed at once (the core count).
    pub async fn new(concurrency: usize) -> Result<Self> {
        let throwaway = super::random::token()?;
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(throwaway.as_bytes()))
            .await
            .map_err(|e| Error::internal(JoinError(e)))??;
        Ok(Self::with_queue(
            concurrency,
            concurrency.max(1) * (QUEUE_PER_PERMIT + 1),
            dummy.into(),
        ))
    }

    fn with_queue(concurrency: usize, max_queued: usize, dummy: Arc<str>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queued: Arc::default(),
            max_queued,
            dummy,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _slot = QueueSlot::take(&self.queued, self.max_queued).ok_or_else(busy)?;
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::internal(JoinError(e)))?
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a fresh random salt.
    pub async fn hash(&self, password: &SecretString) -> Result<String> {
        let password = password.clone();
        self.run(move || hash_blocking(password.expose_secret().as_bytes()))
            .await
    }

    /// Verifies against `phc`, or against the dummy hash when there is no account, so both
    /// paths spend the same Argon2 time. Returns false for the dummy.
    pub async fn verify(&self, password: &SecretString, phc: Option<&str>) -> Result<bool> {
        let is_real = phc.is_some();
        let phc: String = phc.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let password = password.clone();
        let matches = self
            .run(move || {
                let argon = argon2()?;
                Ok(argon
                    .verify_password(password.expose_secret().as_bytes(), phc.as_str())
                    .is_ok())
            })
            .await?;
        Ok(is_real && matches)
    }
}

/// A place in the bounded queue, released on drop (also when the request is cancelled).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(queued))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn busy() -> Error {
    Error::RateLimited(Limited {
        decisions: vec![Decision {
            policy: "password_hashing",
            limit: 0,
            window_secs: 1,
            remaining: 0,
            reset_secs: 1,
            retry_after_secs: Some(1),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_places() -> Result<()> {
        let dummy = Passwords::new(1).await?.dummy;
        let pw = Passwords::with_queue(1, 3, dummy);
        let attempts: Vec<_> = (0..12)
            .map(|_| {
                let pw = pw.clone();
                tokio::spawn(async move { pw.verify(&SecretString::from("guess"), None).await })
            })
            .collect();
        let mut refused = 0;
        for a in attempts {
            match a.await.map_err(Error::internal)? {
                Ok(false) => {}
                Err(Error::RateLimited(l)) => {
                    assert_eq!(l.policy(), "password_hashing");
                    refused += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // A current-thread runtime: all twelve ask before the first hash ends.
        assert_eq!(refused, 9, "three places, twelve at once");
        assert_eq!(
            pw.queued.load(Ordering::Acquire),
            0,
            "every place is given back"
        );
        assert!(!pw.verify(&SecretString::from("guess"), None).await?);
        Ok(())
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_password_and_uses_owasp_parameters() -> Result<()> {
        let pw = Passwords::new(2).await?;
        let hash = pw
            .hash(&SecretString::from("correct horse battery"))
            .await?;
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            pw.verify(&SecretString::from("correct horse battery"), Some(&hash))
                .await?
        );
        assert!(
            !pw.verify(&SecretString::from("wrong horse battery"), Some(&hash))
                .await?
        );
        // No account: never true, whatever the password.
        assert!(
            !pw.verify(&SecretString::from("correct horse battery"), None)
                .await?
        );
        Ok(())
    }
}

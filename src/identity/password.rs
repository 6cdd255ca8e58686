//! Passwords: Argon2id at OWASP's parameters (m = 19 MiB, t = 2, p = 1),
//! hashed off the async workers on low-priority threads ([`super::hash_pool`]),
//! a fixed number at once, and a NIST SP
//! 800-63B style policy.
//!
//! The policy: 8 to 128 characters by default (counted as Unicode
//! characters), not one of the 10,000 most common passwords (the list ships
//! in the binary: `common-passwords.txt`, from the zxcvbn project, MIT
//! licence), not the username. No composition rules, no forced rotation.
//!
//! ```
//! use portcullis::identity::password::PasswordPolicy;
//! let policy = PasswordPolicy::default();
//! assert!(policy.check("correct horse battery staple", "alice").is_ok());
//! assert!(policy.check("password1", "alice").is_err());
//! assert!(policy.check("short", "alice").is_err());
//! ```

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use super::hash_pool::HashPool;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};

use crate::config::secrets::Secret;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().filter(|l| !l.is_empty()).collect());

/// Why a password was refused (safe to show the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Length limits for new passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters.
    pub min_length: usize,
    /// Most characters.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8, max_length: 128 }
    }
}

impl PasswordPolicy {
    /// Checks a new password for `username` (canonical form).
    pub fn check(&self, password: &str, username: &str) -> Result<(), PolicyError> {
        let length = password.chars().count();
        if length < self.min_length || length > self.max_length {
            return Err(PolicyError(format!("A password has {} to {} characters.", self.min_length, self.max_length)));
        }
        let folded = password.to_lowercase();
        if COMMON.contains(folded.as_str()) {
            return Err(PolicyError("This password is one of the most common ones; choose another.".into()));
        }
        if folded == username {
            return Err(PolicyError("The password may not be the username.".into()));
        }
        Ok(())
    }
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Right password; `rehash` when the stored parameters are outdated.
    Yes {
        /// The hash should be replaced with one at the current parameters.
        rehash: bool,
    },
    /// Wrong password (or no such account).
    No,
}

/// Why hashing failed (never contains the password).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id hashing on the hashing threads, at most `concurrency` at a time, so a
/// login flood queues instead of eating every core and all memory.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    pool: Arc<HashPool>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").field("params", &self.params).finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// OWASP parameters (m = 19456 KiB, t = 2, p = 1); `concurrency` hashes at once.
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(Params::DEFAULT_M_COST, Params::DEFAULT_T_COST, Params::DEFAULT_P_COST, None)
            .map_err(|e| HashError(e.to_string()))?;
        Self::with_params(params, concurrency)
    }

    /// Custom parameters (tests, benchmarks).
    pub fn with_params(params: Params, concurrency: usize) -> Result<Self, HashError> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // A hash of a random value: unknown accounts are checked against it so
        // that they cost the same time as known ones.
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| HashError("no randomness".into()))?;
        let dummy_hash = argon2.hash_password(&random).map_err(|e| HashError(e.to_string()))?.to_string();
        Ok(Self { params, pool: Arc::new(HashPool::new(concurrency)), dummy_hash: dummy_hash.into() })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: &Secret) -> Result<String, HashError> {
        let argon2 = self.argon2();
        let password = password.clone();
        self.pool
            .run(move || {
                argon2
                    .hash_password(password.expose().as_bytes())
                    .map(|h| h.to_string())
                    .map_err(|e| HashError(e.to_string()))
            })
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there
    /// is no account, taking about the same time either way.
    pub async fn verify(&self, password: &Secret, stored: Option<&str>) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let stored: String = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let current = self.params.clone();
        let argon2 = self.argon2();
        let password = password.clone();
        self.pool
            .run(move || {
                let Ok(hash) = PasswordHash::new(&stored) else { return Verified::No };
                let matches = argon2.verify_password(password.expose().as_bytes(), &hash).is_ok();
                if !(matches && known) {
                    return Verified::No;
                }
                let outdated = hash.algorithm.as_str() != "argon2id"
                    || Params::try_from(&hash).map_or(true, |p| {
                        p.m_cost() != current.m_cost()
                            || p.t_cost() != current.t_cost()
                            || p.p_cost() != current.p_cost()
                    });
                Verified::Yes { rehash: outdated }
            })
            .await
            .map_err(|e| HashError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordHasher {
        PasswordHasher::with_params(Params::new(1024, 1, 1, None).unwrap(), 2).unwrap()
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let hasher = fast();
        let hash = hasher.hash(&Secret::new("correct horse battery staple")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        assert_eq!(
            hasher.verify(&Secret::new("correct horse battery staple"), Some(&hash)).await.unwrap(),
            Verified::Yes { rehash: false }
        );
        assert_eq!(hasher.verify(&Secret::new("wrong"), Some(&hash)).await.unwrap(), Verified::No);
        assert_eq!(hasher.verify(&Secret::new("anything"), None).await.unwrap(), Verified::No);
        assert_eq!(hasher.verify(&Secret::new("anything"), Some("not a hash")).await.unwrap(), Verified::No);
    }

    #[tokio::test]
    async fn outdated_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::with_params(Params::new(512, 1, 1, None).unwrap(), 1).unwrap();
        let hash = old.hash(&Secret::new("correct horse battery staple")).await.unwrap();
        assert_eq!(
            fast().verify(&Secret::new("correct horse battery staple"), Some(&hash)).await.unwrap(),
            Verified::Yes { rehash: true }
        );
    }

    #[test]
    fn default_parameters_are_owasp() {
        let hasher = PasswordHasher::new(1).unwrap();
        assert_eq!((hasher.params.m_cost(), hasher.params.t_cost(), hasher.params.p_cost()), (19 * 1024, 2, 1));
        assert!(hasher.dummy_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn policy() {
        let policy = PasswordPolicy::default();
        for common in ["password", "Password1", "12345678", "iloveyou", "qwertyuiop", "PASSWORD"] {
            assert!(policy.check(common, "alice").is_err(), "{common}");
        }
        assert!(policy.check("alice-in-wonder", "alice-in-wonder").is_err());
        assert!(policy.check(&"x".repeat(129), "alice").is_err());
        assert!(policy.check("ünïcödé-pässwörd", "alice").is_ok());
        assert!(policy.check("7 chars", "alice").is_err());
        assert!(COMMON.len() >= 9_000);
    }
}

//! A bounded cache of verified access tokens, keyed by the exact token.
//!
//! A client sends the same token with every request for its whole life;
//! checking the signature again each time is most of the cost of a token
//! request (~35 µs for EdDSA). The cache keeps the claims of tokens that
//! passed every check, keyed by a randomly-seeded hash and confirmed by
//! comparing the whole token, so only the very same bytes hit. Expiry is
//! still checked on every hit, and revocation (the denylist) is checked
//! after the cache, every time. Full: an arbitrary entry is evicted.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis::identity::cache::VerifiedTokens;
//! let cache: VerifiedTokens<u32> = VerifiedTokens::new(2);
//! cache.insert("token-a", Arc::new(1));
//! assert_eq!(cache.get("token-a").as_deref(), Some(&1));
//! assert!(cache.get("token-b").is_none());
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

/// Hash of a token → the token and its claims.
type Entries<T> = HashMap<u64, (Box<str>, Arc<T>)>;

/// Verified tokens and their claims.
#[derive(Debug)]
pub struct VerifiedTokens<T> {
    entries: Mutex<Entries<T>>,
    capacity: usize,
    seed: RandomState,
}

impl<T> VerifiedTokens<T> {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::with_capacity(capacity.min(1024))), capacity, seed: RandomState::new() }
    }

    /// The claims of `token`, if these exact bytes were verified before.
    pub fn get(&self, token: &str) -> Option<Arc<T>> {
        let key = self.seed.hash_one(token);
        let entries = self.entries.lock().ok()?;
        entries.get(&key).filter(|(stored, _)| **stored == *token).map(|(_, claims)| claims.clone())
    }

    /// Forgets every token (the keys changed: a removed key's tokens must
    /// be checked again, and fail).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Remembers that `token` verified to `claims`.
    pub fn insert(&self, token: &str, claims: Arc<T>) {
        let key = self.seed.hash_one(token);
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.len() >= self.capacity
            && !entries.contains_key(&key)
            && let Some(victim) = entries.keys().next().copied()
        {
            entries.remove(&victim);
        }
        entries.insert(key, (token.into(), claims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_exact() {
        let cache = VerifiedTokens::new(2);
        cache.insert("a", Arc::new(1));
        cache.insert("b", Arc::new(2));
        cache.insert("c", Arc::new(3));
        let held = ["a", "b", "c"].iter().filter(|t| cache.get(t).is_some()).count();
        assert_eq!(held, 2);
        assert!(cache.get("c").is_some());
        assert!(cache.get("c ").is_none());
    }
}

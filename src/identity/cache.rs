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
//! A token is hashed once per request ([`TokenKeys::key`]) and that key
//! serves every cache (verified, refused), whose maps do not hash it again.
//!
//! ```
//! use std::sync::Arc;
//! use portcullis::identity::cache::{TokenKeys, VerifiedTokens};
//! let keys = TokenKeys::default();
//! let cache: VerifiedTokens<u32> = VerifiedTokens::new(2);
//! cache.insert(keys.key("token-a"), "token-a", Arc::new(1));
//! assert_eq!(cache.get(keys.key("token-a"), "token-a").as_deref(), Some(&1));
//! assert!(cache.get(keys.key("token-b"), "token-b").is_none());
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex};

/// A token's hash under this process's random key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenKey(u64);

/// Hashes tokens (SipHash, keyed at random per process: callers cannot
/// make tokens collide on purpose).
#[derive(Debug, Default)]
pub struct TokenKeys(RandomState);

impl TokenKeys {
    /// The key of `token`.
    pub fn key(&self, token: &str) -> TokenKey {
        TokenKey(self.0.hash_one(token))
    }
}

/// The maps' hasher: their keys are keyed hashes already, used as they are.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hash of a token → the token and its claims.
type Entries<T> = HashMap<u64, (Box<str>, Arc<T>), BuildHasherDefault<Prehashed>>;

/// Verified tokens and their claims.
#[derive(Debug)]
pub struct VerifiedTokens<T> {
    entries: Mutex<Entries<T>>,
    capacity: usize,
}

impl<T> VerifiedTokens<T> {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity_and_hasher(capacity.min(1024), Default::default())),
            capacity,
        }
    }

    /// The claims of `token` (whose key is `key`), if these exact bytes were verified before.
    pub fn get(&self, key: TokenKey, token: &str) -> Option<Arc<T>> {
        let entries = self.entries.lock().ok()?;
        entries.get(&key.0).filter(|(stored, _)| **stored == *token).map(|(_, claims)| claims.clone())
    }

    /// Forgets every token (the keys changed: a removed key's tokens must
    /// be checked again, and fail).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Remembers that `token` (whose key is `key`) verified to `claims`.
    pub fn insert(&self, key: TokenKey, token: &str, claims: Arc<T>) {
        let key = key.0;
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
        let keys = TokenKeys::default();
        let cache = VerifiedTokens::new(2);
        for (n, token) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(keys.key(token), token, Arc::new(n));
        }
        let held = ["a", "b", "c"].iter().filter(|t| cache.get(keys.key(t), t).is_some()).count();
        assert_eq!(held, 2);
        assert!(cache.get(keys.key("c"), "c").is_some());
        assert!(cache.get(keys.key("c "), "c ").is_none());
        assert!(cache.get(keys.key("c"), "d").is_none(), "a key collision does not confuse two tokens");
    }

    #[test]
    fn keys_are_seeded_per_process() {
        let (a, b) = (TokenKeys::default(), TokenKeys::default());
        assert_eq!(a.key("token"), a.key("token"));
        assert_ne!(a.key("token"), b.key("token"), "two seeds, two keys (with overwhelming probability)");
    }
}

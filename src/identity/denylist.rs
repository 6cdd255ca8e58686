//! Revoked access tokens and users, checked on every request without a
//! database round trip.
//!
//! Two kinds of entry: a revoked `jti` (logout, `/oauth/revoke`), kept until
//! the token would have expired; and a user cut-off (disabled, roles or
//! password changed): tokens of that user issued before the cut-off are
//! refused. Both are written to the store and every instance reloads them
//! every few seconds, so a revocation reaches a whole pool within that delay.
//! Memory is bounded: expired entries are dropped on each sync, and at most
//! `capacity` entries of each kind are kept (the oldest-expiring go first).

use std::collections::HashMap;
use std::sync::RwLock;

/// The in-memory denylist.
#[derive(Debug)]
pub struct Denylist {
    jtis: RwLock<HashMap<String, i64>>,
    users: RwLock<HashMap<String, i64>>,
    capacity: usize,
}

impl Denylist {
    /// An empty list holding at most `capacity` entries of each kind.
    pub fn new(capacity: usize) -> Self {
        Self { jtis: RwLock::default(), users: RwLock::default(), capacity }
    }

    /// Whether a token (`jti`, of user `sub`, issued at `iat`) is refused.
    ///
    /// ```
    /// use portcullis::identity::denylist::Denylist;
    /// let list = Denylist::new(10);
    /// list.revoke_token("t1", 2_000_000_000);
    /// list.cut_off_user("u1", 1_000);
    /// assert!(list.is_revoked("t1", "u2", 5_000));
    /// assert!(list.is_revoked("t2", "u1", 1_000));
    /// assert!(!list.is_revoked("t2", "u1", 1_001));
    /// ```
    pub fn is_revoked(&self, jti: &str, sub: &str, iat: i64) -> bool {
        if !jti.is_empty() && self.jtis.read().is_ok_and(|jtis| jtis.contains_key(jti)) {
            return true;
        }
        // `<=`: a token issued in the same second as the cut-off dies too
        // (`iat` has one-second resolution); fail closed.
        self.users.read().is_ok_and(|users| users.get(sub).is_some_and(|cutoff| iat <= *cutoff))
    }

    /// Refuses token `jti` until `expires_at` (an empty `jti` is ignored).
    pub fn revoke_token(&self, jti: &str, expires_at: i64) {
        if jti.is_empty() {
            return;
        }
        if let Ok(mut jtis) = self.jtis.write() {
            insert_bounded(&mut jtis, jti, expires_at, self.capacity);
        }
    }

    /// Refuses tokens of `sub` issued before `cutoff`.
    pub fn cut_off_user(&self, sub: &str, cutoff: i64) {
        if let Ok(mut users) = self.users.write() {
            let current = users.get(sub).copied().unwrap_or(i64::MIN);
            insert_bounded(&mut users, sub, current.max(cutoff), self.capacity);
        }
    }

    /// Replaces the contents with a fresh view of the store.
    pub fn replace(&self, jtis: Vec<(String, i64)>, users: Vec<(String, i64)>) {
        let keep = |entries: Vec<(String, i64)>| {
            let mut map: HashMap<String, i64> = HashMap::with_capacity(entries.len().min(self.capacity));
            for (key, value) in entries {
                insert_bounded(&mut map, &key, value, self.capacity);
            }
            map
        };
        if let Ok(mut current) = self.jtis.write() {
            *current = keep(jtis);
        }
        if let Ok(mut current) = self.users.write() {
            *current = keep(users);
        }
    }

    /// How many entries are held (tokens, users).
    pub fn len(&self) -> (usize, usize) {
        (self.jtis.read().map_or(0, |m| m.len()), self.users.read().map_or(0, |m| m.len()))
    }
}

/// Inserts, evicting the entry with the smallest value when full.
fn insert_bounded(map: &mut HashMap<String, i64>, key: &str, value: i64, capacity: usize) {
    if !map.contains_key(key)
        && map.len() >= capacity
        && let Some(oldest) = map.iter().min_by_key(|(_, v)| **v).map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
    map.insert(key.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let list = Denylist::new(2);
        list.revoke_token("a", 10);
        list.revoke_token("b", 30);
        list.revoke_token("c", 20);
        assert_eq!(list.len().0, 2);
        assert!(!list.is_revoked("a", "x", 0), "the entry expiring first was evicted");
        assert!(list.is_revoked("b", "x", 0) && list.is_revoked("c", "x", 0));
    }
}

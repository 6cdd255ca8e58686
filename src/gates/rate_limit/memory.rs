//! The in-memory rate store: sharded, bounded, idle keys dropped.
//!
//! A key whose TAT is in the past is as good as new, so it can be dropped
//! without changing any decision: that is how idle keys are evicted. When a
//! shard is still full of active keys, the key closest to being idle is
//! dropped (it becomes fully available again early) and the eviction is
//! counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::gcra::{Limit, Outcome, decide};

const SHARDS: usize = 16;

/// Per-key state for every limit of the process.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<String, u128>>>,
    per_shard: usize,
    epoch: Instant,
    evicted: AtomicU64,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (max_keys / SHARDS).max(16),
            epoch: Instant::now(),
            evicted: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u128 {
        self.epoch.elapsed().as_nanos()
    }

    /// Decides one request of `cost` for `key` under `limit`; counts it when
    /// admitted and `commit` is set (otherwise only looks).
    pub fn decide(&self, key: &str, limit: &Limit, cost: u32, commit: bool) -> Outcome {
        let shard = &self.shards[shard_of(key)];
        let now = self.now();
        let Ok(mut map) = shard.lock() else {
            // A poisoned shard: fail closed.
            return Outcome { allowed: false, remaining: 0, reset_after: 1, retry_after: 1 };
        };
        let (outcome, tat) = decide(limit, map.get(key).copied(), now, cost);
        if !commit || !outcome.allowed {
            return outcome;
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            map.retain(|_, tat| *tat > now);
            if map.len() >= self.per_shard
                && let Some(victim) = map.iter().min_by_key(|(_, tat)| **tat).map(|(k, _)| k.clone())
            {
                map.remove(&victim);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        map.insert(key.to_owned(), tat);
        outcome
    }

    /// Keys held now, and active keys evicted so far.
    pub fn stats(&self) -> (usize, u64) {
        let held = self.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum();
        (held, self.evicted.load(Ordering::Relaxed))
    }
}

fn shard_of(key: &str) -> usize {
    // FNV-1a: cheap and good enough to spread keys over 16 shards.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % SHARDS as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bounded_with_idle_keys_dropped() {
        let store = MemoryStore::new(16 * 16);
        let limit = Limit { interval: Duration::from_nanos(1), burst: 1 };
        for i in 0..10_000 {
            store.decide(&format!("client-{i}"), &limit, 1, true);
        }
        let (held, _) = store.stats();
        assert!(held <= 16 * 16 + 16, "{held} keys held");
    }

    #[test]
    fn exact_admit_count_under_concurrency() {
        let store = std::sync::Arc::new(MemoryStore::new(1000));
        let limit = Limit { interval: Duration::from_secs(3600), burst: 50 };
        let admitted = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (store, admitted) = (store.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if store.decide("shared", &limit, 1, true).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 50);
    }
}

//! Where rate-limit counters live: in this process ([`MemoryStore`]) or in
//! Redis, shared by every instance ([`RedisStore`]), and what happens when
//! Redis cannot answer ([`OnStoreError`]).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis::gates::rate_limit::gcra::Limit;
//! use portcullis::gates::rate_limit::memory::MemoryStore;
//! use portcullis::gates::rate_limit::store::{Check, Decision, OnStoreError, RateStore};
//! let store = RateStore::Memory(Arc::new(MemoryStore::new(1000)));
//! let limit = Limit { interval: Duration::from_secs(1), burst: 1 };
//! let check = || vec![Check { key: "k".into(), limit, cost: 1, commit: true }];
//! let Decision::Ready(Ok(first)) = store.decide(check(), OnStoreError::Deny) else { panic!() };
//! let Decision::Ready(Ok(second)) = store.decide(check(), OnStoreError::Deny) else { panic!() };
//! assert!(first[0].allowed && !second[0].allowed);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::gcra::Outcome;
use super::memory::MemoryStore;
pub use super::redis::{RedisSettings, RedisStore};

/// What to do with a request when the shared store does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Decide with this instance's memory counters (each instance then
    /// enforces the limit on its own share of traffic).
    #[default]
    Local,
    /// Admit the request unlimited (fail open).
    Allow,
    /// Refuse with 503 (fail closed).
    Deny,
}

impl OnStoreError {
    /// Parses `local`, `allow` or `deny`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(Self::Local),
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// One limit to check for one request.
#[derive(Debug, Clone)]
pub struct Check {
    /// The counter's key.
    pub key: String,
    /// The limit.
    pub limit: super::gcra::Limit,
    /// What this request costs.
    pub cost: u32,
    /// Whether an admitted request is counted (false: only look).
    pub commit: bool,
}

/// The store could not decide and the failure policy says refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;

/// The outcomes of a list of checks, in order; empty when the store was down
/// and the policy admitted the request without counting.
pub type Outcomes = Result<Vec<Outcome>, StoreUnavailable>;

/// A decision now (memory) or after a round trip (Redis).
pub enum Decision {
    /// Decided without waiting.
    Ready(Outcomes),
    /// Decided when the future completes (never later than the store timeout).
    Pending(Pin<Box<dyn Future<Output = Outcomes> + Send>>),
}

impl Decision {
    /// Waits for the outcomes.
    pub async fn outcomes(self) -> Outcomes {
        match self {
            Self::Ready(outcomes) => outcomes,
            Self::Pending(future) => future.await,
        }
    }
}

/// The counters of one serving thread.
#[derive(Clone)]
pub enum RateStore {
    /// In this process.
    Memory(Arc<MemoryStore>),
    /// In Redis, with the memory store as fallback.
    Redis(Arc<RedisStore>),
}

impl RateStore {
    /// `memory` or `redis`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Decides `checks` for one request.
    pub fn decide(&self, checks: Vec<Check>, on_error: OnStoreError) -> Decision {
        match self {
            Self::Memory(memory) => Decision::Ready(Ok(decide_locally(memory, &checks))),
            Self::Redis(redis) => redis.decide(checks, on_error),
        }
    }
}

/// Decides `checks` with the memory store.
pub(super) fn decide_locally(memory: &MemoryStore, checks: &[Check]) -> Vec<Outcome> {
    checks.iter().map(|c| memory.decide(&c.key, &c.limit, c.cost, c.commit)).collect()
}

/// How the shared store is doing, for `/readyz` and metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    redis: bool,
    down: AtomicBool,
    decisions: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
}

/// A snapshot of [`StoreHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether the shared store is answering (always true for memory).
    pub up: bool,
    /// Decisions made by the shared store.
    pub decisions: u64,
    /// Calls to the shared store that failed or timed out.
    pub failures: u64,
    /// Requests decided by the failure policy instead of the shared store.
    pub fallbacks: u64,
}

impl StoreHealth {
    /// Health of a Redis-backed store (`redis`) or a memory one.
    pub fn new(redis: bool) -> Self {
        Self { redis, ..Self::default() }
    }

    /// A snapshot.
    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: if self.redis { "redis" } else { "memory" },
            up: !self.down.load(Ordering::Relaxed),
            decisions: self.decisions.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }

    pub(super) fn decided(&self) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().rate_limit_store_failures.inc();
    }

    pub(super) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().rate_limit_fallbacks.inc();
    }

    /// Marks the store down; true when it was up (the caller reports it once).
    pub(super) fn mark_down(&self) -> bool {
        !self.down.swap(true, Ordering::AcqRel)
    }

    /// Marks the store up; true when it was down.
    pub(super) fn mark_up(&self) -> bool {
        self.down.swap(false, Ordering::AcqRel)
    }
}

/// Builds each serving thread's [`RateStore`]: one memory store for the
/// process, and with Redis one connection per thread.
#[derive(Clone)]
pub struct RateStores {
    memory: Arc<MemoryStore>,
    max_keys: usize,
    redis: Option<(redis::Client, RedisSettings)>,
    health: Arc<StoreHealth>,
}

impl RateStores {
    /// Counters in memory only.
    pub fn memory(max_keys: usize) -> Self {
        Self {
            memory: Arc::new(MemoryStore::new(max_keys)),
            max_keys,
            redis: None,
            health: Arc::new(StoreHealth::new(false)),
        }
    }

    /// Counters in Redis, with a memory store of `max_keys` as fallback.
    pub fn redis(settings: RedisSettings, max_keys: usize) -> Result<Self, String> {
        let client = settings.client()?;
        Ok(Self {
            memory: Arc::new(MemoryStore::new(max_keys)),
            max_keys,
            redis: Some((client, settings)),
            health: Arc::new(StoreHealth::new(true)),
        })
    }

    /// The store for the calling thread; call it inside its Tokio runtime.
    pub fn for_this_thread(&self) -> Result<RateStore, String> {
        match &self.redis {
            None => Ok(RateStore::Memory(self.memory.clone())),
            Some((client, settings)) => Ok(RateStore::Redis(Arc::new(RedisStore::new(
                client.clone(),
                settings,
                self.memory.clone(),
                self.health.clone(),
                self.max_keys,
            )?))),
        }
    }

    /// How the shared store is doing.
    pub fn health(&self) -> Arc<StoreHealth> {
        self.health.clone()
    }
}

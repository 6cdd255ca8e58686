//! A circuit breaker for the shared rate-limit store: after a few failures
//! in a row, stop asking the store for a while and use the failure policy
//! straight away, so that a dead or slow Redis costs nothing per request.
//!
//! Closed (normal) → `threshold` failures in a row → open for `cool_down`
//! (no calls) → half-open: one probe call at a time; its success closes the
//! breaker, its failure opens it again.
//!
//! ```
//! use std::time::Duration;
//! use portcullis::gates::rate_limit::breaker::Breaker;
//! let breaker = Breaker::new(2, Duration::from_secs(60));
//! assert!(breaker.try_acquire());
//! breaker.failure();
//! breaker.failure();
//! assert!(!breaker.try_acquire(), "open: no calls for a minute");
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by every caller of one store.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Nanoseconds since `epoch` until which the breaker is open (0: closed).
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    /// Opens after `threshold` failures in a row, for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go to the store now. When it returns true the
    /// caller must report [`success`](Self::success) or
    /// [`failure`](Self::failure).
    pub fn try_acquire(&self) -> bool {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until == 0 {
            return true;
        }
        if self.now() < open_until {
            return false;
        }
        // Half-open: one probe at a time.
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// The call succeeded: close the breaker.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.open_until.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    /// The call failed or timed out.
    pub fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if failures >= self.threshold || self.probing.load(Ordering::Acquire) {
            let until = self.now().saturating_add(u64::try_from(self.cool_down.as_nanos()).unwrap_or(u64::MAX));
            self.open_until.store(until.max(1), Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Whether the breaker is open or half-open (the store is considered down).
    pub fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let breaker = Breaker::new(3, Duration::from_millis(20));
        breaker.failure();
        breaker.failure();
        assert!(breaker.try_acquire(), "two failures: still closed");
        breaker.failure();
        assert!(breaker.is_open());
        assert!(!breaker.try_acquire());
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.try_acquire(), "half-open: one probe");
        assert!(!breaker.try_acquire(), "only one probe at a time");
        breaker.failure();
        assert!(!breaker.try_acquire(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.try_acquire());
        breaker.success();
        assert!(!breaker.is_open());
        assert!(breaker.try_acquire() && breaker.try_acquire(), "closed: every call goes through");
    }
}

//! GCRA (the generic cell rate algorithm): smooth limits with a burst, no
//! window edges. Each key keeps one number, its theoretical arrival time
//! (TAT). A request costing `cost` is admitted when
//! `max(TAT, now) + cost × interval − now ≤ burst × interval`; admitting
//! moves the TAT to `max(TAT, now) + cost × interval`.
//!
//! Over any span `t`, at most `burst + t / interval` requests are admitted
//! (property-tested below).
//!
//! ```
//! use std::time::Duration;
//! use portcullis::gates::rate_limit::gcra::{Limit, decide};
//! let limit = Limit { interval: Duration::from_secs(1), burst: 2 };
//! let (first, tat) = decide(&limit, None, 0, 1);
//! assert!(first.allowed);
//! let (second, tat) = decide(&limit, Some(tat), 0, 1);
//! let (third, _) = decide(&limit, Some(tat), 0, 1);
//! assert!(second.allowed && !third.allowed);
//! ```

use std::time::Duration;

/// A rate: one request per `interval`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Time between two requests at the sustained rate.
    pub interval: Duration,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Requests still admissible right now after this one.
    pub remaining: u32,
    /// Seconds until the limit is fully available again.
    pub reset_after: u64,
    /// When refused: seconds until this request would be admitted.
    pub retry_after: u64,
}

/// Decides a request of `cost` at `now_nanos` for a key whose TAT is `tat`
/// (None: never seen). Returns the outcome and the TAT to store.
pub fn decide(limit: &Limit, tat: Option<u128>, now_nanos: u128, cost: u32) -> (Outcome, u128) {
    let interval = limit.interval.as_nanos().max(1);
    let burst = u128::from(limit.burst.max(1));
    let tolerance = burst * interval;
    let tat = tat.unwrap_or(now_nanos).max(now_nanos);
    let new_tat = tat + u128::from(cost) * interval;
    let seconds_up = |nanos: u128| u64::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u64::MAX);
    if new_tat - now_nanos <= tolerance {
        let remaining = (tolerance - (new_tat - now_nanos)) / interval;
        let outcome = Outcome {
            allowed: true,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset_after: seconds_up(new_tat - now_nanos),
            retry_after: 0,
        };
        (outcome, new_tat)
    } else {
        let remaining = (tolerance.saturating_sub(tat - now_nanos)) / interval;
        let outcome = Outcome {
            allowed: false,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: seconds_up(tat - now_nanos),
            retry_after: seconds_up(new_tat - now_nanos - tolerance).max(1),
        };
        (outcome, tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u128 = 1_000_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let limit = Limit { interval: Duration::from_millis(100), burst: 3 };
        let mut tat = None;
        let mut admitted = 0;
        for _ in 0..10 {
            let (outcome, next) = decide(&limit, tat, 0, 1);
            tat = Some(next);
            admitted += u32::from(outcome.allowed);
        }
        assert_eq!(admitted, 3, "the burst, at once");
        let (outcome, _) = decide(&limit, tat, SECOND / 10, 1);
        assert!(outcome.allowed, "one more after one interval");
        let (refused, _) = decide(&limit, tat, 0, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1);
    }

    proptest::proptest! {
        /// Over any span, admitted cost never exceeds burst + span / interval,
        /// whatever the arrivals and costs.
        #[test]
        fn never_more_than_burst_plus_rate_times_time(
            interval_ms in 1u64..500,
            burst in 1u32..20,
            arrivals in proptest::collection::vec((0u64..300, 1u32..4), 1..300),
        ) {
            let limit = Limit { interval: Duration::from_millis(interval_ms), burst };
            let interval = limit.interval.as_nanos();
            let (mut now, mut tat, mut admitted_cost) = (0u128, None, 0u128);
            for (gap_ms, cost) in arrivals {
                now += u128::from(gap_ms) * 1_000_000;
                let (outcome, new_tat) = decide(&limit, tat, now, cost);
                tat = Some(new_tat);
                if outcome.allowed {
                    admitted_cost += u128::from(cost);
                }
                let bound = u128::from(burst) + now / interval;
                proptest::prop_assert!(admitted_cost <= bound, "admitted {} > {}", admitted_cost, bound);
            }
        }
    }
}

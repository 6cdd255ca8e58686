//! Leases: a share of a Redis limit's quota reserved by one serving thread,
//! spent without a round trip (`[rate_limit] lease`, off by default).
//!
//! When a request goes to Redis, the script may also reserve up to `lease`
//! more tokens of the same key for the thread that asked, at most a quarter
//! of what is left (so near the limit nothing is leased and decisions stay
//! exact). Those tokens are counted in Redis at once, so the pool never
//! admits more than the limit; the thread then admits its next requests
//! from them without asking Redis. A lease lives [`LEASE_TTL`]; tokens still
//! unused then are given back to Redis ([`Leases::expire`]).
//!
//! What it gives up: while one instance holds tokens, another may be
//! refused a little early (until the lease is spent or given back), and a
//! leased token is spent up to [`LEASE_TTL`] after Redis counted it, so over
//! any span `t` at most `burst + (t + LEASE_TTL) / interval` requests pass
//! instead of `burst + t / interval`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use portcullis::gates::rate_limit::gcra::{Limit, Outcome};
//! use portcullis::gates::rate_limit::lease::Leases;
//! use portcullis::gates::rate_limit::store::Check;
//! let leases = Leases::new(8, 1000);
//! let limit = Limit { interval: Duration::from_millis(1), burst: 100 };
//! let check = vec![Check { key: "k".into(), limit, cost: 1, commit: true }];
//! let now = Instant::now();
//! assert!(leases.take(&check, now).is_none(), "nothing held yet");
//! assert_eq!(leases.ask_for(&check[0]), 8);
//! let granted = Outcome { allowed: true, remaining: 99, reset_after: 1, retry_after: 0 };
//! leases.grant(&check[0], 8, &granted, now);
//! let outcomes = leases.take(&check, now).unwrap();
//! assert!(outcomes[0].allowed);
//! assert_eq!(outcomes[0].remaining, 98, "99 left in Redis and ours, one spent");
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gcra::{Limit, Outcome};
use super::store::Check;

/// How long leased tokens may be spent before they are given back.
pub const LEASE_TTL: Duration = Duration::from_millis(100);

/// The tokens one serving thread holds.
#[derive(Debug)]
pub struct Leases {
    /// Most tokens asked for per key and round trip (0: no leasing).
    max_tokens: u32,
    /// Most keys held at once.
    max_keys: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, Lease>,
    /// Unused tokens of leases that ended, to give back.
    ended: Vec<Refund>,
}

/// Tokens held for one key.
#[derive(Debug)]
struct Lease {
    tokens: u32,
    limit: Limit,
    /// Requests admissible in Redis beside this lease, when it was granted.
    others: u32,
    reset_after: u64,
    expires: Instant,
}

/// Unused tokens to give back to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The counter's key (without the Redis prefix).
    pub key: String,
    /// Its limit (the interval a token is worth).
    pub limit: Limit,
    /// How many tokens.
    pub tokens: u32,
}

impl Leases {
    /// Leases of up to `max_tokens` per key (0: none), for at most `max_keys` keys.
    pub fn new(max_tokens: u32, max_keys: usize) -> Self {
        Self { max_tokens, max_keys, state: Mutex::new(State::default()) }
    }

    /// Whether any token is ever leased.
    pub fn enabled(&self) -> bool {
        self.max_tokens > 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every step: a panic elsewhere cannot poison it half-written.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits `checks` from held tokens, all of them or none: `None` when
    /// any check is only a look, or has no live lease with enough tokens.
    pub fn take(&self, checks: &[Check], now: Instant) -> Option<Vec<Outcome>> {
        if !self.enabled() {
            return None;
        }
        let mut state = self.state();
        let covered = checks.iter().all(|check| {
            check.commit
                && state.held.get(&check.key).is_some_and(|lease| {
                    lease.expires > now && lease.tokens >= check.cost && lease.limit == check.limit
                })
        });
        if !covered {
            return None;
        }
        let outcomes = checks
            .iter()
            .filter_map(|check| {
                let lease = state.held.get_mut(&check.key)?;
                lease.tokens -= check.cost;
                Some(Outcome {
                    allowed: true,
                    remaining: lease.others.saturating_add(lease.tokens),
                    reset_after: lease.reset_after,
                    retry_after: 0,
                })
            })
            .collect();
        Some(outcomes)
    }

    /// How many tokens to ask for beside `check` (0: none).
    pub fn ask_for(&self, check: &Check) -> u32 {
        if !self.enabled() || !check.commit {
            return 0;
        }
        let state = self.state();
        match state.held.len() < self.max_keys || state.held.contains_key(&check.key) {
            true => self.max_tokens,
            false => 0,
        }
    }

    /// Holds `tokens` granted beside `check`, whose own outcome was `outcome`.
    pub fn grant(&self, check: &Check, tokens: u32, outcome: &Outcome, now: Instant) {
        if tokens == 0 || !self.enabled() {
            return;
        }
        let mut state = self.state();
        let others = outcome.remaining.saturating_sub(tokens);
        let fresh =
            Lease { tokens, limit: check.limit, others, reset_after: outcome.reset_after, expires: now + LEASE_TTL };
        match state.held.get_mut(&check.key) {
            Some(lease) if lease.expires > now && lease.limit == check.limit => {
                lease.tokens += tokens;
                lease.others = others;
                lease.reset_after = outcome.reset_after;
                lease.expires = fresh.expires;
            }
            _ => {
                if let Some(old) = state.held.insert(check.key.clone(), fresh) {
                    state.ended.push(Refund { key: check.key.clone(), limit: old.limit, tokens: old.tokens });
                }
            }
        }
    }

    /// Ends the leases expired at `now`: their unused tokens, and those of
    /// leases replaced since the last call, to give back.
    pub fn expire(&self, now: Instant) -> Vec<Refund> {
        let mut state = self.state();
        let mut refunds = std::mem::take(&mut state.ended);
        state.held.retain(|key, lease| {
            let live = lease.expires > now;
            if !live {
                refunds.push(Refund { key: key.clone(), limit: lease.limit, tokens: lease.tokens });
            }
            live
        });
        refunds.retain(|refund| refund.tokens > 0);
        refunds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, cost: u32, commit: bool) -> Check {
        Check { key: key.into(), limit: Limit { interval: Duration::from_millis(1), burst: 1000 }, cost, commit }
    }

    fn outcome(remaining: u32) -> Outcome {
        Outcome { allowed: true, remaining, reset_after: 1, retry_after: 0 }
    }

    #[test]
    fn all_checks_are_covered_or_none_is_taken() {
        let leases = Leases::new(16, 10);
        let now = Instant::now();
        leases.grant(&check("a", 1, true), 4, &outcome(500), now);
        let both = [check("a", 1, true), check("b", 1, true)];
        assert!(leases.take(&both, now).is_none(), "b holds nothing");
        // Nothing was taken from a: four requests still pass, the fifth asks Redis.
        for left in (0..4).rev() {
            let outcomes = leases.take(&both[..1], now).unwrap();
            assert_eq!(outcomes[0].remaining, 496 + left);
        }
        assert!(leases.take(&both[..1], now).is_none());
        assert!(leases.take(&[check("a", 5, true)], now).is_none(), "not enough for a cost of 5");
    }

    #[test]
    fn looks_and_other_limits_always_ask_redis() {
        let leases = Leases::new(16, 10);
        let now = Instant::now();
        leases.grant(&check("a", 1, true), 4, &outcome(500), now);
        assert!(leases.take(&[check("a", 1, false)], now).is_none(), "a look is never answered from a lease");
        assert_eq!(leases.ask_for(&check("a", 1, false)), 0);
        let mut other = check("a", 1, true);
        other.limit.burst = 10;
        assert!(leases.take(&[other], now).is_none(), "a changed limit does not spend the old lease");
    }

    #[test]
    fn expired_and_replaced_leases_are_given_back_once() {
        let leases = Leases::new(16, 10);
        let now = Instant::now();
        leases.grant(&check("a", 1, true), 4, &outcome(500), now);
        leases.take(&[check("a", 1, true)], now).unwrap();
        assert!(leases.expire(now).is_empty(), "still live");
        let later = now + LEASE_TTL;
        assert!(leases.take(&[check("a", 1, true)], later).is_none(), "expired leases are not spent");
        // A new grant after expiry replaces the lease; the old unused tokens go back.
        leases.grant(&check("a", 1, true), 2, &outcome(400), later);
        leases.grant(&check("b", 1, true), 3, &outcome(400), later);
        let refunds = leases.expire(later);
        assert_eq!(refunds, [Refund { key: "a".into(), limit: check("a", 1, true).limit, tokens: 3 }]);
        let refunds = leases.expire(later + LEASE_TTL);
        assert_eq!(refunds.len(), 2, "{refunds:?}");
        assert_eq!(refunds.iter().map(|r| r.tokens).sum::<u32>(), 5);
        assert!(leases.expire(later + LEASE_TTL * 2).is_empty(), "given back once");
    }

    #[test]
    fn keys_are_bounded_and_leasing_can_be_off() {
        let leases = Leases::new(16, 2);
        let now = Instant::now();
        leases.grant(&check("a", 1, true), 4, &outcome(500), now);
        leases.grant(&check("b", 1, true), 4, &outcome(500), now);
        assert_eq!(leases.ask_for(&check("c", 1, true)), 0, "full: no lease for a new key");
        assert_eq!(leases.ask_for(&check("a", 1, true)), 16, "a held key may grow");
        let off = Leases::new(0, 10);
        assert_eq!(off.ask_for(&check("a", 1, true)), 0);
        off.grant(&check("a", 1, true), 4, &outcome(500), now);
        assert!(off.take(&[check("a", 1, true)], now).is_none());
    }
}

//! Flood sampling: a flood of one kind of event (rate-limited, overloaded,
//! unauthenticated) is written at most [`FLOOD_EVENTS_PER_SECOND`] times per
//! second; the rest are counted and reported in one `audit.events-suppressed`
//! event. Metrics and alert rules still see every event.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{SecurityEvent, emit_system};
use crate::error::Reason;

/// Most events of one flooding kind (rate-limited, overloaded,
/// unauthenticated: a flood of bad or expired tokens) written per second by
/// one process; the rest are counted and reported in one
/// `audit.events-suppressed` event, so that a flood cannot drown the log.
pub const FLOOD_EVENTS_PER_SECOND: u64 = 100;

/// Counts the events of one flooding kind in the current second.
pub(super) struct FloodSampler {
    action: &'static str,
    /// (unix second, written in it, suppressed since the last report)
    state: Mutex<(u64, u64, u64)>,
}

static RATE_LIMITED: FloodSampler = FloodSampler { action: "request.rate-limited", state: Mutex::new((0, 0, 0)) };
static OVERLOADED: FloodSampler = FloodSampler { action: "request.overloaded", state: Mutex::new((0, 0, 0)) };
static UNAUTHENTICATED: FloodSampler = FloodSampler { action: "request.unauthenticated", state: Mutex::new((0, 0, 0)) };

impl FloodSampler {
    pub(super) fn for_event(event: &SecurityEvent) -> Option<&'static Self> {
        match event {
            SecurityEvent::Refused(Reason::RateLimited { .. }) => Some(&RATE_LIMITED),
            SecurityEvent::Refused(Reason::Overloaded) => Some(&OVERLOADED),
            SecurityEvent::Refused(Reason::Unauthenticated { .. }) => Some(&UNAUTHENTICATED),
            _ => None,
        }
    }

    /// Whether to write one more event now; reports what a past second suppressed.
    pub(super) fn admit(&self) -> bool {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (admit, report) = {
            let Ok(mut state) = self.state.lock() else { return true };
            let mut report = 0;
            if state.0 != now {
                report = std::mem::take(&mut state.2);
                *state = (now, 0, 0);
            }
            state.1 += 1;
            let admit = state.1 <= FLOOD_EVENTS_PER_SECOND;
            if !admit {
                state.2 += 1;
            }
            (admit, report)
        };
        self.report(report);
        admit
    }

    /// Reports suppressed events of seconds that are over.
    fn flush(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let report = match self.state.lock() {
            Ok(mut state) if state.0 != now => std::mem::take(&mut state.2),
            _ => 0,
        };
        self.report(report);
    }

    fn report(&self, count: u64) {
        if count > 0 {
            emit_system(&SecurityEvent::EventsSuppressed { action: self.action, count });
        }
    }
}

/// Reports flood events suppressed in seconds that are over (called on a timer).
pub fn flush_suppressed() {
    RATE_LIMITED.flush();
    OVERLOADED.flush();
    UNAUTHENTICATED.flush();
}

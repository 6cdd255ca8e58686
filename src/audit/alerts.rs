//! Alert rules: a threshold on the count of one kind of event in a sliding
//! window, optionally per user, client address or route. A rule that fires
//! raises an `alert.fired` event and posts a JSON webhook; it stays quiet
//! for its cool-down afterwards.
//!
//! Counting runs where events are emitted, before flood sampling, so a rule
//! sees every event even when the log shows a sample. State is bounded: at
//! most [`MAX_GROUPS`] groups per rule and `threshold` times per group.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use portcullis::audit::alerts::{AlertRule, AlertRules, GroupBy};
//! use portcullis::audit::EventContext;
//! let rule = AlertRule {
//!     name: "password-guessing".into(),
//!     action: "login.failure".into(),
//!     group_by: GroupBy::User,
//!     threshold: 3,
//!     window: Duration::from_secs(300),
//!     cooldown: Duration::from_secs(300),
//!     webhook: None,
//! };
//! let rules = AlertRules::new(vec![rule]);
//! let context = EventContext {
//!     request_id: "r", client_ip: None, method: "POST", path: "/auth/login", route: None, subject: Some("alice"),
//! };
//! let now = Instant::now();
//! assert!(rules.observe("login.failure", &context, now).is_empty());
//! assert!(rules.observe("login.failure", &context, now).is_empty());
//! let fired = rules.observe("login.failure", &context, now);
//! assert_eq!(fired[0].group, "user=alice");
//! assert!(rules.observe("login.failure", &context, now).is_empty()); // cooling down
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::EventContext;

/// Most groups one rule tracks; past it, groups idle for a window are
/// dropped first, and new groups are not tracked while it stays full.
pub const MAX_GROUPS: usize = 10_000;

/// What a rule counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// All matching events together.
    Nothing,
    /// Per user or client id.
    User,
    /// Per client address.
    Ip,
    /// Per route.
    Route,
}

impl GroupBy {
    /// The group of an event (`user=alice`), `None` when the event has no
    /// such field (it is then not counted by this rule).
    fn group(self, context: &EventContext<'_>) -> Option<String> {
        match self {
            Self::Nothing => Some(String::new()),
            Self::User => context.subject.map(|s| format!("user={s}")),
            Self::Ip => context.client_ip.map(|ip| format!("ip={ip}")),
            Self::Route => context.route.map(|r| format!("route={r}")),
        }
    }
}

/// One `[[alert]]` rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// Name, in the webhook and the event.
    pub name: String,
    /// The event action, or a prefix ending in `*` (`request.*`).
    pub action: String,
    /// What is counted separately.
    pub group_by: GroupBy,
    /// Events in `window` that fire the rule.
    pub threshold: usize,
    /// The sliding window.
    pub window: Duration,
    /// Quiet time per group after firing.
    pub cooldown: Duration,
    /// Where to post (http or https URL), if anywhere.
    pub webhook: Option<http::Uri>,
}

impl AlertRule {
    fn matches(&self, action: &str) -> bool {
        match self.action.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => action == self.action,
        }
    }
}

/// A rule that just fired.
#[derive(Debug, Clone)]
pub struct Firing {
    /// The rule's name.
    pub rule: String,
    /// The event action that fired it.
    pub action: String,
    /// The group (`user=alice`), empty when the rule does not group.
    pub group: String,
    /// Events in the window.
    pub count: usize,
    /// The window, in seconds.
    pub window_seconds: u64,
    /// Where to post.
    pub webhook: Option<http::Uri>,
}

#[derive(Debug, Default)]
struct GroupState {
    times: VecDeque<Instant>,
    quiet_until: Option<Instant>,
}

/// Every rule with its counting state.
#[derive(Debug, Default)]
pub struct AlertRules {
    rules: Vec<(AlertRule, Mutex<HashMap<String, GroupState>>)>,
}

impl AlertRules {
    /// The rules, with nothing counted yet.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        Self { rules: rules.into_iter().map(|rule| (rule, Mutex::new(HashMap::new()))).collect() }
    }

    /// Whether some rule counts `action` (cheap: no allocation).
    pub fn watches(&self, action: &str) -> bool {
        self.rules.iter().any(|(rule, _)| rule.matches(action))
    }

    /// Counts one event at `now`; returns the rules it made fire.
    pub fn observe(&self, action: &str, context: &EventContext<'_>, now: Instant) -> Vec<Firing> {
        let mut fired = Vec::new();
        for (rule, groups) in &self.rules {
            if !rule.matches(action) {
                continue;
            }
            let Some(group) = rule.group_by.group(context) else { continue };
            let Ok(mut groups) = groups.lock() else { continue };
            if groups.len() >= MAX_GROUPS && !groups.contains_key(&group) {
                groups.retain(|_, state| {
                    state.times.back().is_some_and(|t| now.duration_since(*t) < rule.window)
                        || state.quiet_until.is_some_and(|q| q > now)
                });
                if groups.len() >= MAX_GROUPS {
                    continue;
                }
            }
            let state = groups.entry(group.clone()).or_default();
            while state.times.front().is_some_and(|t| now.duration_since(*t) >= rule.window) {
                state.times.pop_front();
            }
            if state.times.len() >= rule.threshold {
                state.times.pop_front();
            }
            state.times.push_back(now);
            if state.times.len() >= rule.threshold && state.quiet_until.is_none_or(|q| q <= now) {
                state.quiet_until = Some(now + rule.cooldown);
                fired.push(Firing {
                    rule: rule.name.clone(),
                    action: action.to_owned(),
                    group,
                    count: state.times.len(),
                    window_seconds: rule.window.as_secs(),
                    webhook: rule.webhook.clone(),
                });
            }
        }
        fired
    }
}

/// The JSON a webhook receives.
pub fn webhook_body(firing: &Firing) -> serde_json::Value {
    serde_json::json!({
        "alert": firing.rule,
        "action": firing.action,
        "group": firing.group,
        "count": firing.count,
        "window_seconds": firing.window_seconds,
        "severity": "high",
        "at": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "instance": super::record::instance(),
        "source": "portcullis",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group_by: GroupBy, threshold: usize) -> AlertRule {
        AlertRule {
            name: "r".into(),
            action: "request.*".into(),
            group_by,
            threshold,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            webhook: None,
        }
    }

    fn from(ip: &str) -> EventContext<'static> {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        EventContext { request_id: "", client_ip: Some(ip), method: "", path: "", route: None, subject: None }
    }

    #[test]
    fn counts_per_group_within_the_window_only() {
        let rules = AlertRules::new(vec![rule(GroupBy::Ip, 3)]);
        let start = Instant::now();
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), start).is_empty());
        assert!(rules.observe("request.forbidden", &from("10.0.0.2"), start).is_empty());
        assert!(rules.observe("login.failure", &from("10.0.0.1"), start).is_empty(), "not matched");
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), start).is_empty());
        // The first event left the window: still two.
        let later = start + Duration::from_secs(61);
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), later).is_empty());
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), later).is_empty());
        let fired = rules.observe("request.forbidden", &from("10.0.0.1"), later);
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].group.as_str(), fired[0].count), ("ip=10.0.0.1", 3));
        // Cool-down, then it may fire again.
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), later).is_empty());
        let after = later + Duration::from_secs(61);
        for _ in 0..2 {
            assert!(rules.observe("request.forbidden", &from("10.0.0.1"), after).is_empty());
        }
        assert_eq!(rules.observe("request.forbidden", &from("10.0.0.1"), after).len(), 1);
    }

    #[test]
    fn events_without_the_grouping_field_are_not_counted() {
        let rules = AlertRules::new(vec![rule(GroupBy::User, 1)]);
        assert!(rules.observe("request.forbidden", &from("10.0.0.1"), Instant::now()).is_empty());
        assert!(rules.watches("request.not-found") && !rules.watches("login.failure"));
    }

    #[test]
    fn group_state_stays_bounded() {
        let rules = AlertRules::new(vec![rule(GroupBy::Ip, 1000)]);
        let now = Instant::now();
        for i in 0..(MAX_GROUPS as u32 + 500) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            rules.observe("request.forbidden", &from(&ip), now);
        }
        assert_eq!(rules.rules[0].1.lock().unwrap().len(), MAX_GROUPS);
    }
}

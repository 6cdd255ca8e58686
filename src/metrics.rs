//! Prometheus metrics: one process-wide registry, updated where things
//! happen and rendered in the OpenMetrics text format by `/metrics`.
//!
//! Label values come only from the configuration and fixed lists (route
//! patterns, method names, status codes, event names), never from request
//! text, so a scanner cannot blow up the number of series.
//!
//! ```
//! let metrics = portcullis::metrics::global();
//! metrics.request(Some(&"/items/{id}".into()), "GET", 200, std::time::Duration::from_millis(3));
//! let text = metrics.render(&portcullis::metrics::Gauges::default());
//! assert!(text.contains("portcullis_http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"} "));
//! ```

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::SecurityEvent;
use crate::error::Reason;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    action: String,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    gate: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    store: &'static str,
    decision: &'static str,
}

/// Values read when `/metrics` is scraped.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Requests in progress in this process.
    pub in_flight: i64,
    /// Whether the rate-limit store answers (1) or not (0).
    pub rate_limit_store_up: i64,
    /// Whether the store answered the scrape's ping.
    pub store_up: i64,
    /// Live browser sessions, when known.
    pub active_sessions: Option<i64>,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<RouteLabels, Counter>,
    events: Family<EventLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    logins: Family<OutcomeLabels, Counter>,
    rate_decisions: Family<DecisionLabels, Counter>,
    in_flight: Gauge,
    rate_limit_store_up: Gauge,
    store_up: Gauge,
    active_sessions: Gauge,
    /// Redis calls that failed or timed out.
    pub rate_limit_store_failures: Counter,
    /// Decisions made by the local fallback while Redis was down.
    pub rate_limit_fallbacks: Counter,
    /// Whether the audit writer reaches the store (1) or spools (0).
    pub audit_store_up: Gauge,
    /// Bytes in the audit spool.
    pub audit_spool_bytes: Gauge,
    /// Events written to the audit table.
    pub audit_events_written: Counter,
    /// Events that could not be kept.
    pub audit_events_lost: Counter,
    /// Requests answered since start (for the admin dashboard).
    answered: std::sync::atomic::AtomicU64,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::default();
        let request_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let metrics = Self {
            requests,
            request_seconds,
            upstream_seconds,
            upstream_errors: Family::default(),
            events: Family::default(),
            refusals: Family::default(),
            logins: Family::default(),
            rate_decisions: Family::default(),
            in_flight: Gauge::default(),
            rate_limit_store_up: Gauge::default(),
            store_up: Gauge::default(),
            active_sessions: Gauge::default(),
            rate_limit_store_failures: Counter::default(),
            rate_limit_fallbacks: Counter::default(),
            audit_store_up: Gauge::default(),
            audit_spool_bytes: Gauge::default(),
            audit_events_written: Counter::default(),
            audit_events_lost: Counter::default(),
            answered: std::sync::atomic::AtomicU64::new(0),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("http_requests", "Requests answered, by route, method and status", metrics.requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route",
            metrics.request_seconds.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer, by route",
            metrics.upstream_seconds.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream failures (connect, timeout), by route",
            metrics.upstream_errors.clone(),
        );
        r.register("security_events", "Security events, by action and severity", metrics.events.clone());
        r.register("refusals", "Requests refused, by gate and reason", metrics.refusals.clone());
        r.register("logins", "Password logins, by outcome (success, failure, locked)", metrics.logins.clone());
        r.register(
            "rate_limit_decisions",
            "Rate-limit decisions, by store (memory, redis) and decision (allowed, limited, unchecked, unavailable)",
            metrics.rate_decisions.clone(),
        );
        r.register("requests_in_flight", "Requests in progress", metrics.in_flight.clone());
        r.register("rate_limit_store_up", "Whether the rate-limit store answers", metrics.rate_limit_store_up.clone());
        r.register(
            "rate_limit_store_failures",
            "Rate-limit store calls that failed or timed out",
            metrics.rate_limit_store_failures.clone(),
        );
        r.register(
            "rate_limit_fallbacks",
            "Rate-limit decisions made locally because the store was down",
            metrics.rate_limit_fallbacks.clone(),
        );
        r.register("store_up", "Whether the store answers", metrics.store_up.clone());
        r.register("active_sessions", "Live browser sessions", metrics.active_sessions.clone());
        r.register("audit_store_up", "Whether audit events reach the store", metrics.audit_store_up.clone());
        r.register("audit_spool_bytes", "Bytes of events waiting in the disk spool", metrics.audit_spool_bytes.clone());
        r.register("audit_events_written", "Events written to the audit table", metrics.audit_events_written.clone());
        r.register("audit_events_lost", "Events that could not be kept", metrics.audit_events_lost.clone());
        Self { registry, ..metrics }
    }

    /// Counts one answered request.
    /// The route label is the route's pattern, shared (no copy per request).
    pub fn request(&self, route: Option<&Arc<str>>, method: &str, status: u16, elapsed: Duration) {
        static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));
        self.answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let route = route.unwrap_or(&UNMATCHED);
        self.requests
            .get_or_create(&RequestLabels { route: route.clone(), method: method_label(method), status })
            .inc();
        self.request_seconds.get_or_create(&RouteLabels { route: route.clone() }).observe(elapsed.as_secs_f64());
    }

    /// Requests answered by this process since it started.
    pub fn requests_answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one upstream exchange (`ok`: the upstream answered).
    pub fn upstream(&self, route: &Arc<str>, elapsed: Duration, ok: bool) {
        let labels = RouteLabels { route: route.clone() };
        if ok {
            self.upstream_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
        } else {
            self.upstream_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts one security event named `name`.
    pub fn security_event(&self, event: &SecurityEvent, name: &str) {
        self.events.get_or_create(&EventLabels { action: name.to_owned(), severity: event.severity().as_str() }).inc();
        let outcome = match event {
            SecurityEvent::Refused(reason) => {
                self.refusal(reason);
                return;
            }
            SecurityEvent::LoginSucceeded => "success",
            SecurityEvent::LoginFailed { .. } => "failure",
            SecurityEvent::AccountLocked => "locked",
            _ => return,
        };
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    fn refusal(&self, reason: &Reason) {
        self.refusals.get_or_create(&RefusalLabels { gate: reason.gate(), reason: reason.slug() }).inc();
    }

    /// Counts one rate-limit decision: `allowed`, `limited`, `unchecked`
    /// (the store failed open) or `unavailable` (it failed closed).
    pub fn rate_decision(&self, store: &'static str, decision: &'static str) {
        self.rate_decisions.get_or_create(&DecisionLabels { store, decision }).inc();
    }

    /// The OpenMetrics text, with `gauges` read at scrape time.
    pub fn render(&self, gauges: &Gauges) -> String {
        self.in_flight.set(gauges.in_flight);
        self.rate_limit_store_up.set(gauges.rate_limit_store_up);
        self.store_up.set(gauges.store_up);
        self.active_sessions.set(gauges.active_sessions.unwrap_or(0));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// The method as a label (anything unusual is `OTHER`).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label("BREW"), "OTHER");
        assert_eq!(method_label("DELETE"), "DELETE");
    }

    #[test]
    fn refusals_are_counted_by_gate_and_reason() {
        let metrics = global();
        metrics.security_event(&SecurityEvent::Refused(Reason::RateLimited { retry_after: 1 }), "request.rate-limited");
        let text = metrics.render(&Gauges::default());
        assert!(text.contains("portcullis_refusals_total{gate=\"rate_limit\",reason=\"rate-limited\"}"), "{text}");
        assert!(text.contains("portcullis_security_events_total{action=\"request.rate-limited\",severity=\"medium\"}"));
        assert!(text.contains("# EOF"));
    }
}

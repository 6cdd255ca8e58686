//! Security events: one typed record for each refusal and each suspicious
//! request, written to the `audit` log target as structured fields.
//!
//! Events never carry credentials, cookies, bodies or query strings: only
//! the request id, client address, method, canonical path, route and the
//! reason.
//!
//! ```
//! use portcullis::audit::{SecurityEvent, EventSeverity};
//! use portcullis::error::Reason;
//! let event = SecurityEvent::Refused(Reason::PayloadTooLarge { limit: 10 });
//! assert_eq!(event.name(), "request.payload-too-large");
//! assert_eq!(event.severity(), EventSeverity::Medium);
//! ```

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Reason;

/// How much attention an event deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventSeverity {
    /// Routine (a 404, a path that needed normalizing).
    Low,
    /// Someone sent something they should not have.
    Medium,
    /// Likely an attack, or the gateway could not protect.
    High,
}

impl EventSeverity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// A security event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SecurityEvent {
    /// A gate refused the request.
    Refused(Reason),
    /// The path differed from its canonical form (`//admin`, `/x/../admin`).
    PathNormalized,
    /// A password login succeeded.
    LoginSucceeded,
    /// A password login failed (the reason is for the log only).
    LoginFailed {
        /// Unknown user, wrong password, disabled.
        reason: String,
    },
    /// Too many failed logins: the account is locked.
    AccountLocked,
    /// An already-used refresh token came back; its family was revoked.
    RefreshTokenReused {
        /// The revoked family.
        family: String,
    },
    /// An OAuth client failed to authenticate.
    ClientAuthenticationFailed,
    /// A token was issued to an OAuth client.
    ClientTokenIssued,
    /// A token was revoked (logout, `/oauth/revoke`).
    TokenRevoked,
    /// An account was created through `/auth/register`.
    UserRegistered,
    /// Properties the response schema does not declare were removed from an
    /// upstream answer (a possible leak stopped).
    ResponseFieldsRemoved {
        /// JSON pointers of the removed properties (at most 20).
        pointers: Vec<String>,
    },
    /// An upstream answer broke the route's response schema.
    ResponseInvalid {
        /// The failed pointers and rules.
        rules: String,
    },
    /// The shared rate-limit store stopped answering; the failure policy applies.
    RateLimitStoreUnavailable {
        /// What went wrong (no credentials: the URL is not included).
        error: String,
    },
    /// The shared rate-limit store answers again.
    RateLimitStoreRecovered,
    /// Events of a flooding kind were counted instead of written one by one.
    EventsSuppressed {
        /// The event's name.
        action: &'static str,
        /// How many were not written.
        count: u64,
    },
}

impl SecurityEvent {
    /// Stable dotted name, for filtering (`request.bad-path`).
    pub fn name(&self) -> String {
        match self {
            Self::Refused(reason) => format!("request.{}", reason.slug()),
            Self::PathNormalized => "request.path-normalized".to_owned(),
            Self::LoginSucceeded => "login.success".to_owned(),
            Self::LoginFailed { .. } => "login.failure".to_owned(),
            Self::AccountLocked => "account.locked".to_owned(),
            Self::RefreshTokenReused { .. } => "token.refresh-reused".to_owned(),
            Self::ClientAuthenticationFailed => "client.authentication-failed".to_owned(),
            Self::ClientTokenIssued => "client.token-issued".to_owned(),
            Self::TokenRevoked => "token.revoked".to_owned(),
            Self::UserRegistered => "user.registered".to_owned(),
            Self::RateLimitStoreUnavailable { .. } => "ratelimit.store-unavailable".to_owned(),
            Self::ResponseFieldsRemoved { .. } => "response.fields-removed".to_owned(),
            Self::ResponseInvalid { .. } => "response.invalid".to_owned(),
            Self::RateLimitStoreRecovered => "ratelimit.store-recovered".to_owned(),
            Self::EventsSuppressed { .. } => "audit.events-suppressed".to_owned(),
        }
    }

    /// The severity.
    pub fn severity(&self) -> EventSeverity {
        match self {
            Self::PathNormalized | Self::LoginSucceeded | Self::ClientTokenIssued | Self::TokenRevoked => {
                EventSeverity::Low
            }
            Self::UserRegistered | Self::RateLimitStoreRecovered => EventSeverity::Low,
            Self::EventsSuppressed { .. } => EventSeverity::Medium,
            Self::RateLimitStoreUnavailable { .. } | Self::ResponseFieldsRemoved { .. } => EventSeverity::High,
            Self::ResponseInvalid { .. } => EventSeverity::Medium,
            Self::LoginFailed { .. } | Self::ClientAuthenticationFailed => EventSeverity::Medium,
            Self::RefreshTokenReused { .. } | Self::AccountLocked => EventSeverity::High,
            Self::Refused(reason) => match reason {
                Reason::NotFound | Reason::MethodNotAllowed { .. } | Reason::RequestTimeout => EventSeverity::Low,
                Reason::BadPath { .. } | Reason::AmbiguousRequest { .. } | Reason::UntrustedPeer => EventSeverity::High,
                Reason::BadGateway
                | Reason::GatewayTimeout
                | Reason::Overloaded
                | Reason::RateLimitUnavailable
                | Reason::Internal => EventSeverity::High,
                _ => EventSeverity::Medium,
            },
        }
    }

    /// The exact check that failed, for the log (never sent to clients).
    fn reason_detail(&self) -> String {
        match self {
            Self::Refused(Reason::Unauthenticated { check, .. }) => check.clone(),
            Self::Refused(Reason::Forbidden { rule }) => rule.clone(),
            Self::Refused(Reason::InvalidParameters { errors } | Reason::InvalidBody { errors }) => errors
                .iter()
                .map(|e| format!("{} {}", if e.pointer.is_empty() { "/" } else { &e.pointer }, e.rule))
                .collect::<Vec<_>>()
                .join(", "),
            Self::Refused(reason) => reason.detail(),
            Self::ResponseFieldsRemoved { pointers } => format!("removed undeclared fields: {}", pointers.join(", ")),
            Self::ResponseInvalid { rules } => format!("the upstream's answer breaks its schema: {rules}"),
            Self::PathNormalized => "the path was rewritten to its canonical form".to_owned(),
            Self::LoginFailed { reason } => reason.clone(),
            Self::AccountLocked => "too many failed logins".to_owned(),
            Self::RefreshTokenReused { family } => format!("refresh token family {family} revoked"),
            Self::LoginSucceeded => "password login".to_owned(),
            Self::ClientAuthenticationFailed => "bad client id or secret".to_owned(),
            Self::ClientTokenIssued => "client credentials grant".to_owned(),
            Self::TokenRevoked => "revoked on request".to_owned(),
            Self::UserRegistered => "self-registration".to_owned(),
            Self::RateLimitStoreUnavailable { error } => format!("Redis: {error}"),
            Self::RateLimitStoreRecovered => "Redis answers again".to_owned(),
            Self::EventsSuppressed { action, count } => format!("{count} {action} events not written one by one"),
        }
    }
}

/// Where and from whom a request came, for events.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// HTTP method.
    pub method: &'a str,
    /// Canonical path if known, otherwise the raw path.
    pub path: &'a str,
    /// Matched route pattern, if any.
    pub route: Option<&'a str>,
    /// The user or client concerned, if known: its id (for a failed login,
    /// the username as typed, sanitized and cut to 64 characters).
    pub subject: Option<&'a str>,
}

/// Most events of one flooding kind (rate-limited, overloaded,
/// unauthenticated: a flood of bad or expired tokens) written per second by
/// one process; the rest are counted and reported in one
/// `audit.events-suppressed` event, so that a flood cannot drown the log.
pub const FLOOD_EVENTS_PER_SECOND: u64 = 100;

/// Counts the events of one flooding kind in the current second.
struct FloodSampler {
    action: &'static str,
    /// (unix second, written in it, suppressed since the last report)
    state: Mutex<(u64, u64, u64)>,
}

static RATE_LIMITED: FloodSampler = FloodSampler { action: "request.rate-limited", state: Mutex::new((0, 0, 0)) };
static OVERLOADED: FloodSampler = FloodSampler { action: "request.overloaded", state: Mutex::new((0, 0, 0)) };
static UNAUTHENTICATED: FloodSampler = FloodSampler { action: "request.unauthenticated", state: Mutex::new((0, 0, 0)) };

impl FloodSampler {
    fn for_event(event: &SecurityEvent) -> Option<&'static Self> {
        match event {
            SecurityEvent::Refused(Reason::RateLimited { .. }) => Some(&RATE_LIMITED),
            SecurityEvent::Refused(Reason::Overloaded) => Some(&OVERLOADED),
            SecurityEvent::Refused(Reason::Unauthenticated { .. }) => Some(&UNAUTHENTICATED),
            _ => None,
        }
    }

    /// Whether to write one more event now; reports what a past second suppressed.
    fn admit(&self) -> bool {
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

/// Writes an event that belongs to no request (a store going down).
pub fn emit_system(event: &SecurityEvent) {
    write(event, &EventContext { request_id: "", client_ip: None, method: "", path: "", route: None, subject: None });
}

/// Writes `event` to the `audit` target (flooding kinds are sampled: see
/// [`FLOOD_EVENTS_PER_SECOND`]).
pub fn emit(event: &SecurityEvent, context: &EventContext<'_>) {
    if FloodSampler::for_event(event).is_some_and(|sampler| !sampler.admit()) {
        return;
    }
    write(event, context);
}

fn write(event: &SecurityEvent, context: &EventContext<'_>) {
    let client_ip = context.client_ip.map(|ip| ip.to_string());
    tracing::warn!(
        target: "audit",
        security = true,
        event.kind = "security",
        event.action = %event.name(),
        event.severity = event.severity().as_str(),
        event.reason = %event.reason_detail(),
        http.request.id = context.request_id,
        http.request.method = context.method,
        url.path = context.path,
        http.route = context.route.unwrap_or(""),
        client.ip = client_ip.as_deref().unwrap_or(""),
        user.id = context.subject.unwrap_or(""),
        "security event"
    );
}

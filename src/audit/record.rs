//! One event as it is stored, spooled and served by the admin API: owned
//! text fields, the time in unix milliseconds, and a time-ordered id.
//!
//! ```
//! use portcullis::audit::{EventContext, EventRecord, SecurityEvent};
//! let context = EventContext {
//!     request_id: "r-1", client_ip: None, method: "POST", path: "/auth/login", route: None, subject: Some("alice"),
//! };
//! let record = EventRecord::new(&SecurityEvent::AccountLocked, &context);
//! assert_eq!(record.action, "account.locked");
//! assert_eq!(record.user.as_deref(), Some("alice"));
//! assert_eq!(record.severity, "high");
//! ```

use serde::{Deserialize, Serialize};

use super::{EventContext, SecurityEvent};

/// A security event, ready to be written anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EventRecord {
    /// UUIDv7 (time-ordered, unique across instances).
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The dotted name (`login.failure`).
    pub action: String,
    /// ECS category (`authentication`, `web`, …).
    pub category: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// `success`, `failure` or `unknown`.
    pub outcome: String,
    /// The exact reason, for people (never a credential).
    pub reason: String,
    /// The request's id (empty for events of no request).
    pub request_id: String,
    /// The client address, if known.
    pub client_ip: Option<String>,
    /// HTTP method (empty for events of no request).
    pub method: String,
    /// Canonical path (empty for events of no request).
    pub path: String,
    /// Matched route pattern.
    pub route: Option<String>,
    /// Who: the user or client id (for a failed login, the name as typed).
    #[sqlx(rename = "user_id")]
    pub user: Option<String>,
    /// What an administrator changed.
    pub target: Option<String>,
    /// Which Portcullis process wrote it (`host-pid`).
    pub instance: String,
}

impl EventRecord {
    /// The record of `event` in `context`, stamped now.
    pub fn new(event: &SecurityEvent, context: &EventContext<'_>) -> Self {
        let id = uuid::Uuid::now_v7();
        let at = id
            .get_timestamp()
            .map(|t| t.to_unix())
            .map_or(0, |(secs, nanos)| i64::try_from(secs).unwrap_or(i64::MAX) * 1000 + i64::from(nanos / 1_000_000));
        Self {
            id: id.to_string(),
            at,
            action: event.name(),
            category: event.category().to_owned(),
            severity: event.severity().as_str().to_owned(),
            outcome: event.outcome().to_owned(),
            reason: event.reason_detail(),
            request_id: context.request_id.to_owned(),
            client_ip: context.client_ip.map(|ip| ip.to_string()),
            method: context.method.to_owned(),
            path: context.path.to_owned(),
            route: context.route.map(str::to_owned),
            user: context.subject.map(str::to_owned),
            target: event.target().map(str::to_owned),
            instance: instance().to_owned(),
        }
    }
}

/// This process's name in records: the host name and the process id.
pub fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}-{}", std::process::id())
    })
}

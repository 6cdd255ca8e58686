//! Security events: one typed record for each refusal, login, token,
//! administrative change and incident, sent to every sink.
//!
//! [`emit`] is the one entry point. For each event it:
//! 1. counts it in the metrics (`portcullis_security_events_total`, and
//!    refusals by gate and reason);
//! 2. feeds the alert rules ([`alerts`]);
//! 3. unless flood sampling holds it back ([`sampler`]), writes it to the
//!    `audit` log target with ECS field names and hands it to the store
//!    writer ([`writer`]), which batches it into the `audit_events` table,
//!    or into the disk spool ([`spool`]) while the store is down; and, when
//!    `PORTCULLIS_SENTRY_DSN` is set and it is high severity, to Sentry
//!    ([`sentry`]).
//!
//! Events never carry credentials, cookies, bodies or query strings: only
//! the request id, client address, method, canonical path, route, the user
//! or client concerned and the reason.
//!
//! ```
//! use portcullis::audit::{self, EventContext, SecurityEvent};
//! let context = EventContext {
//!     request_id: "r-1", client_ip: None, method: "POST", path: "/auth/login", route: None, subject: Some("alice"),
//! };
//! audit::emit(&SecurityEvent::LoginSucceeded, &context); // logged; stored once a writer runs
//! ```

pub mod alerts;
mod event;
pub mod record;
mod sampler;
pub mod sentry;
pub mod spool;
mod writer;

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

pub use event::{EventSeverity, SecurityEvent};
pub use record::EventRecord;
pub use sampler::{FLOOD_EVENTS_PER_SECOND, flush_suppressed};
pub use writer::BATCH;

use alerts::{AlertRules, Firing};
use sampler::FloodSampler;
use writer::{Message, Writer};

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
    /// the username as typed, sanitized and cut to 64 characters; for an
    /// administrative change, the administrator).
    pub subject: Option<&'a str>,
}

/// The context of events that belong to no request.
const NO_REQUEST: EventContext<'static> =
    EventContext { request_id: "", client_ip: None, method: "", path: "", route: None, subject: None };

/// Events waiting for the store writer, at most.
pub const QUEUE: usize = 65_536;

/// The store writer's inbox and the alert rules, once [`start`] ran.
struct Sink {
    sender: mpsc::Sender<Message>,
    alerts: AlertRules,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Events dropped because the writer's queue was full (reported by the writer).
static LOST_IN_QUEUE: AtomicU64 = AtomicU64::new(0);

/// How the audit trail is kept.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Events older than this are deleted from the store (`None`: kept).
    pub retention: Option<Duration>,
    /// Largest disk spool, in bytes.
    pub spool_max_bytes: u64,
    /// The alert rules.
    pub alerts: Vec<alerts::AlertRule>,
}

/// The running store writer; [`AuditWriter::flush`] before exit.
#[derive(Debug)]
pub struct AuditWriter {
    task: tokio::task::JoinHandle<()>,
}

/// Starts the store writer on the current runtime (once per process):
/// from now on, events also go to the `audit_events` table. A spool left
/// by an earlier run at `data_dir/spool_file` is replayed first.
pub fn start(
    store: crate::store::Store,
    data_dir: &Path,
    spool_file: &str,
    settings: AuditSettings,
) -> anyhow::Result<AuditWriter> {
    let spool = spool::Spool::open(&data_dir.join(spool_file), settings.spool_max_bytes)?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    SINK.set(Sink { sender, alerts: AlertRules::new(settings.alerts) })
        .map_err(|_| anyhow::anyhow!("the audit writer is already running"))?;
    crate::metrics::global().audit_store_up.set(1);
    let writer = Writer {
        store,
        spool,
        retention: settings.retention,
        client: crate::proxy::upstream_client(Duration::from_secs(30)),
        store_up: true,
    };
    Ok(AuditWriter { task: tokio::spawn(writer.run(receiver)) })
}

impl AuditWriter {
    /// Waits (at most `timeout`) until every event emitted so far is in the
    /// store or the spool.
    pub async fn flush(&self, timeout: Duration) {
        let Some(sink) = SINK.get() else { return };
        let (reply, done) = oneshot::channel();
        if sink.sender.send(Message::Flush(reply)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, done).await;
        }
    }

    /// Whether the task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

/// Writes an event that belongs to no request (a store going down).
pub fn emit_system(event: &SecurityEvent) {
    emit(event, &NO_REQUEST);
}

/// Sends `event` to every sink (flooding kinds are sampled in the log and
/// the store: see [`FLOOD_EVENTS_PER_SECOND`]).
pub fn emit(event: &SecurityEvent, context: &EventContext<'_>) {
    let name = event.name();
    crate::metrics::global().security_event(event, &name);
    if let Some(sink) = SINK.get()
        && sink.alerts.watches(&name)
    {
        for firing in sink.alerts.observe(&name, context, Instant::now()) {
            alert_fired(sink, firing);
        }
    }
    if FloodSampler::for_event(event).is_some_and(|sampler| !sampler.admit()) {
        return;
    }
    write(EventRecord::new(event, context), event.severity());
}

fn alert_fired(sink: &Sink, firing: Firing) {
    let event =
        SecurityEvent::AlertFired { rule: firing.rule.clone(), group: firing.group.clone(), count: firing.count };
    write(EventRecord::new(&event, &NO_REQUEST), event.severity());
    crate::metrics::global().security_event(&event, &event.name());
    if sink.sender.try_send(Message::Alert(firing)).is_err() {
        LOST_IN_QUEUE.fetch_add(1, Ordering::Relaxed);
    }
}

/// The log line (ECS field names) and the store writer's copy.
fn write(record: EventRecord, severity: EventSeverity) {
    tracing::warn!(
        target: "audit",
        security = true,
        event.id = %record.id,
        event.kind = if record.action == "alert.fired" { "alert" } else { "event" },
        event.category = %record.category,
        event.action = %record.action,
        event.outcome = %record.outcome,
        event.severity = severity.number(),
        event.reason = %record.reason,
        http.request.id = %record.request_id,
        http.request.method = %record.method,
        url.path = %record.path,
        http.route = record.route.as_deref().unwrap_or(""),
        client.ip = record.client_ip.as_deref().unwrap_or(""),
        user.id = record.user.as_deref().unwrap_or(""),
        user.target.id = record.target.as_deref().unwrap_or(""),
        labels.severity = severity.as_str(),
        "security event"
    );
    sentry::report(&record, severity);
    if let Some(sink) = SINK.get()
        && sink.sender.try_send(Message::Event(Box::new(record))).is_err()
    {
        LOST_IN_QUEUE.fetch_add(1, Ordering::Relaxed);
    }
}

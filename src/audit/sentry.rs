//! The optional Sentry sink: when `PORTCULLIS_SENTRY_DSN` is set, every
//! security event of `high` severity (attacks, failures to protect or to
//! record, internal errors) becomes a Sentry event, with the same fields as
//! the stored record and nothing more (no headers, cookies, bodies or query
//! strings: the record holds none).
//!
//! Envelopes go through Portcullis's own HTTP client (rustls), from a
//! bounded queue: a slow or unreachable Sentry never slows requests; what
//! does not fit is dropped and logged.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, header};
use sentry::protocol::{Envelope, Event, Level};
use sentry::types::Dsn;
use sentry::{ClientOptions, Transport, TransportFactory};
use tokio::sync::mpsc;

use super::{EventRecord, EventSeverity};
use crate::proxy::UpstreamClient;

/// Envelopes waiting to be sent, at most.
const QUEUE: usize = 1000;

/// Keeps the Sentry client alive; dropping it flushes (at most 2 s).
pub struct SentryGuard(#[allow(dead_code, reason = "held for its Drop")] sentry::ClientInitGuard);

impl std::fmt::Debug for SentryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SentryGuard")
    }
}

/// Starts the Sentry client for `dsn` on the current runtime.
pub fn start(dsn: &str, client: UpstreamClient) -> anyhow::Result<SentryGuard> {
    let dsn: Dsn = dsn.parse().map_err(|_| anyhow::anyhow!("PORTCULLIS_SENTRY_DSN is not a Sentry DSN"))?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(deliver(receiver, client, dsn.clone()));
    let factory = Arc::new(QueueTransport { sender });
    let mut options = ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(concat!("portcullis@", env!("CARGO_PKG_VERSION")).into());
    options.send_default_pii = false;
    options.shutdown_timeout = Duration::from_secs(2);
    options.transport = Some(factory);
    Ok(SentryGuard(sentry::init(options)))
}

/// Sends `record` to Sentry when it is high severity and a client runs.
pub(super) fn report(record: &EventRecord, severity: EventSeverity) {
    if severity < EventSeverity::High || sentry::Hub::current().client().is_none() {
        return;
    }
    let mut event = Event {
        level: if record.outcome == "failure" { Level::Error } else { Level::Warning },
        message: Some(format!("{}: {}", record.action, record.reason)),
        logger: Some("portcullis.audit".into()),
        ..Event::default()
    };
    event.tags.insert("event.action".into(), record.action.clone());
    event.tags.insert("event.category".into(), record.category.clone());
    event.tags.insert("event.outcome".into(), record.outcome.clone());
    event.tags.insert("instance".into(), record.instance.clone());
    if let Some(route) = &record.route {
        event.tags.insert("http.route".into(), route.clone());
    }
    for (key, value) in [
        ("event.id", Some(&record.id)),
        ("http.request.id", Some(&record.request_id)),
        ("http.request.method", Some(&record.method)),
        ("url.path", Some(&record.path)),
        ("client.ip", record.client_ip.as_ref()),
        ("user.id", record.user.as_ref()),
        ("user.target.id", record.target.as_ref()),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            event.extra.insert(key.into(), value.clone().into());
        }
    }
    event.fingerprint = vec![record.action.clone().into(), record.route.clone().unwrap_or_default().into()].into();
    sentry::capture_event(event);
}

/// Hands envelopes to the delivery task.
struct QueueTransport {
    sender: mpsc::Sender<Envelope>,
}

impl TransportFactory for QueueTransport {
    fn create_transport(&self, _options: &ClientOptions) -> Arc<dyn Transport> {
        Arc::new(QueueTransport { sender: self.sender.clone() })
    }
}

impl Transport for QueueTransport {
    fn send_envelope(&self, envelope: Envelope) {
        if self.sender.try_send(envelope).is_err() {
            tracing::warn!("Sentry queue full or closed: an event was not sent");
        }
    }
}

/// Posts envelopes to Sentry's envelope endpoint, one at a time.
async fn deliver(mut receiver: mpsc::Receiver<Envelope>, client: UpstreamClient, dsn: Dsn) {
    let url = dsn.envelope_api_url().to_string();
    let auth = dsn.to_auth(Some(concat!("portcullis/", env!("CARGO_PKG_VERSION")))).to_string();
    while let Some(envelope) = receiver.recv().await {
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            continue;
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(header::CONTENT_TYPE, "application/x-sentry-envelope")
            .header("x-sentry-auth", &auth)
            .body(crate::body::full(body));
        let Ok(request) = request else { continue };
        match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {}
            Ok(Ok(response)) => tracing::warn!(status = response.status().as_u16(), "Sentry refused an event"),
            _ => tracing::warn!("Sentry unreachable: an event was not sent"),
        }
    }
}

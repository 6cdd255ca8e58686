//! The background task that writes events to the store: batched (up to
//! [`BATCH`] per transaction), off the request path, through the disk spool
//! when the store does not answer, and replayed in order when it does.
//! It also posts alert webhooks and deletes events past their retention.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Method, Request, header};
use tokio::sync::{mpsc, oneshot};

use super::alerts::{Firing, webhook_body};
use super::spool::Spool;
use super::{EventRecord, LOST_IN_QUEUE, SecurityEvent, emit_system};
use crate::proxy::UpstreamClient;
use crate::store::Store;

/// Most events per store transaction.
pub const BATCH: usize = 500;

/// Longest wait for one store write before the batch goes to the spool.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the spool is retried, lost events reported, gauges updated.
const TICK: Duration = Duration::from_secs(1);

/// How often events past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// What the writer task receives.
#[derive(Debug)]
pub(super) enum Message {
    /// An event to store.
    Event(Box<EventRecord>),
    /// A rule fired: post its webhook.
    Alert(Firing),
    /// Write everything received so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The writer's state.
pub(super) struct Writer {
    pub(super) store: Store,
    pub(super) spool: Spool,
    pub(super) retention: Option<Duration>,
    pub(super) client: UpstreamClient,
    pub(super) store_up: bool,
}

impl Writer {
    /// Runs until every sender is gone.
    pub(super) async fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<Instant> = None;
        loop {
            tokio::select! {
                message = receiver.recv() => {
                    let Some(message) = message else { break };
                    let mut batch = Vec::new();
                    let mut flushes = Vec::new();
                    self.take(message, &mut batch, &mut flushes);
                    while batch.len() < BATCH {
                        match receiver.try_recv() {
                            Ok(message) => self.take(message, &mut batch, &mut flushes),
                            Err(_) => break,
                        }
                    }
                    if !batch.is_empty() {
                        self.write(batch).await;
                    }
                    if !flushes.is_empty() {
                        // A flush also drains whatever arrived meanwhile.
                        let mut rest = Vec::new();
                        while let Ok(message) = receiver.try_recv() {
                            self.take(message, &mut rest, &mut flushes);
                        }
                        if !rest.is_empty() {
                            self.write(rest).await;
                        }
                        self.replay().await;
                        for flush in flushes {
                            let _ = flush.send(());
                        }
                    }
                }
                _ = ticker.tick() => {
                    self.report_lost(LOST_IN_QUEUE.swap(0, Ordering::Relaxed), "queue full");
                    if !self.spool.is_empty() {
                        self.replay().await;
                    }
                    crate::metrics::global().audit_spool_bytes.set(i64::try_from(self.spool.bytes()).unwrap_or(i64::MAX));
                    if self.retention.is_some() && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                        last_purge = Some(Instant::now());
                        self.purge().await;
                    }
                }
            }
        }
    }

    fn take(&self, message: Message, batch: &mut Vec<EventRecord>, flushes: &mut Vec<oneshot::Sender<()>>) {
        match message {
            Message::Event(record) => batch.push(*record),
            Message::Alert(firing) => {
                if let Some(uri) = firing.webhook.clone() {
                    tokio::spawn(post_webhook(self.client.clone(), uri, firing));
                }
            }
            Message::Flush(reply) => flushes.push(reply),
        }
    }

    /// Writes a batch to the store, or to the spool (keeping order: once
    /// something is spooled, new events queue behind it).
    async fn write(&mut self, batch: Vec<EventRecord>) {
        if self.spool.is_empty() {
            match tokio::time::timeout(WRITE_TIMEOUT, crate::store::audit::insert(&self.store, &batch)).await {
                Ok(Ok(())) => {
                    crate::metrics::global().audit_events_written.inc_by(batch.len() as u64);
                    return;
                }
                Ok(Err(error)) => self.store_down(&error.to_string()),
                Err(_) => self.store_down("the store did not answer within 5 s"),
            }
        }
        self.spool_batch(&batch);
    }

    fn spool_batch(&mut self, batch: &[EventRecord]) {
        match self.spool.append(batch) {
            Ok(lost) => self.report_lost(lost, "spool full"),
            Err(error) => {
                tracing::error!(%error, "cannot write the audit spool");
                self.report_lost(batch.len() as u64, "spool unwritable");
            }
        }
    }

    fn store_down(&mut self, error: &str) {
        if self.store_up {
            self.store_up = false;
            crate::metrics::global().audit_store_up.set(0);
            emit_system(&SecurityEvent::AuditStoreUnavailable { error: error.to_owned() });
        }
    }

    /// Writes the spool back to the store, oldest first; keeps it if any
    /// part fails (ids make a second replay harmless).
    async fn replay(&mut self) {
        if self.spool.is_empty() {
            return;
        }
        let spooled = match self.spool.read() {
            Ok(spooled) => spooled,
            Err(error) => {
                tracing::error!(%error, "cannot read the audit spool");
                return;
            }
        };
        for chunk in spooled.records.chunks(BATCH) {
            match tokio::time::timeout(WRITE_TIMEOUT, crate::store::audit::insert(&self.store, chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return self.store_down(&error.to_string()),
                Err(_) => return self.store_down("the store did not answer within 5 s"),
            }
        }
        if let Err(error) = self.spool.clear() {
            tracing::error!(%error, "cannot empty the audit spool");
            return;
        }
        let replayed = spooled.records.len() as u64;
        crate::metrics::global().audit_events_written.inc_by(replayed);
        self.report_lost(spooled.damaged, "spool damaged");
        if !self.store_up {
            self.store_up = true;
            crate::metrics::global().audit_store_up.set(1);
        }
        emit_system(&SecurityEvent::AuditStoreRecovered { replayed });
    }

    fn report_lost(&self, count: u64, cause: &'static str) {
        if count > 0 {
            crate::metrics::global().audit_events_lost.inc_by(count);
            tracing::error!(count, cause, "security events lost");
            emit_system(&SecurityEvent::EventsLost { count, cause });
        }
    }

    async fn purge(&self) {
        let Some(retention) = self.retention else { return };
        let cutoff = crate::store::now().saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX)) * 1000;
        match crate::store::audit::purge(&self.store, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted audit events past their retention"),
            Err(error) => tracing::warn!(%error, "cannot delete old audit events"),
        }
    }
}

/// Posts one alert (three tries, 5 s each). The URL is never logged: chat
/// webhooks carry their secret in it.
async fn post_webhook(client: UpstreamClient, uri: http::Uri, firing: Firing) {
    let body = webhook_body(&firing).to_string();
    for attempt in 0..3u32 {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .body(crate::body::full(body.clone()));
        let Ok(request) = request else { return };
        match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => return,
            Ok(Ok(response)) => {
                tracing::warn!(alert = %firing.rule, status = response.status().as_u16(), "alert webhook refused")
            }
            Ok(Err(_)) | Err(_) => tracing::warn!(alert = %firing.rule, attempt, "alert webhook unreachable"),
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
}

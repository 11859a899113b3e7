//! Batched audit writing for high-rate events (token issued, client
//! authentication failed): one transaction per batch instead of one per
//! event, off the request path. Changes of state never use this; their audit
//! record commits with the change.

use crate::domain::audit::AuditEvent;
use crate::store::DynStore;
use tokio::sync::{mpsc, oneshot};

const BATCH_MAX: usize = 1000;
const QUEUE_MAX: usize = 100_000;

enum Message {
    Event(AuditEvent),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
}

impl AuditSink {
    pub fn spawn(store: DynStore) -> AuditSink {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(store, rx));
        AuditSink { tx }
    }

    /// Queues `event`; if the queue is full the event is dropped and counted,
    /// rather than slowing every request down.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(Message::Event(event)).is_err() {
            metrics::counter!("keyward_audit_events_dropped_total").increment(1);
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: DynStore, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => batch.push(e),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH_MAX {
                next = rx.try_recv().ok();
            }
        }
        let events = std::mem::take(&mut batch);
        let count = events.len();
        if let Err(e) = store.append_audit_batch(events).await {
            tracing::error!(error = %e, count, "audit events could not be written");
            metrics::counter!("keyward_audit_events_dropped_total").increment(count as u64);
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

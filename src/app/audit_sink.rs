//! Batched audit writing for high-rate events (token issued, client
//! authentication failed): one transaction per batch instead of one per
//! event, off the request path. Changes of state never use this; their audit
//! record commits with the change.

use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::{Actor, excerpt};
use crate::store::DynStore;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

const BATCH_MAX: usize = 1000;
/// How long the writer gathers events after the first of a batch: under
/// load one transaction (one commit, one hand-off to SQLite's thread) per
/// burst instead of one per few events.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
const QUEUE_MAX: usize = 100_000;
/// A queued event's target is cut to this many characters: targets can
/// come from a request's path (up to 64 KiB), and the queue is bounded by
/// events, not bytes.
const TARGET_MAX_CHARS: usize = 200;

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
    pub fn record(&self, mut event: AuditEvent) {
        if let Some(target) = &mut event.target {
            let kept = excerpt(target, TARGET_MAX_CHARS).len();
            target.truncate(kept);
        }
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

/// How long repeated failures are gathered into one record.
const COALESCE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);
/// Distinct failures kept apart per window; the rest become one record.
const COALESCE_KEYS_MAX: usize = 100;

/// Repeated failures (a guessing script, a flood of bad tokens) become one
/// audit record per window with a count, so that unauthenticated callers
/// cannot grow the audit log at their request rate.
#[derive(Default)]
struct Coalescer {
    pending: HashMap<String, (AuditEvent, u64)>,
    /// Per action: how many more, and a few of their targets and addresses
    /// (so that a flood of junk cannot hide whom an attack was aimed at).
    overflow: HashMap<&'static str, Overflow>,
}

#[derive(Default)]
struct Overflow {
    count: u64,
    targets: std::collections::BTreeSet<String>,
    addresses: std::collections::BTreeSet<String>,
}

/// How many distinct targets and addresses an overflow record keeps.
const OVERFLOW_SAMPLE: usize = 20;

impl Coalescer {
    fn add(&mut self, event: AuditEvent) {
        let key = format!(
            "{}|{:?}|{:?}|{}|{}",
            event.action, event.target, event.client_addr, event.actor, event.detail
        );
        if let Some((_, n)) = self.pending.get_mut(&key) {
            *n += 1;
        } else if self.pending.len() < COALESCE_KEYS_MAX {
            self.pending.insert(key, (event, 1));
        } else {
            let overflow = self.overflow.entry(event.action).or_default();
            overflow.count += 1;
            if let Some(target) = event.target.filter(|_| overflow.targets.len() < OVERFLOW_SAMPLE) {
                overflow.targets.insert(target);
            }
            if let Some(addr) = event.client_addr.filter(|_| overflow.addresses.len() < OVERFLOW_SAMPLE) {
                overflow.addresses.insert(addr);
            }
        }
    }

    fn drain(&mut self) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = self
            .pending
            .drain()
            .map(|(_, (mut event, n))| {
                if n > 1 {
                    if let Some(detail) = event.detail.as_object_mut() {
                        detail.insert("repeated".into(), n.into());
                    }
                }
                event
            })
            .collect();
        events.extend(self.overflow.drain().map(|(action, o)| AuditEvent {
            actor: Actor::System,
            action,
            target: None,
            outcome: Outcome::Failure,
            client_addr: None,
            detail: serde_json::json!({
                "repeated": o.count, "coalesced": "more distinct failures than are kept apart",
                "some_targets": o.targets, "some_addresses": o.addresses,
            }),
        }));
        events
    }
}

async fn run(store: DynStore, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    let mut waiting = Vec::new();
    let mut failures = Coalescer::default();
    let mut window = tokio::time::interval(COALESCE_WINDOW);
    loop {
        let first = tokio::select! {
            message = rx.recv() => match message {
                Some(m) => m,
                None => break,
            },
            _ = window.tick() => {
                write(&store, failures.drain()).await;
                continue;
            }
        };
        let mut next = Some(first);
        let mut lingered = false;
        loop {
            while let Some(message) = next.take() {
                match message {
                    Message::Event(e) if e.outcome == Outcome::Failure => failures.add(e),
                    Message::Event(e) => batch.push(e),
                    Message::Flush(done) => waiting.push(done),
                }
                if batch.len() < BATCH_MAX {
                    next = rx.try_recv().ok();
                }
            }
            if lingered || !waiting.is_empty() || batch.is_empty() || batch.len() >= BATCH_MAX {
                break;
            }
            tokio::time::sleep(LINGER).await;
            lingered = true;
            next = rx.try_recv().ok();
        }
        let mut events = std::mem::take(&mut batch);
        if !waiting.is_empty() {
            events.extend(failures.drain());
        }
        write(&store, events).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    write(&store, failures.drain()).await;
}

async fn write(store: &DynStore, events: Vec<AuditEvent>) {
    if events.is_empty() {
        return;
    }
    let count = events.len();
    if let Err(e) = store.append_audit_batch(events).await {
        tracing::error!(error = %e, count, "audit events could not be written");
        metrics::counter!("keyward_audit_events_dropped_total").increment(count as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(target: &str) -> AuditEvent {
        AuditEvent {
            actor: Actor::System,
            action: "login.failed",
            target: Some(target.into()),
            outcome: Outcome::Failure,
            client_addr: Some("192.0.2.1".into()),
            detail: serde_json::json!({"reason": "bad credentials"}),
        }
    }

    #[test]
    fn repeated_failures_become_one_record_with_a_count() {
        let mut c = Coalescer::default();
        for _ in 0..500 {
            c.add(failure("username:alice"));
        }
        c.add(failure("username:bob"));
        let mut events = c.drain();
        events.sort_by_key(|e| e.target.clone());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].detail["repeated"], 500);
        assert!(events[1].detail.get("repeated").is_none());
        assert!(c.drain().is_empty());
    }

    #[test]
    fn distinct_failures_beyond_the_cap_are_counted_together() {
        let mut c = Coalescer::default();
        for i in 0..10_000 {
            c.add(failure(&format!("username:u{i}")));
        }
        let events = c.drain();
        assert_eq!(events.len(), COALESCE_KEYS_MAX + 1);
        let overflow = events.iter().find(|e| e.target.is_none()).unwrap();
        assert_eq!(overflow.detail["repeated"], 10_000 - COALESCE_KEYS_MAX as u64);
        assert_eq!(overflow.detail["some_targets"].as_array().unwrap().len(), OVERFLOW_SAMPLE);
        assert_eq!(overflow.detail["some_addresses"], serde_json::json!(["192.0.2.1"]));
    }
}

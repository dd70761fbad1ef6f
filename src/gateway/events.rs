//! Payment events: what each change of a payment record writes with it (the outbox, see the
//! `store` module docs), and how this process hands them to its watchers.
//!
//! A change a caller can see (state, provider answer, fulfilment, a follow-up starting or
//! ending: anything in the `Payment` message but its update time and check count) is written
//! with [`Store::write_with_event`](crate::store::Store::write_with_event): the record and a
//! `billpay.v1.PaymentEvent` holding the payment after the change, in one atomic step, so no
//! reader ever sees one without the other. Changes nobody sees (the in-flight mark, a check
//! counter) are plain swaps.
//!
//! Each process runs one event reader ([`Gateway::run_event_reader`]): it follows the store's
//! events from the newest at start (`XREAD BLOCK` on one Redis connection of its own, a poll
//! of PostgreSQL, a notification in memory) and hands each one to the WatchPayment streams of
//! its payment through bounded channels ([`EventHub`]): a change made by any replica, or by
//! any replica's reconciler, reaches every watcher. A watcher whose channel is full is ended
//! (WATCHER_TOO_SLOW) rather than let it hold up the reader or grow. WatchPaymentEvents streams
//! read the store themselves from their resume point, woken when the reader has seen
//! something new. The reader also trims events older than `payments.events_retention_ms`,
//! every minute.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use prost::Message;
use tokio::sync::{mpsc, watch};

use super::Gateway;
use crate::api::convert;
use crate::domain::{PaymentRecord, PaymentState};
use crate::pb;
use crate::store::{EventRead, StoredEvent};

/// What made a payment change (`billpay.v1.PaymentEventCause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Created,
    ProviderAnswer,
    StatusQuery,
    FollowUp,
    Reconciliation,
    Operator,
    Restored,
}

impl Cause {
    fn proto(self) -> pb::PaymentEventCause {
        match self {
            Self::Created => pb::PaymentEventCause::Created,
            Self::ProviderAnswer => pb::PaymentEventCause::ProviderAnswer,
            Self::StatusQuery => pb::PaymentEventCause::StatusQuery,
            Self::FollowUp => pb::PaymentEventCause::FollowUp,
            Self::Reconciliation => pb::PaymentEventCause::Reconciliation,
            Self::Operator => pb::PaymentEventCause::Operator,
            Self::Restored => pb::PaymentEventCause::Restored,
        }
    }
}

/// Whether the change from `old` to `new` is one a caller can see, so one that writes an
/// event: anything in the `Payment` message but its update time and check count, or a
/// follow-up starting or ending.
pub(crate) fn worth_an_event(old: &PaymentRecord, new: &PaymentRecord) -> bool {
    if old.follow_up != new.follow_up {
        return true;
    }
    let seen = |r: &PaymentRecord| {
        let mut p = convert::payment(r.clone());
        p.update_time = None;
        p.status_checks = 0;
        p
    };
    seen(old) != seen(new)
}

/// The `billpay.v1.PaymentEvent` of `record` as it is after a change (its `event_id` empty:
/// the store gives it), protobuf binary.
pub(crate) fn encode(
    record: &PaymentRecord,
    previous: Option<PaymentState>,
    cause: Cause,
    at_ms: i64,
) -> Vec<u8> {
    pb::PaymentEvent {
        event_id: String::new(),
        payment: Some(convert::payment(record.clone())),
        previous_state: previous.map_or(pb::PaymentState::Unspecified, convert::payment_state)
            as i32,
        time: Some(convert::timestamp(at_ms)),
        cause: cause.proto() as i32,
        payment_revision: record.revision,
    }
    .encode_to_vec()
}

/// Why the hub ended a watcher's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Still open (or closed by its own side).
    No = 0,
    /// Its buffer filled: it read more slowly than its payment changed.
    TooSlow = 1,
    /// The reader lost its place in the events (they were trimmed before it read them): the
    /// watcher may have missed a change.
    Lost = 2,
}

struct Watcher {
    id: u64,
    events: mpsc::Sender<Arc<StoredEvent>>,
    ended: Arc<AtomicU8>,
}

/// The WatchPayment streams of this process, by payment id, and the newest event id the
/// reader has seen (WatchPaymentEvents streams wait on it).
pub struct EventHub {
    watchers: Mutex<HashMap<String, Vec<Watcher>>>,
    next_id: AtomicU64,
    /// Events one watcher may have waiting.
    buffer: usize,
    latest: watch::Sender<Option<String>>,
}

/// One WatchPayment stream's place in the hub; leaving is dropping it.
pub struct Subscription {
    hub: Arc<EventHub>,
    payment_id: String,
    id: u64,
    /// The payment's events, in order.
    pub events: mpsc::Receiver<Arc<StoredEvent>>,
    ended: Arc<AtomicU8>,
}

impl Subscription {
    /// Why the channel closed, once `events` answers `None`.
    pub fn ended(&self) -> Ended {
        match self.ended.load(Ordering::Acquire) {
            1 => Ended::TooSlow,
            2 => Ended::Lost,
            _ => Ended::No,
        }
    }

    /// The buffer size it was given.
    pub fn buffer(&self) -> usize {
        self.hub.buffer
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave(&self.payment_id, self.id);
    }
}

impl EventHub {
    pub fn new(buffer: usize) -> Self {
        Self {
            watchers: Mutex::default(),
            next_id: AtomicU64::new(1),
            buffer: buffer.max(1),
            latest: watch::channel(None).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Watcher>>> {
        // Every critical section is one insert, retain or remove: nothing half-done to see.
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts handing `payment_id`'s events to a new watcher.
    pub fn subscribe(self: &Arc<Self>, payment_id: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ended = Arc::new(AtomicU8::new(Ended::No as u8));
        self.lock()
            .entry(payment_id.to_owned())
            .or_default()
            .push(Watcher {
                id,
                events: tx,
                ended: ended.clone(),
            });
        Subscription {
            hub: self.clone(),
            payment_id: payment_id.to_owned(),
            id,
            events: rx,
            ended,
        }
    }

    fn leave(&self, payment_id: &str, id: u64) {
        let mut watchers = self.lock();
        if let Some(list) = watchers.get_mut(payment_id) {
            list.retain(|w| w.id != id);
            if list.is_empty() {
                watchers.remove(payment_id);
            }
        }
    }

    /// How many WatchPayment streams are open.
    pub fn watcher_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Hands `event` to its payment's watchers without waiting: a full channel ends its
    /// watcher.
    fn dispatch(&self, event: &Arc<StoredEvent>) {
        let mut watchers = self.lock();
        let Some(list) = watchers.get_mut(&event.payment_id) else {
            return;
        };
        list.retain(|w| match w.events.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                w.ended.store(Ended::TooSlow as u8, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if list.is_empty() {
            watchers.remove(&event.payment_id);
        }
    }

    /// Ends every watcher: the reader may have missed events they wait for.
    fn end_all(&self) {
        for list in self.lock().drain().map(|(_, list)| list) {
            for w in list {
                w.ended.store(Ended::Lost as u8, Ordering::Release);
            }
        }
    }

    /// Wakes when the reader saw a newer event.
    pub fn latest(&self) -> watch::Receiver<Option<String>> {
        self.latest.subscribe()
    }
}

/// How often the reader trims events past retention.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Events the reader takes per read.
const READ_BATCH: usize = 512;
/// The longest one wait for new events lasts before the reader reads again anyway.
const WAIT_FOR: Duration = Duration::from_secs(2);
/// Pause after a failed read.
const READ_RETRY: Duration = Duration::from_millis(500);

impl Gateway {
    /// `Ok` when the store keeps payment events; else the error WatchPayment and
    /// WatchPaymentEvents answer.
    pub fn events_kept(&self) -> Result<(), crate::error::GatewayError> {
        self.store
            .keeps_events()
            .map_err(|why| crate::error::GatewayError::EventsNotKept {
                store: "redis-cluster".into(),
                why,
            })
    }

    /// The hub of this process's watchers.
    pub fn event_hub(&self) -> &Arc<EventHub> {
        &self.event_hub
    }

    /// Follows the store's events from the newest at start, handing each to this process's
    /// watchers, and trims events past retention every minute. Runs until aborted.
    pub async fn run_event_reader(self: Arc<Self>) {
        if let Err(why) = self.store.keeps_events() {
            tracing::warn!(
                why,
                "payment events are off: WatchPayment and WatchPaymentEvents answer FAILED_PRECONDITION"
            );
            return;
        }
        let mut after = loop {
            match self.store.last_event_id().await {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!(error = %e, "event reader cannot start yet");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        };
        self.event_hub.latest.send_replace(after.clone());
        let mut next_trim = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_trim {
                next_trim = tokio::time::Instant::now() + TRIM_EVERY;
                let before = self
                    .clock
                    .now_ms()
                    .saturating_sub(self.payments.events_retention_ms as i64);
                if let Err(e) = self.store.trim_events(before).await {
                    tracing::warn!(error = %e, "payment events not trimmed");
                }
            }
            match self.store.read_events(after.as_deref(), READ_BATCH).await {
                Ok(EventRead::Events(page)) if page.is_empty() => {
                    let wait = self.store.wait_for_events(after.as_deref(), WAIT_FOR);
                    if let Err(e) = wait.await {
                        tracing::warn!(error = %e, "waiting for payment events failed");
                        tokio::time::sleep(READ_RETRY).await;
                    }
                }
                Ok(EventRead::Events(page)) => {
                    for event in page {
                        after = Some(event.id.clone());
                        self.event_hub.dispatch(&Arc::new(event));
                    }
                    self.event_hub.latest.send_replace(after.clone());
                }
                Ok(EventRead::Expired | EventRead::Malformed) => {
                    tracing::error!(
                        after = after.as_deref().unwrap_or(""),
                        "event reader fell behind retention (or the store lost its events): \
                         every watcher ended"
                    );
                    self.event_hub.end_all();
                    after = self.store.last_event_id().await.unwrap_or(None);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading payment events failed");
                    tokio::time::sleep(READ_RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payment_id: &str, id: u64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            id: id.to_string(),
            payment_id: payment_id.into(),
            caller: String::new(),
            body: Vec::new(),
        })
    }

    /// A watcher that does not read is ended once its buffer is full: the reader never waits
    /// for it, and what it holds never grows past the buffer.
    #[tokio::test]
    async fn a_watcher_that_falls_behind_its_buffer_is_ended_as_too_slow() {
        let hub = Arc::new(EventHub::new(2));
        let mut slow = hub.subscribe("p");
        let mut other = hub.subscribe("q");
        for id in 1..=3 {
            hub.dispatch(&event("p", id));
        }
        hub.dispatch(&event("q", 4));
        assert_eq!(slow.events.recv().await.unwrap().id, "1");
        assert_eq!(slow.events.recv().await.unwrap().id, "2");
        assert!(slow.events.recv().await.is_none(), "the third did not fit");
        assert_eq!(slow.ended(), Ended::TooSlow);
        assert_eq!(other.events.recv().await.unwrap().id, "4");
        assert_eq!(other.ended(), Ended::No);
        assert_eq!(hub.watcher_count(), 1, "the slow one left");
        drop(other);
        assert_eq!(
            hub.watcher_count(),
            0,
            "dropping a stream leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn a_reader_that_lost_its_place_ends_every_watcher() {
        let hub = Arc::new(EventHub::new(2));
        let mut watcher = hub.subscribe("p");
        hub.end_all();
        assert!(watcher.events.recv().await.is_none());
        assert_eq!(watcher.ended(), Ended::Lost);
    }
}

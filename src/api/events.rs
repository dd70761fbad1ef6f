//! WatchPayment and WatchPaymentEvents: the payment events outbox (see `gateway::events`) as
//! gRPC server streams. Neither holds a task or a store connection of its own: each stream is
//! polled by its connection, WatchPayment fed by the process's event reader through a bounded
//! channel, WatchPaymentEvents reading the store from its resume point on the shared
//! connection when the reader says there is something new.

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures_util::stream;
use prost::Message;
use tonic::{Response, Status};

use super::payment::check_payment_id;
use super::validate::Violations;
use crate::domain::Resource;
use crate::error::GatewayError;
use crate::gateway::{
    events::{Ended, Subscription},
    Gateway,
};
use crate::pb;
use crate::store::{EventRead, StoreError, StoredEvent};

/// A server stream of `T`.
pub type EventStream<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

/// Events a WatchPaymentEvents stream reads from the store at a time.
const EVENTS_PAGE: usize = 256;

/// The longest a WatchPaymentEvents stream waits for the reader's word before it reads the
/// store again anyway.
const EVENTS_RECHECK: Duration = Duration::from_secs(5);

fn status(e: impl Into<GatewayError>) -> Status {
    super::status::to_status(e.into())
}

fn is_final(state: i32) -> bool {
    [
        pb::PaymentState::Succeeded,
        pb::PaymentState::Failed,
        pb::PaymentState::Reversed,
    ]
    .iter()
    .any(|s| *s as i32 == state)
}

/// The PaymentEvent kept in `event`, with its id.
fn decode(event: &StoredEvent) -> Result<pb::PaymentEvent, Status> {
    let mut decoded = pb::PaymentEvent::decode(event.body.as_slice()).map_err(|e| {
        status(StoreError(format!(
            "payment event {} unreadable: {e}",
            event.id
        )))
    })?;
    decoded.event_id = event.id.clone();
    Ok(decoded)
}

/// Where a WatchPayment stream is.
enum Watching {
    /// The payment as read after subscribing, not sent yet.
    First(Box<pb::Payment>, u64, Subscription),
    /// Sent up to this revision (this payment, last); waiting for the next change.
    Live(Subscription, u64, Box<pb::Payment>),
    Done,
}

/// Whether `a` and `b` differ in more than when they were written and how often the
/// provider was asked: a follow-up starting is an event, but nothing a watcher sees.
fn differs(a: &pb::Payment, b: &pb::Payment) -> bool {
    let seen = |p: &pb::Payment| pb::Payment {
        update_time: None,
        status_checks: 0,
        ..p.clone()
    };
    seen(a) != seen(b)
}

pub(super) async fn watch_payment(
    gateway: &Arc<Gateway>,
    request: pb::WatchPaymentRequest,
) -> Result<Response<EventStream<pb::WatchPaymentResponse>>, Status> {
    let mut v = Violations::default();
    check_payment_id(&mut v, &request.payment_id);
    v.finish()?;
    gateway.events_kept().map_err(status)?;
    // Subscribe first, then read: a change landing between the two comes through the
    // subscription (and is skipped by revision if the read already shows it).
    let subscription = gateway.event_hub().subscribe(&request.payment_id);
    let record = gateway
        .load_payment(&request.payment_id)
        .await
        .map_err(status)?
        .ok_or_else(|| {
            status(GatewayError::not_found(
                Resource::Payment,
                &request.payment_id,
            ))
        })?;
    let revision = record.revision;
    let first = Watching::First(
        Box::new(super::convert::payment(record)),
        revision,
        subscription,
    );
    let watched = stream::unfold(first, |watching| async move {
        match watching {
            Watching::First(payment, revision, subscription) => {
                let next = match is_final(payment.state) {
                    true => Watching::Done,
                    false => Watching::Live(subscription, revision, payment.clone()),
                };
                let sent = pb::WatchPaymentResponse {
                    payment: Some(*payment),
                };
                Some((Ok(sent), next))
            }
            Watching::Live(mut subscription, mut revision, last) => loop {
                let Some(event) = subscription.events.recv().await else {
                    let error = match subscription.ended() {
                        Ended::TooSlow => GatewayError::WatcherTooSlow {
                            buffered: subscription.buffer(),
                        },
                        Ended::Lost | Ended::No => GatewayError::Store(StoreError(
                            "this gateway lost its place in the payment events: watch again".into(),
                        )),
                    };
                    return Some((Err(status(error)), Watching::Done));
                };
                let event = match decode(&event) {
                    Ok(event) => event,
                    Err(e) => return Some((Err(e), Watching::Done)),
                };
                // Already shown by the first read, or a repeat.
                if event.payment_revision <= revision {
                    continue;
                }
                revision = event.payment_revision;
                let Some(payment) = event.payment else {
                    continue;
                };
                if !differs(&payment, &last) {
                    continue;
                }
                let next = match is_final(payment.state) {
                    true => Watching::Done,
                    false => Watching::Live(subscription, revision, Box::new(payment.clone())),
                };
                let sent = pb::WatchPaymentResponse {
                    payment: Some(payment),
                };
                return Some((Ok(sent), next));
            },
            Watching::Done => None,
        }
    });
    Ok(Response::new(Box::pin(watched)))
}

/// Where a WatchPaymentEvents stream is.
struct Following {
    gateway: Arc<Gateway>,
    /// Events read and not sent yet.
    read: VecDeque<StoredEvent>,
    /// The id of the last event read.
    after: Option<String>,
    /// Whose payments' events it sends (`None`: every caller's).
    owner: Option<String>,
    latest: tokio::sync::watch::Receiver<Option<String>>,
    done: bool,
}

impl Following {
    /// Reads the next page after `after`; an error ends the stream.
    async fn read_page(&mut self) -> Result<(), Status> {
        match self
            .gateway
            .store()
            .read_events(self.after.as_deref(), EVENTS_PAGE)
            .await
            .map_err(status)?
        {
            EventRead::Events(page) => {
                if let Some(last) = page.last() {
                    self.after = Some(last.id.clone());
                }
                self.read.extend(page);
                Ok(())
            }
            EventRead::Expired => Err(status(GatewayError::EventsExpired {
                after_event_id: self.after.clone().unwrap_or_default(),
            })),
            EventRead::Malformed => Err(status(GatewayError::invalid(
                "after_event_id",
                "not an event id of this gateway (use a PaymentEvent.event_id)",
            ))),
        }
    }

    /// The next event this caller may see, waiting for one as long as it takes.
    async fn next(&mut self) -> Result<pb::PaymentEvent, Status> {
        loop {
            while let Some(event) = self.read.pop_front() {
                if self.owner.as_ref().is_none_or(|o| *o == event.caller) {
                    return decode(&event);
                }
            }
            // Marked seen before the read: news after it wakes the wait below.
            self.latest.borrow_and_update();
            self.read_page().await?;
            if self.read.is_empty() {
                let _ = tokio::time::timeout(EVENTS_RECHECK, self.latest.changed()).await;
            }
        }
    }
}

pub(super) async fn watch_payment_events(
    gateway: &Arc<Gateway>,
    request: pb::WatchPaymentEventsRequest,
) -> Result<Response<EventStream<pb::WatchPaymentEventsResponse>>, Status> {
    gateway.events_kept().map_err(status)?;
    let after = match (request.after_event_id.is_empty(), request.from_now) {
        (false, _) => Some(request.after_event_id),
        (true, false) => None,
        (true, true) => gateway.store().last_event_id().await.map_err(status)?,
    };
    let mut following = Following {
        gateway: gateway.clone(),
        read: VecDeque::new(),
        after,
        owner: crate::auth::visible_payments_owner(),
        latest: gateway.event_hub().latest(),
        done: false,
    };
    // The first page now: a resume point that is gone or malformed is the call's answer.
    following.read_page().await?;
    let followed = stream::unfold(following, |mut following| async move {
        if following.done {
            return None;
        }
        match following.next().await {
            Ok(event) => {
                let sent = pb::WatchPaymentEventsResponse { event: Some(event) };
                Some((Ok(sent), following))
            }
            Err(e) => {
                following.done = true;
                Some((Err(e), following))
            }
        }
    });
    Ok(Response::new(Box::pin(followed)))
}

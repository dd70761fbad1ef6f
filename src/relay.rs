//! The NATS JetStream relay (`[events] nats_url`): copies every payment event from the
//! journal's outbox to a JetStream stream, in order, each once.
//!
//! Why it cannot skip or double an event:
//! - **Order, no gap.** Events are read from the outbox oldest first after a checkpoint and
//!   published pipelined, each with `Nats-Expected-Last-Sequence` set to the stream sequence
//!   the previous one must have taken. If one publish fails, every later one in the batch is
//!   refused by the server (wrong last sequence) instead of landing after a hole; the relay
//!   then reads the checkpoint again and resumes from the first event not stored.
//! - **The stream is the checkpoint.** On start and after any error the relay resumes after the
//!   event id of the stream's last message (its `Nats-Msg-Id` header), so a relay killed
//!   between a publish and writing its own checkpoint resends nothing. The checkpoint kept in
//!   the store (`events:relay:nats:{stream}`) is only used when the stream holds no message
//!   any more (all aged out).
//! - **Resends are dropped by JetStream.** Every message carries `Nats-Msg-Id` = the event id,
//!   so a resend within the stream's `duplicate_window` (two relays during a lease hand-over,
//!   a publish whose ack was lost) is acknowledged as a duplicate and not stored twice.
//! - **One relay at a time.** Replicas take a lease in the store (`...:lease`, renewed well
//!   inside its time to live); the others wait. The two rules above keep even two relays
//!   correct; the lease only saves their work.
//!
//! The stream is the relay's own: nothing else may publish to its subjects (the expected
//! sequence would refuse the relay's next batch until it reads the checkpoint again). Subjects
//! are `{subject_prefix}.{provider}.{state}` with the contract's names in lower case, for
//! example `billpay.payments.onepipe.succeeded`; the payload is the `billpay.v1.PaymentEvent`
//! protobuf encoding.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, message::PublishMessage, stream::Stream};
use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use prost::Message;

use crate::pb;
use crate::store::{keys, EventRead, Store};

/// `[events]` settings for the relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsRelayConfig {
    /// `nats://host:4222`; empty: no relay.
    pub nats_url: String,
    /// The JetStream stream the relay creates (or uses) and owns.
    pub nats_stream: String,
    /// Subjects are `{prefix}.{provider}.{state}`; the stream takes `{prefix}.>`.
    pub nats_subject_prefix: String,
    /// The stream's de-duplication window, milliseconds (JetStream's default is 2 minutes).
    pub nats_duplicate_window_ms: u64,
    /// How long the stream keeps a message, milliseconds; 0 keeps them until its limits.
    pub nats_max_age_ms: u64,
    /// Events read from the outbox and published per round trip.
    pub nats_batch: usize,
    /// How long the relay waits before reading the outbox again when it found nothing,
    /// milliseconds.
    pub nats_idle_poll_ms: u64,
}

impl Default for NatsRelayConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            nats_stream: "BILLPAY_PAYMENT_EVENTS".into(),
            nats_subject_prefix: "billpay.payments".into(),
            nats_duplicate_window_ms: 120_000,
            nats_max_age_ms: 7 * 24 * 3_600_000,
            nats_batch: 256,
            nats_idle_poll_ms: 200,
        }
    }
}

/// One event as the outbox hands it to the relay.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The event id (the resume point of `WatchPaymentEvents`), also the JetStream message id.
    pub id: String,
    /// The provider's contract name in lower case (`onepipe`).
    pub provider: String,
    /// The payment state after the change, the contract's name in lower case (`succeeded`).
    pub state: String,
    /// The `billpay.v1.PaymentEvent` encoding.
    pub payload: Bytes,
}

/// Why the outbox gave no events.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The events after the resume point are no longer kept (retention deleted them while the
    /// relay was away, or the store lost them).
    #[error("the events after the relay's checkpoint are no longer kept")]
    Gone,
    #[error("{0}")]
    Other(String),
}

/// Where the relay reads events: the journal's outbox.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// At most `limit` events after the event `after` (exclusive; `None`: from the oldest kept),
    /// oldest first.
    async fn events_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, OutboxError>;
}

/// The journal store's events, as the relay reads them.
pub struct StoreOutbox(pub Arc<dyn Store>);

#[async_trait]
impl Outbox for StoreOutbox {
    async fn events_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, OutboxError> {
        let read = self
            .0
            .read_events(after, limit)
            .await
            .map_err(|e| OutboxError::Other(e.to_string()))?;
        let events = match read {
            EventRead::Events(events) => events,
            EventRead::Expired => return Err(OutboxError::Gone),
            EventRead::Malformed => {
                return Err(OutboxError::Other(format!(
                    "{} is not an event id of this store",
                    after.unwrap_or_default()
                )))
            }
        };
        events
            .into_iter()
            .map(|stored| {
                let mut event = pb::PaymentEvent::decode(stored.body.as_slice())
                    .map_err(|e| OutboxError::Other(format!("event {}: {e}", stored.id)))?;
                event.event_id = stored.id.clone();
                let payment = event.payment.as_ref();
                let provider = payment
                    .and_then(|p| pb::Provider::try_from(p.provider).ok())
                    .map_or("unknown".into(), |p| {
                        contract_token(p.as_str_name(), "PROVIDER_")
                    });
                let state = payment
                    .and_then(|p| pb::PaymentState::try_from(p.state).ok())
                    .map_or("unknown".into(), |s| {
                        contract_token(s.as_str_name(), "PAYMENT_STATE_")
                    });
                Ok(OutboxEvent {
                    id: stored.id,
                    provider,
                    state,
                    payload: event.encode_to_vec().into(),
                })
            })
            .collect()
    }
}

fn contract_token(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// How long a relay lease lasts; renewed every third of it.
const LEASE: Duration = Duration::from_secs(9);

/// Why a relay round stopped.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("outbox: {0}")]
    Outbox(String),
    #[error("store: {0}")]
    Store(String),
    #[error("lost the relay lease")]
    LeaseLost,
}

fn nats_error(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// Runs the relay until the task is aborted: connects, takes the lease, relays, and on any
/// error waits a moment and starts over from the stream's checkpoint.
pub async fn run(config: NatsRelayConfig, outbox: Arc<dyn Outbox>, store: Arc<dyn Store>) {
    let token = uuid::Uuid::new_v4().to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        match relay_while_leader(&config, outbox.as_ref(), store.as_ref(), &token).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, "event relay to NATS stopped; starting over");
                crate::metrics::global().events_relay_errors.inc();
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Waits for the lease, then relays while holding it. `Ok` when the lease is held by another
/// replica (try again later).
async fn relay_while_leader(
    config: &NatsRelayConfig,
    outbox: &dyn Outbox,
    store: &dyn Store,
    token: &str,
) -> Result<(), RelayError> {
    let lease_key = keys::relay_lease(&config.nats_stream);
    let held = token.as_bytes();
    if !store
        .set_if_absent(&lease_key, held, Some(LEASE))
        .await
        .map_err(|e| RelayError::Store(e.to_string()))?
    {
        let current = store
            .get(&lease_key)
            .await
            .map_err(|e| RelayError::Store(e.to_string()))?;
        if current.as_deref() != Some(held) {
            return Ok(());
        }
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(config.nats_url.as_str())
        .await
        .map_err(nats_error)?;
    let jetstream = jetstream::new(client);
    let mut stream = jetstream
        .get_or_create_stream(stream_config(config))
        .await
        .map_err(nats_error)?;
    let (mut sequence, mut after) = checkpoint(&mut stream, store, &config.nats_stream).await?;
    tracing::info!(
        stream = %config.nats_stream,
        sequence,
        after = after.as_deref().unwrap_or("(start)"),
        "relaying payment events to NATS"
    );
    let mut renewed = tokio::time::Instant::now();
    loop {
        if renewed.elapsed() >= LEASE / 3 {
            let renewed_ok = store
                .compare_and_swap_with_ttl(&lease_key, held, held, Some(LEASE))
                .await
                .map_err(|e| RelayError::Store(e.to_string()))?;
            if !renewed_ok {
                return Err(RelayError::LeaseLost);
            }
            renewed = tokio::time::Instant::now();
        }
        let events = match outbox
            .events_after(after.as_deref(), config.nats_batch.max(1))
            .await
        {
            Ok(events) => events,
            Err(OutboxError::Gone) => {
                // Lost for good: waiting would not bring them back, so the relay says so loudly
                // (an error line and billpay_events_relay_gaps_total) and goes on from the
                // oldest event kept.
                tracing::error!(
                    after = after.as_deref().unwrap_or_default(),
                    "payment events after the relay's checkpoint are no longer kept (the \
                     relay was away longer than events retention, or the store lost them): \
                     NATS consumers miss them; relaying from the oldest event kept"
                );
                crate::metrics::global().events_relay_gaps.inc();
                after = None;
                continue;
            }
            Err(OutboxError::Other(e)) => return Err(RelayError::Outbox(e)),
        };
        if events.is_empty() {
            tokio::time::sleep(Duration::from_millis(config.nats_idle_poll_ms)).await;
            continue;
        }
        // Pipelined: every publish is sent before the first ack is awaited; each names the
        // sequence its predecessor must have taken, so none lands after a failed one.
        let mut acks = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let subject = format!(
                "{}.{}.{}",
                config.nats_subject_prefix, event.provider, event.state
            );
            let publish = PublishMessage::build()
                .payload(event.payload.clone())
                .message_id(&event.id)
                .header("Content-Type", "application/x-protobuf")
                .header("Billpay-Message-Type", "billpay.v1.PaymentEvent")
                .expected_last_sequence(sequence + i as u64);
            acks.push(
                jetstream
                    .send_publish(subject, publish)
                    .await
                    .map_err(nats_error)?,
            );
        }
        for (event, ack) in events.iter().zip(acks) {
            let ack = ack.await.map_err(nats_error)?;
            if ack.duplicate {
                crate::metrics::global().events_relay_duplicates.inc();
            } else {
                crate::metrics::global().events_relayed.inc();
            }
            sequence = ack.sequence;
            after = Some(event.id.clone());
        }
        if let Some(last) = &after {
            store
                .set(
                    &keys::relay_checkpoint(&config.nats_stream),
                    last.as_bytes(),
                    None,
                )
                .await
                .map_err(|e| RelayError::Store(e.to_string()))?;
        }
    }
}

fn stream_config(config: &NatsRelayConfig) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: config.nats_stream.clone(),
        subjects: vec![format!("{}.>", config.nats_subject_prefix)],
        duplicate_window: Duration::from_millis(config.nats_duplicate_window_ms),
        max_age: Duration::from_millis(config.nats_max_age_ms),
        ..Default::default()
    }
}

/// Where to resume: the stream's last sequence and the event id its last message carries; when
/// the stream holds no message, the checkpoint kept in the store (or the start of the outbox).
async fn checkpoint(
    stream: &mut Stream,
    store: &dyn Store,
    name: &str,
) -> Result<(u64, Option<String>), RelayError> {
    let state = stream.info().await.map_err(nats_error)?.state.clone();
    if state.messages > 0 {
        let last = stream
            .get_raw_message(state.last_sequence)
            .await
            .map_err(nats_error)?;
        let id = last
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .ok_or_else(|| {
                RelayError::Nats(format!(
                    "the last message of stream {name} has no Nats-Msg-Id: something other \
                     than the relay publishes to its subjects"
                ))
            })?;
        return Ok((state.last_sequence, Some(id)));
    }
    let kept = store
        .get(&keys::relay_checkpoint(name))
        .await
        .map_err(|e| RelayError::Store(e.to_string()))?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    Ok((state.last_sequence, kept))
}

//! The NATS JetStream relay against a real `nats-server -js`: every outbox event lands in the
//! stream once, in order, also when the relay is stopped mid-batch and started again, and a
//! relay that finds its store checkpoint gone resumes from the stream's own last message.
//! Counted by a JetStream pull consumer.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use async_trait::async_trait;
use billpay_gateway::{
    relay::{NatsRelayConfig, Outbox, OutboxError, OutboxEvent},
    store::{keys, memory::MemoryStore, Store},
};
use common::nats::{unique_stream, NatsServer};
use futures_util::StreamExt;

/// The outbox a test appends to: event ids are zero-padded counters, so they order as strings.
#[derive(Default)]
struct TestOutbox {
    events: Mutex<Vec<OutboxEvent>>,
}

impl TestOutbox {
    fn append(&self, n: usize) {
        let mut events = self.events.lock().unwrap();
        for _ in 0..n {
            let i = events.len();
            events.push(OutboxEvent {
                id: format!("{i:08}"),
                provider: ["onepipe", "switch", "interswitch"][i % 3].into(),
                state: ["pending", "succeeded"][i % 2].into(),
                payload: format!("event {i}").into_bytes().into(),
            });
        }
    }
}

#[async_trait]
impl Outbox for TestOutbox {
    async fn events_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, OutboxError> {
        let events = self.events.lock().unwrap();
        let start = match after {
            None => 0,
            Some(id) => events
                .iter()
                .position(|e| e.id == id)
                .map(|p| p + 1)
                .ok_or_else(|| OutboxError::Other(format!("unknown event id {id}")))?,
        };
        Ok(events[start..].iter().take(limit).cloned().collect())
    }
}

fn config(url: &str, stream: &str, batch: usize) -> NatsRelayConfig {
    NatsRelayConfig {
        nats_url: url.into(),
        nats_stream: stream.into(),
        nats_subject_prefix: format!("test.{}", stream.to_lowercase()),
        nats_batch: batch,
        nats_idle_poll_ms: 20,
        ..NatsRelayConfig::default()
    }
}

/// Every message in the stream, in stream order, read by a durable pull consumer: (subject,
/// message id, payload).
async fn consume_all(url: &str, stream: &str, expect: usize) -> Vec<(String, String, String)> {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .get_or_create_consumer(
            "counter",
            pull::Config {
                durable_name: Some("counter".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Bounded: fetches until `expect` messages arrived, then one more short fetch proves nothing
    // else is there.
    for _ in 0..200 {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .unwrap();
        let before = seen.len();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default();
            seen.push((
                message.subject.to_string(),
                id,
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
            message.ack().await.unwrap();
        }
        if seen.len() >= expect && seen.len() == before {
            break;
        }
    }
    seen
}

/// Messages in the stream; 0 until the relay has created it.
async fn stream_messages(url: &str, stream: &str) -> u64 {
    let js = jetstream::new(async_nats::connect(url).await.unwrap());
    match js.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

/// Waits (at most 30 s: a relay killed with its lease held keeps the next one waiting for the
/// lease's 9 s) until the stream holds `at_least` messages.
async fn wait_for_messages(url: &str, stream: &str, at_least: u64) {
    for _ in 0..3_000 {
        if stream_messages(url, stream).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the stream never reached {at_least} messages");
}

/// Every event once, in outbox order, with the subject naming its provider and state.
fn assert_exactly_once_in_order(seen: &[(String, String, String)], total: usize, prefix: &str) {
    assert_eq!(seen.len(), total, "every event once: {} seen", seen.len());
    for (i, (subject, id, payload)) in seen.iter().enumerate() {
        assert_eq!(id, &format!("{i:08}"), "event {i} out of order or missing");
        assert_eq!(payload, &format!("event {i}"));
        let provider = ["onepipe", "switch", "interswitch"][i % 3];
        let state = ["pending", "succeeded"][i % 2];
        assert_eq!(subject, &format!("{prefix}.{provider}.{state}"));
    }
}

#[tokio::test]
async fn relays_every_event_once_in_order() {
    let nats = NatsServer::start();
    let name = unique_stream("RELAY");
    let outbox = Arc::new(TestOutbox::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    outbox.append(300);
    let config = config(nats.url(), &name, 64);
    let relay = tokio::spawn(billpay_gateway::relay::run(
        config.clone(),
        outbox.clone(),
        store.clone(),
    ));
    wait_for_messages(nats.url(), &name, 300).await;
    // Events appended while the relay runs follow.
    outbox.append(100);
    wait_for_messages(nats.url(), &name, 400).await;
    relay.abort();
    let seen = consume_all(nats.url(), &name, 400).await;
    assert_exactly_once_in_order(&seen, 400, &config.nats_subject_prefix);
    assert_eq!(
        store
            .get(&keys::relay_checkpoint(&name))
            .await
            .unwrap()
            .as_deref(),
        Some(b"00000399".as_slice()),
        "the store checkpoint follows the stream"
    );
}

#[tokio::test]
async fn a_relay_stopped_mid_batch_and_started_again_publishes_each_event_once() {
    let nats = NatsServer::start();
    let name = unique_stream("RELAYKILL");
    let outbox = Arc::new(TestOutbox::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    outbox.append(2_000);
    let config = config(nats.url(), &name, 256);
    // Stopped three times while publishing (the task is dropped at whatever await it is in:
    // publishes sent, acks not read, checkpoint not written), then run to the end.
    for stop_at in [150, 700, 1_300] {
        let relay = tokio::spawn(billpay_gateway::relay::run(
            config.clone(),
            outbox.clone(),
            store.clone(),
        ));
        wait_for_messages(nats.url(), &name, stop_at).await;
        relay.abort();
        let _ = relay.await;
        // The lease of the stopped relay would hold the next one off for its whole time to
        // live: a process that died leaves it, so drop it as its expiry would.
        store.delete(&keys::relay_lease(&name)).await.unwrap();
    }
    // The store checkpoint lags (or is lost): the stream's last message is the resume point.
    store.delete(&keys::relay_checkpoint(&name)).await.unwrap();
    let relay = tokio::spawn(billpay_gateway::relay::run(
        config.clone(),
        outbox.clone(),
        store.clone(),
    ));
    wait_for_messages(nats.url(), &name, 2_000).await;
    // Give a straggler (a duplicate the relay should never send) time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.abort();
    let seen = consume_all(nats.url(), &name, 2_000).await;
    assert_exactly_once_in_order(&seen, 2_000, &config.nats_subject_prefix);
}

#[tokio::test]
async fn one_relay_per_stream_while_the_lease_is_held() {
    let nats = NatsServer::start();
    let name = unique_stream("RELAYLEASE");
    let outbox = Arc::new(TestOutbox::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    outbox.append(500);
    let config = config(nats.url(), &name, 32);
    // Two replicas on one store: one relays, the other waits; each event still lands once.
    let a = tokio::spawn(billpay_gateway::relay::run(
        config.clone(),
        outbox.clone(),
        store.clone(),
    ));
    let b = tokio::spawn(billpay_gateway::relay::run(
        config.clone(),
        outbox.clone(),
        store.clone(),
    ));
    wait_for_messages(nats.url(), &name, 500).await;
    outbox.append(500);
    wait_for_messages(nats.url(), &name, 1_000).await;
    a.abort();
    b.abort();
    let seen = consume_all(nats.url(), &name, 1_000).await;
    assert_exactly_once_in_order(&seen, 1_000, &config.nats_subject_prefix);
}

#[tokio::test]
async fn two_relays_without_a_shared_lease_still_publish_each_event_once() {
    let nats = NatsServer::start();
    let name = unique_stream("RELAYRACE");
    let outbox = Arc::new(TestOutbox::default());
    outbox.append(1_500);
    let config = config(nats.url(), &name, 128);
    // Each relay has its own store, so both hold a lease: the stream's expected sequence and
    // message ids keep the order and drop the doubles.
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
            tokio::spawn(billpay_gateway::relay::run(
                config.clone(),
                outbox.clone(),
                store,
            ))
        })
        .collect();
    wait_for_messages(nats.url(), &name, 1_500).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for relay in relays {
        relay.abort();
    }
    let seen = consume_all(nats.url(), &name, 1_500).await;
    assert_exactly_once_in_order(&seen, 1_500, &config.nats_subject_prefix);
}

#[tokio::test]
async fn a_nats_server_killed_mid_batch_loses_and_doubles_nothing() {
    let mut nats = NatsServer::start_own();
    let name = unique_stream("RELAYCRASH");
    let outbox = Arc::new(TestOutbox::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    outbox.append(3_000);
    let config = config(nats.url(), &name, 256);
    let relay = tokio::spawn(billpay_gateway::relay::run(
        config.clone(),
        outbox.clone(),
        store.clone(),
    ));
    // Killed twice with publishes in flight; the relay reconnects and resumes after the last
    // message the server kept.
    for stop_at in [400, 1_500] {
        wait_for_messages(nats.url(), &name, stop_at).await;
        nats.kill_and_restart();
    }
    wait_for_messages(nats.url(), &name, 3_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.abort();
    let seen = consume_all(nats.url(), &name, 3_000).await;
    assert_exactly_once_in_order(&seen, 3_000, &config.nats_subject_prefix);
}

/// The whole path through real processes: payments on a gateway over a real Redis write their
/// events to the Redis stream; the gateway relays them to JetStream; it is killed (`SIGKILL`)
/// while relaying, and a new gateway process relays the rest. JetStream ends with exactly the
/// events of the Redis stream, each once, in the stream's order.
#[tokio::test]
async fn a_gateway_killed_while_relaying_and_started_again_publishes_each_event_once() {
    use common::{process::Spawned, race, redis::RedisServer};

    let redis = RedisServer::start();
    let mut nats = NatsServer::start_own();
    let name = unique_stream("GWRELAY");
    let sim = Spawned::simulator();
    let env = [
        ("REDIS_URL", redis.url()),
        ("BILLPAY__EVENTS__NATS_URL", nats.url().to_string()),
        ("BILLPAY__EVENTS__NATS_STREAM", name.clone()),
        (
            "BILLPAY__EVENTS__NATS_SUBJECT_PREFIX",
            format!("test.{}", name.to_lowercase()),
        ),
        // Read the outbox often, so the kill finds the relay at work.
        // Small batches, so the kill lands between batches and within one.
        ("BILLPAY__EVENTS__NATS_BATCH", "8".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let pay_all = |addr: String, from: usize, to: usize| async move {
        let mut client = race::client(&addr).await;
        for i in from..to {
            let request = race::request(
                &format!("relay-{i}"),
                // Every fourth one goes PENDING and is settled by reconciliation.
                if i % 4 == 0 {
                    "1111111111"
                } else {
                    "0000000000"
                },
                100_000 + i as i64,
            );
            let payment = client
                .create_payment(request)
                .await
                .unwrap()
                .into_inner()
                .payment
                .unwrap();
            // Settled before the Redis stream is read below: a PENDING answer is asked again
            // (GetPayment queries the provider) so no later change adds events.
            let mut state = payment.state;
            for _ in 0..100 {
                if state == billpay_gateway::pb::PaymentState::Succeeded as i32 {
                    break;
                }
                state = client
                    .get_payment(billpay_gateway::pb::GetPaymentRequest {
                        payment_id: payment.payment_id.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .payment
                    .unwrap()
                    .state;
            }
            assert_eq!(state, billpay_gateway::pb::PaymentState::Succeeded as i32);
        }
    };

    // NATS is down while the first payments are made, so their events wait in the outbox and
    // the relay meets them all at once when NATS is back: the gateway is killed while it
    // relays them (batches of 8).
    nats.kill();
    let first = Spawned::gateway_with(&sim, &env);
    pay_all(first.addr.clone(), 0, 60).await;
    nats.restart();
    wait_for_messages(nats.url(), &name, 20).await;
    drop(first);
    eprintln!(
        "gateway killed with {} of 120 events relayed",
        stream_messages(nats.url(), &name).await
    );
    let second = Spawned::gateway_with(&sim, &env);
    pay_all(second.addr.clone(), 60, 80).await;

    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
        .arg("billpay:v1:events")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let stream_ids: Vec<String> = entries.into_iter().map(|(id, _)| id).collect();
    assert!(
        stream_ids.len() >= 160,
        "every payment recorded at least two events: {}",
        stream_ids.len()
    );
    wait_for_messages(nats.url(), &name, stream_ids.len() as u64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(second);
    let seen = consume_all(nats.url(), &name, stream_ids.len()).await;
    let seen_ids: Vec<String> = seen.iter().map(|(_, id, _)| id.clone()).collect();
    assert_eq!(
        seen_ids, stream_ids,
        "JetStream holds the outbox, each event once, in order"
    );
    for (subject, _, _) in &seen {
        assert!(
            subject.starts_with(&format!("test.{}.interswitch.", name.to_lowercase())),
            "{subject}"
        );
    }
}

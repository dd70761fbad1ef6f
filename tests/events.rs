//! Payment events through real gRPC, over a real redis-server and the in-process simulators:
//! a WatchPayment stream on one replica sees the changes another replica makes and those its
//! reconciler makes; a WatchPaymentEvents consumer stopped mid-stream and resumed from its last
//! event id (on another replica) sees every later event exactly once; a resume point past
//! retention is OUT_OF_RANGE; a record write whose event cannot be appended writes neither
//! (Redis and PostgreSQL). The memory store's same behaviour is in `events_sandbox.rs`.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{identity, redis::RedisStore, EventRead, NewEvent, RecordWrite, Store},
};
use common::{postgres::TestDatabase, redis::RedisServer, *};
use tonic::{Code, Streaming};

/// Bounds every wait on a stream: a failure, not a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(RedisStore::new(&redis.url(), Duration::from_secs(2), Duration::from_secs(2)).unwrap())
}

/// Settings of a replica whose reconciler looks once at start, then not for an hour: changes
/// happen only when a test makes them.
fn idle() -> PaymentSettings {
    PaymentSettings {
        reconcile_poll_ms: 3_600_000,
        reconcile_backoff_ms: vec![100, 100, 100],
        ..PaymentSettings::default()
    }
}

/// A replica over `redis` (initialised by the first).
async fn replica(sims: &Simulators, redis: &RedisServer, settings: PaymentSettings) -> TestGateway {
    let store = redis_store(redis);
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(store.as_ref(), now, &Default::default())
        .await
        .expect("store initialised");
    TestGateway::start_with(sandbox::providers_config(&sims.base_url()), store, settings).await
}

async fn watch(gw: &TestGateway, payment_id: &str) -> Streaming<pb::WatchPaymentResponse> {
    gw.payments()
        .watch_payment(pb::WatchPaymentRequest {
            payment_id: payment_id.into(),
        })
        .await
        .expect("watch starts")
        .into_inner()
}

/// The next payment a watch sends; `None` when it ended OK.
async fn next_payment(stream: &mut Streaming<pb::WatchPaymentResponse>) -> Option<pb::Payment> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message or the end")
        .expect("no error")
        .map(|m| m.payment.expect("a payment"))
}

async fn next_event(stream: &mut Streaming<pb::WatchPaymentEventsResponse>) -> pb::PaymentEvent {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("an event")
        .expect("no error")
        .expect("the stream goes on")
        .event
        .expect("an event")
}

async fn events_after(
    gw: &TestGateway,
    after: &str,
) -> Result<Streaming<pb::WatchPaymentEventsResponse>, tonic::Status> {
    gw.payments()
        .watch_payment_events(pb::WatchPaymentEventsRequest {
            after_event_id: after.into(),
            from_now: false,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_sees_changes_made_by_another_and_by_a_reconciler() {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let a = replica(&sims, &redis, idle()).await;
    let b = replica(&sims, &redis, idle()).await;

    // Replica B records it (PENDING: the simulator answers 90009 for this customer) and
    // later learns the outcome; the watcher is on A.
    let paid = b
        .pay(payment_request("ev-b", "90101", "1111111111", 5_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Pending);
    let mut watching = watch(&a, &paid.payment_id).await;
    let first = next_payment(&mut watching).await.unwrap();
    assert_eq!(state(&first), pb::PaymentState::Pending);
    assert_eq!(first.provider_code, "90009");
    let settled = b.get(&paid.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    let seen = next_payment(&mut watching).await.unwrap();
    assert_eq!(state(&seen), pb::PaymentState::Succeeded);
    assert_eq!(seen.provider_code, settled.provider_code);
    assert_eq!(seen.fulfilment_token, settled.fulfilment_token);
    assert_eq!(
        next_payment(&mut watching).await,
        None,
        "final: the stream ends OK"
    );

    // Recorded on A, watched on A, settled by the reconciler of replica C, which starts
    // only once the watcher is there (its first pass finds the payment due).
    let paid = a
        .pay(payment_request("ev-c", "90101", "1111111111", 7_000))
        .await;
    let mut watching = watch(&a, &paid.payment_id).await;
    assert_eq!(
        state(&next_payment(&mut watching).await.unwrap()),
        pb::PaymentState::Pending
    );
    let c = replica(
        &sims,
        &redis,
        PaymentSettings {
            reconcile_poll_ms: 100,
            ..idle()
        },
    )
    .await;
    let seen = next_payment(&mut watching).await.unwrap();
    assert_eq!(state(&seen), pb::PaymentState::Succeeded);
    assert_eq!(seen.status_checks, 1, "one status query, by the reconciler");
    assert_eq!(next_payment(&mut watching).await, None);

    // The reconciler's change is an event like any other, with its cause.
    let mut events = events_after(&a, "").await.unwrap();
    let mut causes = Vec::new();
    while causes.len() < 6 {
        let event = next_event(&mut events).await;
        causes.push((
            event.payment.unwrap().request_id,
            event.cause,
            event.previous_state,
        ));
    }
    let created = pb::PaymentEventCause::Created as i32;
    let answered = pb::PaymentEventCause::ProviderAnswer as i32;
    let queried = pb::PaymentEventCause::StatusQuery as i32;
    let (none, pending) = (
        pb::PaymentState::Unspecified as i32,
        pb::PaymentState::Pending as i32,
    );
    assert_eq!(
        causes,
        [
            ("ev-b".to_string(), created, none),
            ("ev-b".to_string(), answered, pending),
            ("ev-b".to_string(), queried, pending),
            ("ev-c".to_string(), created, none),
            ("ev-c".to_string(), answered, pending),
            ("ev-c".to_string(), queried, pending),
        ]
    );

    // Nobody watches a payment that is not there (or not theirs: GetPayment's scoping).
    let missing = a
        .payments()
        .watch_payment(pb::WatchPaymentRequest {
            payment_id: billpay_gateway::domain::PaymentRecord::id_for_request("nobody"),
        })
        .await
        .unwrap_err();
    assert_error(&missing, Code::NotFound, "NOT_FOUND");
    let gone = a.gateway.event_hub().watcher_count();
    assert_eq!(gone, 0, "ended and refused watchers leave nothing behind");
    for gw in [a, b, c] {
        gw.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumed_from_its_last_event_id_sees_every_later_event_once() {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let a = replica(&sims, &redis, idle()).await;
    let b = replica(&sims, &redis, idle()).await;

    let mut consumer = a
        .payments()
        .watch_payment_events(pb::WatchPaymentEventsRequest {
            after_event_id: String::new(),
            from_now: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut payments = Vec::new();
    for i in 0..3 {
        let request = payment_request(&format!("ev-r{i}"), "90101", "1111111111", 5_000 + i);
        payments.push(b.pay(request).await.payment_id);
    }
    // Two events each so far (created, provider answer); the consumer processes four and
    // stops, having kept the id of the last.
    let mut processed = Vec::new();
    for _ in 0..4 {
        processed.push(next_event(&mut consumer).await);
    }
    drop(consumer);
    let kept = processed.last().unwrap().event_id.clone();
    // Meanwhile: each payment settles (one event each), on either replica.
    for (i, id) in payments.iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        assert_eq!(state(&gw.get(id).await), pb::PaymentState::Succeeded);
    }

    // Everything after `kept`, as the store has it, in order.
    let store = redis_store(&redis);
    let EventRead::Events(expected) = store.read_events(Some(&kept), 100).await.unwrap() else {
        panic!("events after {kept} are kept");
    };
    assert_eq!(expected.len(), 5, "two answers and three settlements");
    // Resumed on the other replica: exactly those, each once, in order.
    let mut resumed = events_after(&b, &kept).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(next_event(&mut resumed).await);
    }
    let got_ids: Vec<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got_ids, expected_ids);
    let seen_before: Vec<&str> = processed.iter().map(|e| e.event_id.as_str()).collect();
    assert!(got_ids.iter().all(|id| !seen_before.contains(id)));
    // Per payment: revisions 1, 2, 3 across both reads, no gap, no repeat.
    for id in &payments {
        let revisions: Vec<u64> = processed
            .iter()
            .chain(&got)
            .filter(|e| e.payment.as_ref().unwrap().payment_id == *id)
            .map(|e| e.payment_revision)
            .collect();
        assert_eq!(revisions, [1, 2, 3], "{id}");
    }
    let last = got.last().unwrap();
    assert_eq!(
        last.payment.as_ref().unwrap().state,
        pb::PaymentState::Succeeded as i32
    );
    assert!(last.time.is_some());

    // A resume point that is not one of ours, and one past retention.
    let bad = events_after(&a, "yesterday").await.unwrap_err();
    assert_error(&bad, Code::InvalidArgument, "INVALID_REQUEST");
    store
        .trim_events(billpay_gateway::gateway::Clock::default().now_ms() + 60_000)
        .await
        .unwrap();
    let expired = events_after(&a, &kept).await.unwrap_err();
    assert_error(&expired, Code::OutOfRange, "EVENTS_EXPIRED");
    assert_eq!(
        error_meta(&expired, "after_event_id").as_deref(),
        Some(kept.as_str())
    );
    a.stop().await;
    b.stop().await;
}

/// The outbox by construction: the change and its event are one atomic step, so a failing
/// append (here the events stream, or table, made unwritable) writes neither.
#[tokio::test]
async fn a_change_whose_event_cannot_be_written_is_not_written_either() {
    let event = NewEvent {
        payment_id: "p",
        caller: "c",
        body: b"e",
        at_ms: 1,
    };
    let swap = RecordWrite::Swap {
        key: "billpay:v1:payment:p",
        expected: b"old",
        new: b"new",
        ttl: None,
    };

    let redis = RedisServer::start();
    let store = redis_store(&redis);
    store
        .set("billpay:v1:payment:p", b"old", None)
        .await
        .unwrap();
    // A string where the stream should be: XADD fails inside the script.
    store
        .set("billpay:v1:events", b"not a stream", None)
        .await
        .unwrap();
    assert!(store.write_with_event(swap, event).await.is_err());
    assert_eq!(
        store.get("billpay:v1:payment:p").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );

    let db = TestDatabase::create().await;
    let store = db.migrated_store().await;
    store
        .set("billpay:v1:payment:p", b"old", None)
        .await
        .unwrap();
    db.client()
        .await
        .batch_execute("ALTER TABLE billpay_events ADD CONSTRAINT refuse CHECK (false) NOT VALID")
        .await
        .unwrap();
    assert!(store.write_with_event(swap, event).await.is_err());
    assert_eq!(
        store.get("billpay:v1:payment:p").await.unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        store.last_event_id().await.unwrap(),
        None,
        "no position used"
    );
}

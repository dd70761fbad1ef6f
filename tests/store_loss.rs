//! A store that loses acknowledged writes, with a real redis-server: a host crash that cuts
//! the AOF's tail under a live gateway (the counter behind what it used: alarm, no reference
//! reused, lost payments not paid again), a record lost while its call is in flight (put back
//! from the gateway's copy, alarm raised), an in-flight mark lost (noticed when the outcome
//! returns), a retry whose record was lost (put back, never paid again), Redis emptied under
//! two replicas and recovered while clients keep retrying (no reference reused, pre-loss
//! retries refused or replayed, never paid), `store recover` right after a burst (the next
//! references are fresh), payments faster than a reference format allows (refused unsent),
//! and the journal index trim. Losses are made by cutting the AOF at a recorded size, deleting
//! keys or FLUSHALL on a Redis that keeps everything it acknowledged (`appendfsync always`),
//! so each test controls exactly what is lost; nothing waits on a guessed duration except the
//! sandbox's slow payment (3 s) that keeps a call in flight while its record is taken away.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{keys, redis::RedisStore, Store},
};
use common::{redis::RedisServer, *};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The sandbox Interswitch customer whose payment takes 3 s (and succeeds).
const SLOW_CUSTOMER: &str = "3333333333";

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::new(
            &redis.url(),
            Duration::from_millis(1_000),
            Duration::from_millis(1_000),
        )
        .unwrap(),
    )
}

async fn simulators() -> Simulators {
    Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

/// A persistent Redis, initialised with `billpay-gateway store init` as shipped.
fn initialised_redis() -> RedisServer {
    let redis = RedisServer::start_persistent();
    store_command(&redis, "init");
    redis
}

/// Runs `billpay-gateway store <action>` against `redis`; its stdout.
fn store_command(redis: &RedisServer, action: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", action])
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout} {output:?}");
    stdout
}

async fn gateway(sims: &Simulators, redis: &RedisServer) -> TestGateway {
    TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        redis_store(redis),
        PaymentSettings::default(),
    )
    .await
}

/// The raw command, for what the store trait does not do (FLUSHALL).
async fn redis_cmd(redis: &RedisServer, cmd: &str) {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    ::redis::cmd(cmd).query_async::<()>(&mut c).await.unwrap();
}

/// Waits (10 s at most) until the stored record of `payment_id` contains `marker`; its bytes.
async fn wait_for_record(store: &dyn Store, payment_id: &str, marker: &str) -> Vec<u8> {
    for _ in 0..500 {
        if let Some(bytes) = store.get(&keys::payment(payment_id)).await.unwrap() {
            if String::from_utf8_lossy(&bytes).contains(marker) {
                return bytes;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("record of {payment_id} never showed {marker}");
}

/// The payment id the gateway derives from a request_id (no per-caller key in these tests).
fn payment_id(request_id: &str) -> String {
    billpay_gateway::domain::PaymentRecord::id_for_request(request_id)
}

async fn identity_is_marked_lost(store: &dyn Store) -> bool {
    store
        .get(&keys::identity())
        .await
        .unwrap()
        .is_some_and(|v| v.starts_with(b"lost:"))
}

/// A UUIDv7 request_id created at `unix_ms` (the clients' way to carry creation time).
fn uuid_v7(unix_ms: i64, n: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    bytes[8..16].copy_from_slice(&(n | 0x8000_0000_0000_0000).to_be_bytes());
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn reference_number(p: &pb::Payment) -> u64 {
    p.provider_reference.parse().expect("numeric reference")
}

#[tokio::test]
async fn a_record_lost_while_its_call_is_in_flight_is_put_back_and_raises_the_alarm() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    let request = payment_request("tail-1", "90101", SLOW_CUSTOMER, 1_000);
    let mut client = gw.payments();
    let call = tokio::spawn(async move { client.create_payment(request).await });
    let id = payment_id("tail-1");
    wait_for_record(store.as_ref(), &id, "InFlight").await;
    // The store loses the record (the AOF's tail) while the provider is paying.
    store.delete(&keys::payment(&id)).await.unwrap();

    let paid = call
        .await
        .unwrap()
        .expect("answered")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    let stored = wait_for_record(store.as_ref(), &id, "Succeeded").await;
    assert!(String::from_utf8_lossy(&stored).contains(&paid.provider_reference));
    // Alarm: every replica stops until an operator recovers the store.
    assert!(identity_is_marked_lost(store.as_ref()).await);
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    let status = gw
        .payments()
        .create_payment(payment_request("tail-2", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);

    store_command(&redis, "recover");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    // The retry replays the put-back record: paid once.
    let again = gw
        .pay(payment_request("tail-1", "90101", SLOW_CUSTOMER, 1_000))
        .await;
    assert_eq!(again.provider_reference, paid.provider_reference);
    assert_eq!(state(&again), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_in_flight_mark_lost_is_noticed_when_the_outcome_returns() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    let request = payment_request("mark-1", "90101", SLOW_CUSTOMER, 1_000);
    let mut client = gw.payments();
    let call = tokio::spawn(async move { client.create_payment(request).await });
    let id = payment_id("mark-1");
    let in_flight = wait_for_record(store.as_ref(), &id, "InFlight").await;
    // The store rolls back to the claim: the in-flight mark is lost.
    let claimed = String::from_utf8_lossy(&in_flight).replace("InFlight", "Claimed");
    store
        .set(&keys::payment(&id), claimed.as_bytes(), None)
        .await
        .unwrap();

    let paid = call
        .await
        .unwrap()
        .expect("answered")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    wait_for_record(store.as_ref(), &id, "Succeeded").await;
    assert!(identity_is_marked_lost(store.as_ref()).await);
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_retry_whose_record_was_lost_is_never_paid_again() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    let paid = gw
        .pay(payment_request("retry-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    // The record is lost, the identity stays: the store alone cannot tell.
    store
        .delete(&keys::payment(&paid.payment_id))
        .await
        .unwrap();
    let status = gw
        .payments()
        .create_payment(payment_request("retry-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(sims.calls.get("interswitch", "pay"), 1, "not paid again");
    // Put back from this replica's copy, and the alarm raised.
    wait_for_record(store.as_ref(), &paid.payment_id, "Succeeded").await;
    assert!(identity_is_marked_lost(store.as_ref()).await);

    store_command(&redis, "recover");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let again = gw
        .pay(payment_request("retry-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(again.provider_reference, paid.provider_reference);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn redis_emptied_and_recovered_under_two_replicas_pays_nothing_twice_and_reuses_no_reference()
{
    let redis = initialised_redis();
    let sims = simulators().await;
    let replicas = [gateway(&sims, &redis).await, gateway(&sims, &redis).await];
    // Payments made through both replicas, each request carrying its creation time: a
    // UUIDv7 request_id, or a plain one with request_created_at.
    let mut sent = Vec::new();
    for n in 0..12u64 {
        let created = now_ms();
        let mut request = if n % 2 == 0 {
            payment_request(&uuid_v7(created, n), "90101", "0000000000", 1_000)
        } else {
            pb::CreatePaymentRequest {
                request_created_at: Some(prost_types::Timestamp {
                    seconds: created / 1000,
                    nanos: (created % 1000) as i32 * 1_000_000,
                }),
                ..payment_request(&format!("plain-{n}"), "90101", "0000000000", 1_000)
            }
        };
        request.amount = ngn(1_000 + n as i64);
        let paid = replicas[(n % 2) as usize].pay(request.clone()).await;
        assert_eq!(state(&paid), pb::PaymentState::Succeeded);
        sent.push((request, paid));
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 12);
    let largest = sent.iter().map(|(_, p)| reference_number(p)).max().unwrap();

    // Redis comes back empty (records, counters, identity: all gone), then the operator
    // recovers it.
    redis_cmd(&redis, "FLUSHALL").await;
    for gw in &replicas {
        wait_for_payment_health(gw, ServingStatus::NotServing).await;
    }
    store_command(&redis, "recover");
    for gw in &replicas {
        wait_for_payment_health(gw, ServingStatus::Serving).await;
    }

    // Clients still retrying, each on the other replica (which never saw it): refused, not
    // paid. On the replica that made it, the record is put back and replayed.
    for (at, (request, paid)) in sent.iter().enumerate() {
        let other = &replicas[(at + 1) % 2];
        let status = other
            .payments()
            .create_payment(request.clone())
            .await
            .unwrap_err();
        let fields = assert_error(
            &status,
            Code::FailedPrecondition,
            "REQUEST_PREDATES_RECOVERY",
        );
        assert!(fields.is_empty());
        assert!(
            status.message().contains("Do not retry"),
            "{}",
            status.message()
        );
        let same = &replicas[at % 2];
        let replayed = same.pay(request.clone()).await;
        assert_eq!(replayed.provider_reference, paid.provider_reference);
        assert_eq!(state(&replayed), pb::PaymentState::Succeeded);
    }
    assert_eq!(
        sims.calls.get("interswitch", "pay"),
        12,
        "nothing paid twice"
    );

    // New payments: fresh references, above every one sent before the loss.
    for n in 0..3u64 {
        let fresh = replicas[(n % 2) as usize]
            .pay(payment_request(
                &uuid_v7(now_ms(), 100 + n),
                "90101",
                "0000000000",
                2_000,
            ))
            .await;
        assert_eq!(state(&fresh), pb::PaymentState::Succeeded);
        assert!(reference_number(&fresh) > largest);
    }
    for gw in replicas {
        gw.stop().await;
    }
}

#[tokio::test]
async fn store_recover_right_after_a_burst_hands_out_fresh_references() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    let mut references = Vec::new();
    for n in 0..20 {
        let paid = gw
            .pay(payment_request(
                &format!("burst-{n}"),
                "90101",
                "0000000000",
                1_000,
            ))
            .await;
        assert_eq!(state(&paid), pb::PaymentState::Succeeded);
        references.push(reference_number(&paid));
    }
    // Redis comes back empty: the counters, the records and the identity are gone, so the
    // recovery has only the reference clock to go by.
    redis_cmd(&redis, "FLUSHALL").await;
    assert!(store
        .keys_with_prefix(keys::PREFIX)
        .await
        .unwrap()
        .is_empty());
    store_command(&redis, "recover");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let largest = references.iter().max().copied().unwrap();
    for n in 0..3 {
        let next = gw
            .pay(payment_request(
                &format!("after-{n}"),
                "90101",
                "0000000000",
                2_000,
            ))
            .await;
        assert_eq!(
            state(&next),
            pb::PaymentState::Succeeded,
            "not NEEDS_ATTENTION"
        );
        assert!(reference_number(&next) > largest);
    }
    assert_eq!(sims.calls.get("interswitch", "pay"), 23);
    gw.stop().await;
}

#[tokio::test]
async fn the_journal_index_loses_entries_of_expired_records_and_keeps_the_rest() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    // Final records expire after 1 s.
    let settings = PaymentSettings {
        record_ttl_ms: 1_000,
        reconcile_backoff_ms: vec![500],
        max_pending_age_ms: 1_000,
        ..PaymentSettings::default()
    };
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store.clone(),
        settings,
    )
    .await;
    let mut done = Vec::new();
    for n in 0..5 {
        done.push(
            gw.pay(payment_request(
                &format!("trim-{n}"),
                "90101",
                "0000000000",
                1_000,
            ))
            .await
            .payment_id,
        );
    }
    // A record that is not final never expires, however old its entry.
    let open = "open-payment";
    store
        .set(&keys::payment(open), br#"{"not":"read"}"#, None)
        .await
        .unwrap();
    store
        .schedule(&keys::journal_index(), open, 1)
        .await
        .unwrap();
    let index = keys::journal_index();
    assert_eq!(
        store
            .range(&index, i64::MIN, i64::MAX, 0, 100)
            .await
            .unwrap()
            .len(),
        6
    );
    // Wait (bounded) until Redis expired the five final records.
    for _ in 0..300 {
        let mut left = 0;
        for id in &done {
            left += usize::from(store.get(&keys::payment(id)).await.unwrap().is_some());
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the TTL since creation: the pass may look at them. Bounded: the gateway's clock
    // runs with the test's.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let removed = gw.gateway.trim_journal_index().await.unwrap();
    assert_eq!(removed, 5);
    assert_eq!(
        store
            .range(&index, i64::MIN, i64::MAX, 0, 100)
            .await
            .unwrap(),
        vec![open.to_owned()]
    );
    assert_eq!(gw.gateway.trim_journal_index().await.unwrap(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn payments_faster_than_the_reference_format_allows_are_refused_unsent() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    // Interswitch references (1 a second with 12 characters) ran far ahead of their clock.
    let clock = billpay_gateway::store::identity::ReferenceClocks::default()
        .get(billpay_gateway::domain::ProviderId::Interswitch);
    let far = clock.ceiling(now_ms()) + 10_000;
    store
        .set(
            &keys::reference_sequence("interswitch"),
            far.to_string().as_bytes(),
            None,
        )
        .await
        .unwrap();
    let status = gw
        .payments()
        .create_payment(payment_request("fast-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::ResourceExhausted, "REFERENCE_RATE_EXCEEDED");
    assert!(retry_delay(&status).is_some_and(|d| d > Duration::from_secs(60)));
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    assert!(store
        .get(&keys::payment(&payment_id("fast-1")))
        .await
        .unwrap()
        .is_none());
    // A bad creation time is bad input, refused before anything else.
    let status = gw
        .payments()
        .create_payment(pb::CreatePaymentRequest {
            request_created_at: Some(prost_types::Timestamp {
                seconds: -5,
                nanos: 0,
            }),
            ..payment_request("fast-2", "90101", "0000000000", 1_000)
        })
        .await
        .unwrap_err();
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, vec!["request_created_at".to_owned()]);
    gw.stop().await;
}

#[tokio::test]
async fn a_cut_aof_tail_is_noticed_by_the_live_gateway_and_no_reference_is_reused() {
    let redis = initialised_redis();
    let store = redis_store(&redis);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis).await;
    let kept = gw
        .pay(payment_request("aof-1", "90101", "0000000000", 1_000))
        .await;
    // Every write so far is on disk (appendfsync always): the cut keeps exactly these.
    let keep = redis.aof_len();
    let mut lost = Vec::new();
    for n in 2..4 {
        lost.push(
            gw.pay(payment_request(
                &format!("aof-{n}"),
                "90101",
                "0000000000",
                1_000,
            ))
            .await,
        );
    }
    // A host crash that takes the AOF's last writes with it; the identity survives.
    redis.kill();
    redis.cut_aof_to(keep);
    redis.restart();
    assert!(store
        .get(&keys::payment(&lost[1].payment_id))
        .await
        .unwrap()
        .is_none());
    assert!(store.get(&keys::identity()).await.unwrap().is_some());
    wait_for_payment_health(&gw, ServingStatus::Serving).await;

    // The next payment draws a reference: the counter is behind what this gateway used.
    let mut refused = None;
    for _ in 0..50 {
        match gw
            .payments()
            .create_payment(payment_request("aof-4", "90101", "0000000000", 1_000))
            .await
        {
            Err(s) if s.message().contains("store unavailable") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => {
                refused = Some(other);
                break;
            }
        }
    }
    let status = refused.expect("store reachable").unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    assert!(identity_is_marked_lost(store.as_ref()).await);
    assert_eq!(sims.calls.get("interswitch", "pay"), 3);
    // A lost payment's retry: refused while the store is lost, not paid again.
    let status = gw
        .payments()
        .create_payment(payment_request("aof-3", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");

    store_command(&redis, "recover");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    // After the recovery, its retry on this replica finds it put back from the replica's copy.
    let replayed = gw
        .pay(payment_request("aof-3", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(replayed.provider_reference, lost[1].provider_reference);
    let fresh = gw
        .pay(payment_request("aof-5", "90101", "0000000000", 1_000))
        .await;
    let used = [&kept, &lost[0], &lost[1]]
        .iter()
        .map(|p| reference_number(p))
        .max()
        .unwrap();
    assert!(reference_number(&fresh) > used);
    assert_eq!(sims.calls.get("interswitch", "pay"), 4, "only aof-5 is new");
    gw.stop().await;
}

//! Faults with a real redis-server: Redis killed mid-run (payments UNAVAILABLE with no provider
//! call, reads still served, payment health NOT_SERVING; all of it recovering by itself when
//! Redis is back with its data), Redis restarted empty (data lost: STORE_DATA_LOST, no second
//! payment, until `billpay-gateway store recover`), the journal surviving a gateway restart, and
//! background reconciliation of a PENDING payment over real HTTP.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{identity, redis::RedisStore, Store},
};
use common::{redis::RedisServer, *};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

fn redis_store(redis: &RedisServer) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::new(
            &redis.url(),
            Duration::from_millis(500),
            Duration::from_millis(500),
        )
        .unwrap(),
    )
}

/// The explicit first-run step of a new Redis store (`billpay-gateway store init`).
async fn init_store(redis: &RedisServer) {
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    identity::init(redis_store(redis).as_ref(), now, &Default::default())
        .await
        .expect("store initialised");
}

/// A gateway over an initialised Redis store.
async fn gateway(sims: &Simulators, redis: &RedisServer, settings: PaymentSettings) -> TestGateway {
    init_store(redis).await;
    gateway_uninitialised(sims, redis, settings).await
}

async fn gateway_uninitialised(
    sims: &Simulators,
    redis: &RedisServer,
    settings: PaymentSettings,
) -> TestGateway {
    TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        redis_store(redis),
        settings,
    )
    .await
}

async fn simulators() -> Simulators {
    Simulators::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap()
}

#[tokio::test]
async fn redis_down_stops_payments_not_reads_and_recovers() {
    // A Redis that keeps what it acknowledged: an outage, not a data loss.
    let redis = RedisServer::start_persistent();
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
    let p = gw
        .pay(payment_request("redis-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    assert_eq!(payment_health(&gw).await, ServingStatus::Serving as i32);

    redis.kill();
    let status = gw
        .payments()
        .create_payment(payment_request("redis-2", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_UNAVAILABLE");
    assert!(retry_delay(&status).is_some());
    assert_eq!(
        sims.calls.get("interswitch", "pay"),
        1,
        "no payment without an idempotency record"
    );
    // Reads are served, uncached.
    let billers = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .expect("reads work without Redis")
        .into_inner()
        .billers;
    assert_eq!(billers.len(), 2);
    gw.customers()
        .validate_customer(pb::ValidateCustomerRequest {
            provider: pb::Provider::Interswitch as i32,
            product_id: "90101".into(),
            customer_id: "0000000001".into(),
            ..Default::default()
        })
        .await
        .expect("validation works without Redis");
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    let overall = HealthClient::new(gw.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        overall,
        ServingStatus::Serving as i32,
        "reads keep the replica in service"
    );

    redis.restart();
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let mut recovered = None;
    for _ in 0..50 {
        match gw
            .payments()
            .create_payment(payment_request("redis-3", "90101", "0000000000", 1_000))
            .await
        {
            Ok(r) => {
                recovered = r.into_inner().payment;
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(
        state(&recovered.expect("payments work again")),
        pb::PaymentState::Succeeded
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    gw.stop().await;
}

#[tokio::test]
async fn the_journal_survives_a_gateway_restart() {
    let redis = RedisServer::start();
    let sims = simulators().await;
    let first = gateway(&sims, &redis, PaymentSettings::default()).await;
    let paid = first
        .pay(payment_request("restart-1", "90101", "0000000000", 1_000))
        .await;
    first.stop().await;

    let second = gateway(&sims, &redis, PaymentSettings::default()).await;
    let again = second.get(&paid.payment_id).await;
    assert_eq!(again, paid);
    // And the idempotency record too: a retry replays, no second payment.
    let replay = second
        .pay(payment_request("restart-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(replay, paid);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    // The operators' journal index is in Redis too (unbounded time range).
    let (listed, next) = second
        .gateway
        .list_journal(
            &billpay_gateway::gateway::operator::JournalFilter::default(),
            0,
            10,
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].payment_id, paid.payment_id);
    assert_eq!(next, None);
    second.stop().await;
}

#[tokio::test]
async fn reconciliation_resolves_a_pending_payment_in_the_background() {
    let redis = RedisServer::start();
    let sims = simulators().await;
    let settings = PaymentSettings {
        reconcile_backoff_ms: vec![300, 300, 300],
        reconcile_poll_ms: 100,
        ..PaymentSettings::default()
    };
    let gw = gateway(&sims, &redis, settings).await;
    // The provider took the money and answered 502: PENDING until a status query says more.
    let p = gw
        .pay(payment_request("reconcile-1", "90101", "4444444444", 1_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    let mut record = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Read the journal directly: GetPayment would itself ask the provider.
        let r = gw
            .gateway
            .load_payment(&p.payment_id)
            .await
            .unwrap()
            .unwrap();
        if r.state != billpay_gateway::domain::PaymentState::Pending {
            record = Some(r);
            break;
        }
    }
    let record = record.expect("reconciliation resolved the payment");
    assert_eq!(
        record.state,
        billpay_gateway::domain::PaymentState::Succeeded
    );
    assert_eq!(record.status_checks, 1);
    assert_eq!(sims.calls.get("interswitch", "query_payment"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_started_without_redis_is_not_ready_for_payments_until_it_is_back() {
    let redis = RedisServer::start_persistent();
    init_store(&redis).await;
    redis.kill();
    let sims = simulators().await;
    let gw = gateway_uninitialised(&sims, &redis, PaymentSettings::default()).await;
    // Not ready from the first check on: no window where payments say SERVING.
    assert_eq!(payment_health(&gw).await, ServingStatus::NotServing as i32);
    let status = gw
        .payments()
        .create_payment(payment_request("cold-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_UNAVAILABLE");
    redis.restart();
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let p = gw
        .pay(payment_request("cold-2", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

/// The numeric value of an Interswitch reference (prefix and sequence digits).
fn reference_number(p: &pb::Payment) -> u64 {
    p.provider_reference.parse().expect("numeric reference")
}

#[tokio::test]
async fn redis_restarted_empty_stops_payments_until_an_operator_recovers_it() {
    let logs = Capture::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let redis = RedisServer::start();
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
    let first = gw
        .pay(payment_request("lost-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&first), pb::PaymentState::Succeeded);
    let second = gw
        .pay(payment_request("lost-2", "90101", "0000000000", 2_000))
        .await;
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);

    // Redis restarts without its data: every record, the counters and the identity are gone.
    redis.kill();
    redis.restart_empty();
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;

    // The client retries its request: the store no longer knows it, and must not pay it again.
    let status = gw
        .payments()
        .create_payment(payment_request("lost-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    let fresh = gw
        .payments()
        .create_payment(payment_request("lost-3", "90101", "0000000000", 3_000))
        .await
        .unwrap_err();
    assert_error(&fresh, Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(sims.calls.get("interswitch", "pay"), 2, "no second payment");
    // Reads keep working.
    gw.catalog()
        .list_billers(pb::ListBillersRequest {
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .expect("reads work while the store has lost data");
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let lost: Vec<_> = text
        .lines()
        .filter(|l| l.contains("the store has no identity"))
        .collect();
    assert_eq!(lost.len(), 1, "logged once per loss:\n{text}");
    assert!(lost[0].contains("ERROR"), "{}", lost[0]);
    // Still refused a while later: it does not heal by itself.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(payment_health(&gw).await, ServingStatus::NotServing as i32);

    // The operator's recovery command, as shipped.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", "recover"])
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store recover");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {output:?}");
    assert!(
        stdout.contains("reference counter interswitch:"),
        "{stdout}"
    );
    assert!(stdout.contains("store identity:"), "{stdout}");

    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let after = gw
        .pay(payment_request("lost-4", "90101", "0000000000", 4_000))
        .await;
    assert_eq!(state(&after), pb::PaymentState::Succeeded);
    assert!(
        reference_number(&after) > reference_number(&first).max(reference_number(&second)),
        "new reference {} must be above every earlier one ({}, {})",
        after.provider_reference,
        first.provider_reference,
        second.provider_reference
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_new_redis_store_takes_no_payment_before_store_init() {
    let redis = RedisServer::start();
    let sims = simulators().await;
    let gw = gateway_uninitialised(&sims, &redis, PaymentSettings::default()).await;
    assert_eq!(payment_health(&gw).await, ServingStatus::NotServing as i32);
    let status = gw
        .payments()
        .create_payment(payment_request("new-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", "init"])
        .env("REDIS_URL", redis.url())
        .output()
        .expect("run billpay-gateway store init");
    assert!(output.status.success(), "{output:?}");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let p = gw
        .pay(payment_request("new-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    // A second init changes nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", "init"])
        .env("REDIS_URL", redis.url())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("already initialised"));
    gw.stop().await;
}

/// Log lines written while it is the thread's subscriber (tests run on one thread).
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn an_evicting_redis_is_refused_for_payments() {
    let logs = Capture::default();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish(),
    );
    let redis = RedisServer::start_with_args(&["--maxmemory-policy", "allkeys-lru"]);
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
    assert_eq!(payment_health(&gw).await, ServingStatus::NotServing as i32);
    let status = gw
        .payments()
        .create_payment(payment_request("evict-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_POSTURE_REFUSED");
    assert_eq!(error_meta(&status, "posture").as_deref(), Some("evicting"));
    assert!(
        status.message().contains("maxmemory-policy is allkeys-lru"),
        "{}",
        status.message()
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 0);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("store refused for payments"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{text}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("maxmemory-policy is allkeys-lru"), "{line}");
    gw.stop().await;
}

#[tokio::test]
async fn a_counter_set_back_is_a_store_loss_and_never_reuses_a_reference() {
    let redis = RedisServer::start();
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
    let old = gw
        .pay(payment_request("back-1", "90101", "0000000000", 1_000))
        .await;
    assert_eq!(state(&old), pb::PaymentState::Succeeded);
    // The counter goes back below the earlier payment's sequence (a store rolled back: the
    // AOF's tail cut), while the identity stays.
    let sequence = reference_number(&old) % 100_000_000;
    redis_store(&redis)
        .set(
            &billpay_gateway::store::keys::reference_sequence("interswitch"),
            (sequence - 1).to_string().as_bytes(),
            None,
        )
        .await
        .unwrap();
    let status = gw
        .payments()
        .create_payment(payment_request("back-2", "90101", "0000000000", 2_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_DATA_LOST");
    assert_eq!(sims.calls.get("interswitch", "pay"), 1, "nothing sent");
    // The alarm stops every replica: the identity is marked lost in the store.
    wait_for_payment_health(&gw, ServingStatus::NotServing).await;
    let marked = redis_store(&redis)
        .get(&billpay_gateway::store::keys::identity())
        .await
        .unwrap()
        .unwrap();
    assert!(marked.starts_with(b"lost:"), "{marked:?}");
    // The earlier payment is untouched.
    assert_eq!(
        state(&gw.get(&old.payment_id).await),
        pb::PaymentState::Succeeded
    );
    // After `store recover`, references start above every one used.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_billpay-gateway"))
        .env_remove("DATABASE_URL")
        .args(["store", "recover"])
        .env("REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run billpay-gateway store recover");
    assert!(output.status.success(), "{output:?}");
    wait_for_payment_health(&gw, ServingStatus::Serving).await;
    let new = gw
        .pay(payment_request("back-3", "90101", "0000000000", 2_000))
        .await;
    assert_eq!(state(&new), pb::PaymentState::Succeeded);
    assert!(reference_number(&new) > reference_number(&old));
    gw.stop().await;
}

#[tokio::test]
async fn a_claim_no_replica_acknowledged_sends_nothing() {
    // min_replica_acks = 1 on a Redis without replicas: WAIT answers 0.
    let redis = RedisServer::start();
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
    gw.gateway
        .set_store_policy(billpay_gateway::gateway::StorePolicy {
            min_replica_acks: 1,
            replica_ack_timeout: Duration::from_millis(100),
            ..Default::default()
        });
    let status = gw
        .payments()
        .create_payment(payment_request("wait-1", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "STORE_UNAVAILABLE");
    assert!(
        status.message().contains("acknowledged by 0 of 1"),
        "{}",
        status.message()
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 0, "nothing sent");
    gw.stop().await;
}

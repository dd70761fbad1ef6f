//! Faults with a real redis-server: Redis killed mid-run (payments UNAVAILABLE with no provider
//! call, reads still served, payment health NOT_SERVING; all of it recovering by itself when
//! Redis is back), the journal surviving a gateway restart, and background reconciliation of a
//! PENDING payment over real HTTP.

mod common;

use std::{sync::Arc, time::Duration};

use billpay_gateway::{
    gateway::PaymentSettings,
    pb,
    sandbox::{self, Simulators},
    store::{redis::RedisStore, Store},
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

async fn gateway(sims: &Simulators, redis: &RedisServer, settings: PaymentSettings) -> TestGateway {
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

async fn payment_health(gw: &TestGateway) -> i32 {
    HealthClient::new(gw.channel.clone())
        .check(HealthCheckRequest {
            service: "billpay.v1.PaymentService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

async fn wait_for_payment_health(gw: &TestGateway, want: ServingStatus) {
    for _ in 0..100 {
        if payment_health(gw).await == want as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("payment service health never became {want:?}");
}

#[tokio::test]
async fn redis_down_stops_payments_not_reads_and_recovers() {
    let redis = RedisServer::start();
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
    let redis = RedisServer::start();
    redis.kill();
    let sims = simulators().await;
    let gw = gateway(&sims, &redis, PaymentSettings::default()).await;
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

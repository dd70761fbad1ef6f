//! The sandbox end to end: real tonic client -> real gateway -> real HTTP -> the in-process
//! Interswitch simulator, which verifies signatures and applies amount rules. Covers the flows
//! the README walkthrough shows and the simulator's documented fault customers.

mod common;

use std::time::Duration;

use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    providers::interswitch::auth::SignatureMethod,
    sandbox::{self, Simulators},
};
use common::*;
use tonic::{Code, Request};

async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    (sims, gw)
}

#[tokio::test]
async fn walkthrough_flow_against_the_simulator() {
    let (sims, gw) = sandbox_gateway().await;
    let isw = pb::Provider::Interswitch as i32;
    let billers = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: isw,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(billers.len(), 2);
    let products = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: isw,
            biller_id: "901".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products[0].product_id, "90101");
    let v = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            provider: isw,
            product_id: "90101".into(),
            customer_id: "0000000005".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v.amount_rule.unwrap().kind,
        pb::AmountRuleKind::Exact as i32
    );

    let p = gw
        .pay(payment_request(
            "sandbox-ok",
            "90101",
            "0000000005",
            100_000,
        ))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    assert_eq!(p.fulfilment_token, "1234-5678-9012-3456-7890");
    assert_eq!(gw.get(&p.payment_id).await, p);

    // The simulator's own rule check agrees with the gateway's: exact means exact.
    let status = gw
        .payments()
        .create_payment(payment_request(
            "sandbox-off-by-one",
            "90101",
            "0000000005",
            100_001,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::InvalidArgument, "AMOUNT_RULE_VIOLATED");

    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    assert_eq!(sims.calls.get("interswitch", "rejected_auth"), 0);
    // The counts endpoint reports the same.
    let counts: serde_json::Value = reqwest::get(format!("{}/_sandbox/calls", sims.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["interswitch"]["pay"], 1);
    assert_eq!(counts["interswitch"]["validate_customer"], 3);
    gw.stop().await;
}

#[tokio::test]
async fn the_simulator_refuses_a_bad_signature() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    // Right client id, wrong secret: the signature cannot match.
    let mut config = interswitch_config(
        &format!("{}/interswitch", sims.base_url()),
        SignatureMethod::Sha1,
        5_000,
    );
    config.client_id = sandbox::interswitch::CLIENT_ID.into();
    config.terminal_id = sandbox::interswitch::TERMINAL_ID.into();
    let gw = TestGateway::start(ProvidersConfig {
        interswitch: Some(config),
        ..Default::default()
    })
    .await;
    let status = gw
        .catalog()
        .list_categories(pb::ListCategoriesRequest {
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    // A payment is refused at the customer validation: nothing is paid.
    let status = gw
        .payments()
        .create_payment(payment_request("bad-sig-pay", "90101", "0000000000", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    assert_eq!(sims.calls.get("interswitch", "rejected_auth"), 2);
    assert_eq!(sims.calls.get("interswitch", "pay"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn pending_payment_is_resolved_by_get_payment() {
    let (sims, gw) = sandbox_gateway().await;
    let p = gw
        .pay(payment_request(
            "sandbox-pending",
            "90101",
            "1111111111",
            5_000,
        ))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    let later = gw.get(&p.payment_id).await;
    assert_eq!(state(&later), pb::PaymentState::Succeeded);
    assert_eq!(later.status_checks, 1);
    assert_eq!(sims.calls.get("interswitch", "query_payment"), 1);

    let stuck = gw
        .pay(payment_request(
            "sandbox-stuck",
            "90101",
            "1111111112",
            5_000,
        ))
        .await;
    assert_eq!(
        state(&gw.get(&stuck.payment_id).await),
        pb::PaymentState::Pending
    );
    gw.stop().await;
}

#[tokio::test]
async fn declined_and_bad_gateway_payments() {
    let (sims, gw) = sandbox_gateway().await;
    let declined = gw
        .pay(payment_request(
            "sandbox-declined",
            "90101",
            "2222222222",
            5_000,
        ))
        .await;
    assert_eq!(state(&declined), pb::PaymentState::Failed);
    assert_eq!(declined.provider_code, "70120");

    // The provider took the money and answered 502: PENDING, never FAILED; the query finds it.
    let p = gw
        .pay(payment_request("sandbox-502", "90101", "4444444444", 5_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    assert!(
        p.provider_message.contains("outcome unknown"),
        "{}",
        p.provider_message
    );
    assert_eq!(
        state(&gw.get(&p.payment_id).await),
        pb::PaymentState::Succeeded
    );
    assert_eq!(sims.calls.get("interswitch", "pay"), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_short_caller_deadline_gets_pending_and_the_payment_completes() {
    let (sims, gw) = sandbox_gateway().await;
    let mut payments = gw.payments();
    let mut request = Request::new(payment_request(
        "sandbox-slow",
        "90101",
        "3333333333",
        5_000,
    ));
    request.set_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let p = payments
        .create_payment(request)
        .await
        .expect("answered before the deadline")
        .into_inner()
        .payment
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(state(&p), pb::PaymentState::Pending);

    // A retry while the call is still running is told to wait, with RetryInfo.
    let status = payments
        .create_payment(payment_request(
            "sandbox-slow",
            "90101",
            "3333333333",
            5_000,
        ))
        .await
        .unwrap_err();
    assert_error(&status, Code::Aborted, "REQUEST_IN_FLIGHT");
    assert!(retry_delay(&status).is_some());

    // The detached call finishes and records the outcome; no status query is needed.
    let mut last = p.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = gw.get(&p.payment_id).await;
        if state(&last) != pb::PaymentState::Pending {
            break;
        }
    }
    assert_eq!(state(&last), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    // The retry with the same key now replays the outcome.
    let replay = payments
        .create_payment(payment_request(
            "sandbox-slow",
            "90101",
            "3333333333",
            5_000,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&replay), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

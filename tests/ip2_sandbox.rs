//! The IP2 sandbox end to end: real tonic client -> real gateway -> real HTTP -> the in-process
//! IP2 simulator, which verifies ApiAuth and Content-MD5 and keeps a balance. Covers the
//! README walkthrough's journey (balance, debit, balance lowered by exactly the amount, the
//! debit listed, GetPayment SUCCEEDED, a debit beyond the balance FAILED with IP2's message)
//! and the simulator's documented MSISDNs.

mod common;

use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    sandbox::{self, ip2, Simulators},
};
use common::*;
use tonic::Code;

const IP2: i32 = pb::Provider::IntelworldIp2 as i32;

async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    (sims, gw)
}

async fn balance(gw: &TestGateway) -> i64 {
    gw.accounts()
        .get_balance(pb::GetBalanceRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .balances[0]
        .available
        .as_ref()
        .unwrap()
        .minor_units
}

fn debit(request_id: &str, msisdn: &str, shillings: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: IP2,
        customer_id: msisdn.into(),
        amount: ugx(shillings),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            pb::Ip2PaymentOptions {
                payment_method_id: "MTNMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), msisdn.to_owned())].into(),
                memo: "Mobile money top-up".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

#[allow(deprecated)] // ListPayments, the old name of ListProviderTransactions, keeps working.
async fn list_payments(gw: &TestGateway, end_seconds: Option<i64>) -> Vec<pb::ProviderTransaction> {
    gw.payments()
        .list_payments(pb::ListPaymentsRequest {
            provider: IP2,
            end_time: end_seconds.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions
}

#[tokio::test]
async fn the_walkthrough_journey() {
    let (sims, gw) = sandbox_gateway().await;
    let start = balance(&gw).await;
    assert_eq!(start, ip2::STARTING_BALANCE_UGX);

    let paid = gw.pay(debit("ip2-journey-1", "256700000001", 25_000)).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    assert_eq!(
        paid.fee,
        ugx(100),
        "IP2's fee is reported, not added to the amount"
    );
    assert_eq!(balance(&gw).await, start - 25_000);

    let listed = list_payments(&gw, None).await;
    let ours = listed
        .iter()
        .find(|t| t.provider_reference == paid.provider_reference)
        .expect("the debit is listed");
    assert_eq!(ours.state, pb::PaymentState::Succeeded as i32);
    assert_eq!(ours.amount, ugx(25_000));
    assert_eq!(ours.kind, pb::PaymentKind::Bill as i32);
    assert_eq!(ours.account_id, ip2::ACCOUNT_ID);
    assert_eq!(ours.payment_method_id, "MTNMM");
    assert_eq!(ours.fee, ugx(100));
    assert_eq!(
        state(&gw.get(&paid.payment_id).await),
        pb::PaymentState::Succeeded
    );

    // Beyond the balance (but within the account's limits): IP2 refuses it; the payment is
    // FAILED with IP2's message and no money moves.
    let too_much = gw
        .pay(debit("ip2-journey-2", "256700000001", 2_000_000))
        .await;
    assert_eq!(state(&too_much), pb::PaymentState::Failed);
    assert_eq!(too_much.provider_code, "2");
    assert!(
        too_much
            .provider_message
            .starts_with("Insufficient balance"),
        "{}",
        too_much.provider_message
    );
    assert_eq!(balance(&gw).await, start - 25_000);

    // A credit raises the balance.
    let collected = gw
        .payments()
        .create_collection(pb::CreateCollectionRequest {
            request_id: "ip2-journey-3".into(),
            provider: IP2,
            payer_id: "256700000001".into(),
            amount: ugx(10_000),
            ip2: Some(pb::Ip2PaymentOptions {
                payment_method_id: "AIRTELMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), "256700000001".to_owned())].into(),
                memo: "Invoice 7".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&collected), pb::PaymentState::Succeeded);
    assert_eq!(balance(&gw).await, start - 25_000 + 10_000);

    assert_eq!(sims.calls.get("intelworld_ip2", "debit"), 2);
    assert_eq!(sims.calls.get("intelworld_ip2", "credit"), 1);
    assert_eq!(sims.calls.get("intelworld_ip2", "rejected_auth"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn documented_msisdns_decline_and_settle_later() {
    let (sims, gw) = sandbox_gateway().await;
    let start = balance(&gw).await;

    let declined = gw.pay(debit("ip2-decline", "256700000002", 5_000)).await;
    assert_eq!(state(&declined), pb::PaymentState::Failed);
    assert_eq!(declined.provider_message, "Recipient account barred");
    assert_eq!(balance(&gw).await, start);

    let pending = gw.pay(debit("ip2-later", "256700000003", 5_000)).await;
    assert_eq!(state(&pending), pb::PaymentState::Pending);
    let settled = gw.get(&pending.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    assert_eq!(balance(&gw).await, start - 5_000);

    // The date filter: nothing before 2001.
    assert!(list_payments(&gw, Some(1_000_000_000)).await.is_empty());
    assert_eq!(list_payments(&gw, None).await.len(), 2);
    assert_eq!(sims.calls.get("intelworld_ip2", "rejected_auth"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn the_simulator_refuses_a_wrong_signature() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let mut config = ip2::client_config(&format!("{}/intelworld_ip2", sims.base_url()));
    config.api_password = "not-the-sandbox-password".to_owned().into();
    let gw = TestGateway::start(ProvidersConfig {
        intelworld_ip2: Some(config),
        ..ProvidersConfig::default()
    })
    .await;
    let status = gw
        .catalog()
        .list_payment_methods(pb::ListPaymentMethodsRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(sims.calls.get("intelworld_ip2", "rejected_auth"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_debit_answers_pending_and_settles_once() {
    let (sims, gw) = sandbox_gateway().await;
    let start = balance(&gw).await;
    let mut request = tonic::Request::new(debit("ip2-slow", "256700000004", 5_000));
    request.set_timeout(std::time::Duration::from_secs(1));
    let p = gw
        .payments()
        .create_payment(request)
        .await
        .expect("answered before the deadline")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&p), pb::PaymentState::Pending);
    // The detached call finishes and records IP2's answer.
    let mut last = p.clone();
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = gw.get(&p.payment_id).await;
        if state(&last) != pb::PaymentState::Pending {
            break;
        }
    }
    assert_eq!(state(&last), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("intelworld_ip2", "debit"), 1);
    assert_eq!(balance(&gw).await, start - 5_000);
    gw.stop().await;
}

//! The Switch sandbox end to end: real tonic client -> real gateway -> real HTTP -> the
//! in-process Switch simulator, which checks SWI-CID, the session token and the SWI-CS
//! checksum. Covers the README walkthrough's journey (categories -> vendors -> plans -> pay with
//! PIN and save -> saved bills -> delete) and the simulator's documented faults.

mod common;

use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    sandbox::{self, Simulators},
};
use common::*;
use secrecy::SecretString;
use tonic::Code;

const SWITCH: i32 = pb::Provider::Switch as i32;

async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    (sims, gw)
}

fn access_plan(
    request_id: &str,
    customer: &str,
    pin: &str,
    save: bool,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: SWITCH,
        biller_id: "104".into(),
        product_id: "28".into(),
        customer_id: customer.into(),
        amount: ngn(180_000),
        expected_total: ngn(188_400),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
            pb::SwitchPaymentOptions {
                pin: pin.into(),
                save_information: save,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

async fn saved_bills(gw: &TestGateway) -> Vec<pb::SavedBill> {
    gw.payments()
        .list_saved_bills(pb::ListSavedBillsRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .saved_bills
}

#[tokio::test]
async fn walkthrough_journey_against_the_simulator() {
    let (sims, gw) = sandbox_gateway().await;
    let categories = gw
        .catalog()
        .list_categories(pb::ListCategoriesRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .categories;
    assert_eq!(categories.len(), 6);
    assert_eq!(categories[0].name, "Cable TV Bills");
    let vendors = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: SWITCH,
            category_id: "2".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(vendors.len(), 1);
    assert_eq!(
        (vendors[0].biller_id.as_str(), vendors[0].name.as_str()),
        ("104", "DStv")
    );
    let plans = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: SWITCH,
            biller_id: "104".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    let access = plans.iter().find(|p| p.product_id == "28").unwrap();
    assert_eq!(access.name, "Access");
    assert_eq!(access.amount, ngn(180_000));
    assert_eq!(access.total, ngn(188_400));

    let paid = gw
        .pay(access_plan(
            "sw-sandbox-ok",
            "7012345678",
            sandbox::switch::PIN,
            true,
        ))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    assert_eq!(paid.total, ngn(188_400));
    assert_eq!(paid.provider_message, "Bill payment successful");

    let saved = saved_bills(&gw).await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].customer_id, "7012345678");
    assert_eq!(saved[0].biller_name, "DStv");
    assert_eq!(saved[0].product_id, "28");
    assert!(!saved[0].saved_bill_id.is_empty());
    gw.payments()
        .delete_saved_bill(pb::DeleteSavedBillRequest {
            request_id: "sw-sandbox-delete".into(),
            provider: SWITCH,
            saved_bill_id: saved[0].saved_bill_id.clone(),
        })
        .await
        .unwrap();
    assert!(saved_bills(&gw).await.is_empty());
    assert_eq!(sims.calls.get("switch", "login"), 1);
    assert_eq!(sims.calls.get("switch", "pay"), 1);
    assert_eq!(sims.calls.get("switch", "rejected_auth"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_pin_decline_and_money_taken_then_502() {
    let (sims, gw) = sandbox_gateway().await;
    let wrong = gw
        .pay(access_plan("sw-sandbox-pin", "7012345678", "9999", false))
        .await;
    assert_eq!(state(&wrong), pb::PaymentState::Failed);
    assert_eq!(wrong.provider_code, "400");
    assert_eq!(wrong.provider_message, sandbox::switch::PIN_MESSAGE);

    let declined = gw
        .pay(access_plan(
            "sw-sandbox-declined",
            "2222222222",
            sandbox::switch::PIN,
            false,
        ))
        .await;
    assert_eq!(state(&declined), pb::PaymentState::Failed);
    assert_eq!(declined.provider_message, "Transaction declined by vendor");

    // Switch took the money (and saved the bill) but answered 502: PENDING, never FAILED, and
    // never sent again, neither by GetPayment nor by a retry with the same request_id.
    let lost = access_plan("sw-sandbox-502", "4444444444", sandbox::switch::PIN, true);
    let p = gw.pay(lost.clone()).await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    assert_eq!(
        state(&gw.get(&p.payment_id).await),
        pb::PaymentState::Pending
    );
    assert_eq!(gw.pay(lost).await.payment_id, p.payment_id);
    assert_eq!(sims.calls.get("switch", "pay"), 3);
    assert_eq!(saved_bills(&gw).await.len(), 1, "the money moved");
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_renewed_and_a_bad_checksum_is_refused() {
    let (sims, gw) = sandbox_gateway().await;
    let list = |gw: &TestGateway| {
        let mut catalog = gw.catalog();
        async move {
            catalog
                .list_billers(pb::ListBillersRequest {
                    provider: SWITCH,
                    ..Default::default()
                })
                .await
        }
    };
    list(&gw).await.unwrap();
    reqwest::Client::new()
        .post(format!(
            "{}/switch/_sandbox/expire_sessions",
            sims.base_url()
        ))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // A call the cache does not answer: the 401 brings a new login and one retry.
    saved_bills(&gw).await;
    assert_eq!(sims.calls.get("switch", "login"), 2);
    assert_eq!(sims.calls.get("switch", "rejected_auth"), 1);
    gw.stop().await;

    // The wrong checksum key: the simulator refuses the login; nothing else is tried.
    let mut config = sandbox::switch::client_config(&format!("{}/switch", sims.base_url()));
    config.checksum_key = Some(SecretString::from("not-the-key".to_owned()));
    let gw = TestGateway::start(ProvidersConfig {
        switch: Some(config),
        ..Default::default()
    })
    .await;
    let status = list(&gw).await.unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    assert_eq!(sims.calls.get("switch", "rejected_auth"), 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_payment_answers_pending_in_time_and_completes_detached() {
    let (sims, gw) = sandbox_gateway().await;
    let mut request = tonic::Request::new(access_plan(
        "sw-sandbox-slow",
        "3333333333",
        sandbox::switch::PIN,
        false,
    ));
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
    let mut last = p.clone();
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        last = gw.get(&p.payment_id).await;
        if state(&last) != pb::PaymentState::Pending {
            break;
        }
    }
    assert_eq!(state(&last), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("switch", "pay"), 1);
    gw.stop().await;
}

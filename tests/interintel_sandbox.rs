//! The InterIntel simulator, end to end: real tonic client -> real gateway -> real HTTP -> the
//! in-process simulator, through its documented accounts (success, pending then success,
//! pending forever, decline, insufficient float, slow, scheduled) with the float lowered by
//! exactly what was accepted; and the simulator's own OAuth2 (tokens issued, refreshed once,
//! expired and unknown tokens refused with 401, exact paths) checked directly over HTTP.

mod common;

use std::time::Duration;

use billpay_gateway::{
    pb::{self, account_service_client::AccountServiceClient},
    sandbox::{self, interintel as sim, Simulators},
};
use common::*;
use serde_json::{json, Value};
use tonic::Code;

async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    (sims, gw)
}

fn kes(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "KES".into(),
        minor_units,
    })
}

fn pay_request(request_id: &str, account: &str, cents: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interintel as i32,
        biller_id: "kplc".into(),
        product_id: "101".into(),
        customer_id: account.into(),
        amount: kes(cents),
        ..pb::CreatePaymentRequest::default()
    }
}

async fn float(gw: &TestGateway, product: &str) -> i64 {
    AccountServiceClient::new(gw.channel.clone())
        .get_balance(pb::GetBalanceRequest {
            provider: pb::Provider::Interintel as i32,
            product_id: product.into(),
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

#[tokio::test]
async fn documented_accounts_and_the_float() {
    let (sims, gw) = sandbox_gateway().await;
    assert_eq!(float(&gw, "101").await, sim::INITIAL_FLOAT_CENTS);

    let ok = gw.pay(pay_request("sb-ok", "1000000001", 150_000)).await;
    assert_eq!(state(&ok), pb::PaymentState::Succeeded);
    assert_eq!(ok.provider_code, "00");

    let later = gw.pay(pay_request("sb-later", "1000000002", 20_000)).await;
    assert_eq!(state(&later), pb::PaymentState::Pending);
    assert_eq!(later.provider_code, "09");
    let later = gw.get(&later.payment_id).await;
    assert_eq!(state(&later), pb::PaymentState::Succeeded);

    let never = gw.pay(pay_request("sb-never", "1000000003", 30_000)).await;
    assert_eq!(state(&never), pb::PaymentState::Pending);
    assert_eq!(
        state(&gw.get(&never.payment_id).await),
        pb::PaymentState::Pending
    );

    let declined = gw
        .pay(pay_request("sb-decline", "1000000004", 40_000))
        .await;
    assert_eq!(state(&declined), pb::PaymentState::Failed);
    assert_eq!(declined.provider_code, "30");

    let no_float = gw
        .pay(pay_request("sb-nofloat", "1000000005", 50_000))
        .await;
    assert_eq!(state(&no_float), pb::PaymentState::Failed);
    assert_eq!(no_float.provider_code, "51");

    let too_big = gw
        .pay(pay_request(
            "sb-toobig",
            "1000000001",
            sim::INITIAL_FLOAT_CENTS,
        ))
        .await;
    assert_eq!(state(&too_big), pb::PaymentState::Failed);
    assert_eq!(too_big.provider_code, "51");

    let slow = gw.pay(pay_request("sb-slow", "1000000006", 60_000)).await;
    assert_eq!(state(&slow), pb::PaymentState::Succeeded);

    // A scheduled send a day from now: SCHEDULED, and still so when asked.
    let at_ms = billpay_gateway::gateway::Clock::default().now_ms() + 86_400_000;
    let mut request = pay_request("sb-scheduled", "1000000001", 70_000);
    request.provider_options = Some(pb::create_payment_request::ProviderOptions::Interintel(
        pb::InterIntelPaymentOptions {
            scheduled_send_time: Some(prost_types::Timestamp {
                seconds: at_ms / 1000,
                nanos: 0,
            }),
        },
    ));
    let scheduled = gw.pay(request).await;
    assert_eq!(state(&scheduled), pb::PaymentState::Scheduled);
    assert_eq!(
        state(&gw.get(&scheduled.payment_id).await),
        pb::PaymentState::Scheduled
    );

    // Accepted payments lowered the float by exactly their amounts; refusals did not.
    let accepted = 150_000 + 20_000 + 30_000 + 60_000 + 70_000;
    assert_eq!(float(&gw, "101").await, sim::INITIAL_FLOAT_CENTS - accepted);
    assert_eq!(float(&gw, "201").await, sim::INITIAL_FLOAT_CENTS);

    // bill_query: a known account answers 00, the declined one is refused.
    let ii = pb::Provider::Interintel as i32;
    let lookup = gw
        .customers()
        .lookup_bill(pb::LookupBillRequest {
            provider: ii,
            product_id: "101".into(),
            customer_id: "1000000001".into(),
            amount: kes(100_000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lookup.provider_code, "00");
    let refused = gw
        .customers()
        .lookup_bill(pb::LookupBillRequest {
            provider: ii,
            product_id: "101".into(),
            customer_id: "1000000004".into(),
            amount: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // One token for the whole session.
    assert_eq!(sims.calls.get("interintel", "token"), 1);
    assert_eq!(sims.calls.get("interintel", "rejected_auth"), 0);
    gw.stop().await;
}

async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn simulator_tokens_expire_refresh_once_and_paths_are_exact() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let api = format!("{}/interintel/api/v1", sims.base_url());
    let token_url = format!("{api}/token");
    let float_url = format!("{api}/biller-float/");
    let item = json!({"product_item_id": "101"});
    let password = json!({"client_id": sim::CLIENT_ID, "username": sim::USERNAME,
                          "password": sim::PASSWORD, "grant_type": "password"});

    let (status, _) = post(
        &token_url,
        None,
        json!({"client_id": sim::CLIENT_ID, "username": sim::USERNAME,
               "password": "wrong", "grant_type": "password"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, issued) = post(&token_url, None, password.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(issued["expires_in"], sim::TOKEN_LIFETIME_SECS);
    assert_eq!(issued["token_type"], "Bearer");
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let refresh = issued["refresh_token"].as_str().unwrap().to_owned();

    let (status, answer) = post(&float_url, Some(&access), item.clone()).await;
    assert_eq!(
        (status, answer["response_status"].clone()),
        (200, json!("00"))
    );
    assert_eq!(post(&float_url, Some("made-up"), item.clone()).await.0, 401);
    assert_eq!(post(&float_url, None, item.clone()).await.0, 401);
    // Exact paths only.
    for wrong in [
        "biller-float",
        "biller_float/",
        "bill-payment/",
        "bill_payment",
    ] {
        let (status, _) = post(&format!("{api}/{wrong}"), Some(&access), item.clone()).await;
        assert_eq!(status, 404, "{wrong}");
    }

    // A refresh token works once.
    let grant = json!({"client_id": sim::CLIENT_ID, "grant_type": "refresh_token",
                       "refresh_token": refresh});
    let (status, refreshed) = post(&token_url, None, grant.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(post(&token_url, None, grant).await.0, 400);
    let fresh = refreshed["access_token"].as_str().unwrap().to_owned();

    // Ten hours later both access tokens have expired.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(sim::TOKEN_LIFETIME_SECS + 1)).await;
    tokio::time::resume();
    assert_eq!(post(&float_url, Some(&access), item.clone()).await.0, 401);
    assert_eq!(post(&float_url, Some(&fresh), item.clone()).await.0, 401);

    assert_eq!(sims.calls.get("interintel", "token"), 2);
    assert_eq!(sims.calls.get("interintel", "token_refresh"), 2);
    assert_eq!(sims.calls.get("interintel", "rejected_auth"), 4);
}

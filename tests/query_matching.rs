//! A provider answer settles a payment only when it is about that payment, for the whole
//! amount: real tonic client -> real gateway -> real HTTP to a wiremock Interswitch. A partial
//! approval (90010) and a status answer about another transaction behind our reference both end
//! NEEDS_ATTENTION with the provider's answer on the record, never SUCCEEDED.

mod common;

use billpay_gateway::{config::ProvidersConfig, pb, providers::interswitch::auth::SignatureMethod};
use common::*;
use serde_json::json;
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

const API: &str = "/api/v2/quickteller";

async fn gateway_for(server: &MockServer) -> TestGateway {
    mock_interswitch_items(server).await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/customers/validations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"paymentCode": "90101", "customerId": "0000000001",
                "fullName": "Ada Obi", "responseCode": "90000",
                "amount": "0", "amountType": "0", "amountTypeDescription": "any"}]
        })))
        .mount(server)
        .await;
    TestGateway::start(ProvidersConfig {
        interswitch: Some(interswitch_config(
            &server.uri(),
            SignatureMethod::Sha1,
            5_000,
        )),
        ..ProvidersConfig::default()
    })
    .await
}

async fn mock_advice(server: &MockServer, body: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path(format!("{API}/payments/advices")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_partial_approval_needs_an_operator_with_the_approved_amount() {
    let server = MockServer::start().await;
    mock_advice(
        &server,
        json!({"TransactionReference": "ISW|9", "ResponseCode": "90010",
               "ResponseCodeGrouping": "SUCCESSFUL", "ApprovedAmount": "100000",
               "ResponseDescription": "Approved, partial"}),
    )
    .await;
    let gw = gateway_for(&server).await;
    let p = gw
        .pay(payment_request("partial-1", "90101", "0000000001", 150_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::NeedsAttention);
    assert_eq!(p.provider_code, "90010");
    assert_eq!(p.approved_amount, ngn(100_000));
    assert!(
        p.provider_message.contains("approved only part"),
        "{}",
        p.provider_message
    );
    // Kept as recorded: GetPayment and a replay say the same, and nothing was paid twice.
    let again = gw.get(&p.payment_id).await;
    assert_eq!(state(&again), pb::PaymentState::NeedsAttention);
    assert_eq!(again.approved_amount, ngn(100_000));
    let replay = gw
        .pay(payment_request("partial-1", "90101", "0000000001", 150_000))
        .await;
    assert_eq!(replay.payment_id, p.payment_id);
    let advices = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == format!("{API}/payments/advices"))
        .count();
    assert_eq!(advices, 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_status_answer_about_another_transaction_never_settles_the_payment() {
    let server = MockServer::start().await;
    // 10001 is what Interswitch answers for a reused reference: outcome unknown, query.
    mock_advice(
        &server,
        json!({"ResponseCode": "10001", "ResponseCodeGrouping": "PENDING"}),
    )
    .await;
    let gw = gateway_for(&server).await;
    let p = gw
        .pay(payment_request("other-1", "90101", "0000000001", 150_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    // The query finds the earlier transaction made with the same reference: a successful one,
    // for another customer (same product, same amount).
    Mock::given(method("GET"))
        .and(path(format!("{API}/transactions")))
        .and(query_param(
            "requestreference",
            p.provider_reference.as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": "90000", "TransactionResponseCode": "90000",
            "ResponseCodeGrouping": "SUCCESSFUL", "transactionRef": "ISW|old",
            "amount": "150000", "customerId": "0000000777", "paymentCode": "90101"})))
        .mount(&server)
        .await;
    let checked = gw.get(&p.payment_id).await;
    assert_eq!(state(&checked), pb::PaymentState::NeedsAttention);
    assert_eq!(
        checked.provider_code, "90000",
        "the provider's answer is kept"
    );
    assert!(
        checked.provider_message.contains("customer \"0000000777\""),
        "{}",
        checked.provider_message
    );
    // An operator payment now: GetPayment asks again but a mismatch never flips it.
    let later = gw.get(&p.payment_id).await;
    assert_eq!(state(&later), pb::PaymentState::NeedsAttention);
    gw.stop().await;
}

//! The wait for a provider call slot is bounded (`limits.max_slot_wait_ms`) and counted in the
//! longest payment call, so a payment's in-flight mark never outlives its call unnoticed: a
//! payment that gets no slot in time is not sent and ends FAILED "not sent" at once, rather
//! than waiting unbounded behind its in-flight mark. Real tonic client -> real gateway -> real
//! HTTP against wiremock playing OnePipe.

mod common;

use std::time::Duration;

use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    providers::{
        guard::CallLimits,
        onepipe::{MockMode, OnePipeConfig},
    },
};
use common::*;
use serde_json::json;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

#[tokio::test]
async fn a_payment_that_gets_no_call_slot_in_time_is_failed_not_sent() {
    let server = MockServer::start().await;
    // One payment holds the only slot for a while; it succeeds.
    Mock::given(method("POST"))
        .and(path("/v2/transact"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "status": "Successful", "message": "Successful",
                    "data": {"provider_response_code": "00", "provider": "Beeceptor",
                             "errors": null, "error": null,
                             "provider_response": {"reference": "OP-1",
                                                   "payment_status": "Successful"}}
                }))
                .set_delay(Duration::from_millis(3_000)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let config = OnePipeConfig {
        base_url: format!("{}/v2", server.uri()),
        api_key: "wiremock-onepipe-api-key".to_owned().into(),
        client_secret: "wiremock-onepipe-secret".to_owned().into(),
        mock_mode: MockMode::Inspect,
        auth_provider: "Beeceptor".to_owned(),
        transaction_ref_prefix: "bp-slot-".to_owned(),
        timeout_ms: 30_000,
        connect_timeout_ms: 1_000,
        limits: CallLimits {
            max_concurrent_calls: 1,
            max_slot_wait_ms: 200,
            ..CallLimits::default()
        },
    };
    let gw = TestGateway::start(ProvidersConfig {
        onepipe: Some(config),
        ..Default::default()
    })
    .await;
    let mut first_client = gw.payments();
    let first = tokio::spawn(async move {
        first_client
            .create_payment(onepipe_card_payment("slot-1"))
            .await
    });
    // The first call is at the provider, holding the slot.
    for _ in 0..2_000 {
        if !server.received_requests().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let second = gw.pay(onepipe_card_payment("slot-2")).await;
    assert_eq!(state(&second), pb::PaymentState::Failed);
    assert!(
        second.provider_message.contains("not sent")
            && second.provider_message.contains("call slot"),
        "{}",
        second.provider_message
    );
    let first = first.await.unwrap().unwrap().into_inner().payment.unwrap();
    assert_eq!(state(&first), pb::PaymentState::Succeeded);
    // Only the first payment reached OnePipe.
    server.verify().await;
    gw.stop().await;
}

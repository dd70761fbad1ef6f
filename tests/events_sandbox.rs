//! Payment events with the memory store (one process, as `serve --sandbox` runs): real tonic
//! client -> real gateway -> real HTTP -> the in-process OnePipe simulator. A WatchPayment
//! stream follows a payment from OTP_REQUIRED to SUCCEEDED with its token and ends; the
//! events stream shows each change with its cause, the follow-up included.

mod common;

use std::time::Duration;

use billpay_gateway::{
    pb,
    sandbox::{self, onepipe as sim, Simulators},
};
use common::*;

const PATIENCE: Duration = Duration::from_secs(30);

async fn next(stream: &mut tonic::Streaming<pb::WatchPaymentResponse>) -> Option<pb::Payment> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message or the end")
        .expect("no error")
        .map(|m| m.payment.unwrap())
}

#[tokio::test]
async fn a_watcher_follows_an_otp_payment_to_its_token_and_events_show_each_change() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    let meter = "10000000001";
    let options = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            provider: pb::Provider::Onepipe as i32,
            biller_id: "IKEDCPR".into(),
            customer_id: meter.into(),
            amount: ngn(500_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let option = options.options.into_iter().next().unwrap();
    let mut request = onepipe_card_payment("ev-otp");
    request.customer_id = meter.into();
    request.product_id = option.product_id.clone();
    request.amount = ngn(500_000);
    if let Some(pb::create_payment_request::ProviderOptions::Onepipe(o)) =
        request.provider_options.as_mut()
    {
        o.order_reference = option.order_reference.clone();
    }
    let paid = gw.pay(request).await;
    assert_eq!(state(&paid), pb::PaymentState::OtpRequired);

    let mut watching = gw
        .payments()
        .watch_payment(pb::WatchPaymentRequest {
            payment_id: paid.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(&next(&mut watching).await.unwrap()),
        pb::PaymentState::OtpRequired
    );
    let validated = gw
        .payments()
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            request_id: "ev-otp-1".into(),
            payment_id: paid.payment_id.clone(),
            otp: sim::OTP.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&validated), pb::PaymentState::Succeeded);
    // The follow-up starting changed nothing a watcher sees: the next message is the outcome.
    let seen = next(&mut watching).await.unwrap();
    assert_eq!(state(&seen), pb::PaymentState::Succeeded);
    assert!(!seen.fulfilment_token.is_empty());
    assert_eq!(seen.fulfilment_token, validated.fulfilment_token);
    assert_eq!(next(&mut watching).await, None, "final: the stream ends OK");

    let mut events = gw
        .payments()
        .watch_payment_events(pb::WatchPaymentEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut causes = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(PATIENCE, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .event
            .unwrap();
        causes.push((
            pb::PaymentEventCause::try_from(event.cause).unwrap(),
            pb::PaymentState::try_from(event.payment.unwrap().state).unwrap(),
            event.payment_revision,
        ));
    }
    use pb::{PaymentEventCause as C, PaymentState as S};
    assert_eq!(
        causes,
        [
            (C::Created, S::Pending, 1),
            (C::ProviderAnswer, S::OtpRequired, 2),
            (C::FollowUp, S::OtpRequired, 3),
            (C::FollowUp, S::Succeeded, 4),
        ]
    );
    gw.stop().await;
}

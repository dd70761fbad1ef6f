//! Secrets never reach a log line or an error: every log line of a session that exercises each
//! Interswitch operation, success and failure, is captured at TRACE level (all crates, reqwest
//! and hyper included) and searched for the client secret and the delivered token.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use billpay_gateway::{config::ProvidersConfig, pb, providers::interswitch::auth::SignatureMethod};
use common::*;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::{
    matchers::{body_string_contains, method, path},
    Mock, MockServer, ResponseTemplate,
};

const TOKEN: &str = "9999-8888-7777-6666-5555";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_in_any_log_line_or_error() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .init();

    let server = MockServer::start().await;
    let api = "/api/v2/quickteller";
    Mock::given(method("GET"))
        .and(path(format!("{api}/categorys")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "denied"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{api}/billers")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/customers/validations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"customerId": "0000000001", "responseCode": "90000", "amountType": "0", "amount": "0"}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/payments/advices")))
        .and(body_string_contains("0000000002"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": "10001", "ResponseCodeGrouping": "PENDING"})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/payments/advices")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": "90000", "ResponseCodeGrouping": "SUCCESSFUL", "RechargePIN": TOKEN})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{api}/transactions")))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;

    let gw = TestGateway::start(ProvidersConfig {
        interswitch: Some(interswitch_config(
            &server.uri(),
            SignatureMethod::Sha1,
            500,
        )),
        ..ProvidersConfig::default()
    })
    .await;
    let isw = pb::Provider::Interswitch as i32;
    let mut errors = Vec::new();
    errors.push(
        gw.catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: isw,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    errors.push(
        gw.catalog()
            .list_billers(pb::ListBillersRequest {
                provider: isw,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    errors.push(
        gw.payments()
            .create_payment(pb::CreatePaymentRequest::default())
            .await
            .unwrap_err(),
    );
    let paid = gw
        .pay(payment_request(
            "secret-check",
            "90101",
            "0000000001",
            1_000,
        ))
        .await;
    assert_eq!(paid.fulfilment_token, TOKEN, "the caller gets the token");
    // A pending payment, then a status query that times out.
    let pending = gw
        .pay(payment_request(
            "secret-pending",
            "90101",
            "0000000002",
            1_000,
        ))
        .await;
    let again = gw.get(&pending.payment_id).await;
    assert_eq!(again.state, pb::PaymentState::Pending as i32);
    gw.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("payment recorded"), "the capture works");
    assert!(
        logs.contains("provider call failed"),
        "failures were logged"
    );
    assert!(
        logs.contains("status query failed"),
        "the query path was logged"
    );
    assert!(!logs.contains(CLIENT_SECRET), "client secret in logs");
    assert!(!logs.contains(TOKEN), "fulfilment token in logs");
    for status in errors {
        let text = format!("{status:?}");
        assert!(
            !text.contains(CLIENT_SECRET),
            "client secret in an error: {text}"
        );
    }
}

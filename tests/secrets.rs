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
        ..Default::default()
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

/// Switch: the PIN, the OTP, the session token, the login password and the checksum key never
/// reach a log line or an error, through logins, a 401 and re-login, payments answered, refused
/// and lost, and an OTP request. Captured on this test's thread (the runtime is
/// current-thread, so every gateway task logs here).
#[tokio::test]
async fn no_switch_secret_in_any_log_line_or_error() {
    use billpay_gateway::providers::switch::{
        auth::ChecksumStrategy, LoginConfig, SwitchConfig, TwoFactor,
    };
    use secrecy::SecretString;

    const PIN: &str = "7391";
    const OTP: &str = "583016";
    const SESSION: &str = "eyJhbGciOiJIUzI1NiJ9.c2Vzc2lvbg.switch-session-secret-q8w7";
    const PASSWORD: &str = "switch-login-password-k2j4";
    const CHECKSUM_KEY: &str = "switch-checksum-key-z9x8";

    let capture = Capture::default();
    // No timestamps: a 4-digit PIN could occur in one by chance.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/user/login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Login successful", "data": {"auth_token": SESSION}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "jwt expired"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "ok", "data": [
            {"mandate_id": "M", "id": "01", "name": "Premium", "payment_code": "10401",
             "item_fee": "80", "vat": 4, "category_id": "2",
             "input_fields": [{"key": "consumer_id_field", "value": "", "text": "Decoder Number"}],
             "additions": {"amount": "14600.00", "total": "14684.00"}}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .and(body_string_contains("2222222222"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"message": "Pin should be a 4-digit number"})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .and(body_string_contains("4444444444"))
        .respond_with(ResponseTemplate::new(502))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "Bill payment successful"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/user/two_factor_auth/send_otp"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"message": "OTP sent"})))
        .mount(&server)
        .await;

    let config = |two_factor| SwitchConfig {
        base_url: server.uri(),
        client_id: "SWI-SECRETS-CID".into(),
        checksum: ChecksumStrategy::HmacSha256Hex,
        checksum_key: Some(SecretString::from(CHECKSUM_KEY.to_owned())),
        session_token: None,
        login: Some(LoginConfig {
            path: "/user/login".into(),
            username_field: "email".into(),
            username: "ops@billpay.test".into(),
            password: SecretString::from(PASSWORD.to_owned()),
        }),
        session_lifetime_ms: 1_800_000,
        session_refresh_margin_ms: 60_000,
        two_factor,
        timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    };
    let switch = pb::Provider::Switch as i32;
    let payment =
        |request_id: &str, customer: &str, pin: &str, otp: &str| pb::CreatePaymentRequest {
            request_id: request_id.into(),
            provider: switch,
            biller_id: "104".into(),
            product_id: "01".into(),
            customer_id: customer.into(),
            amount: ngn(1_460_000),
            provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
                pb::SwitchPaymentOptions {
                    pin: pin.into(),
                    otp: otp.into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
    let mut errors = Vec::new();
    let mut payments = Vec::new();

    let gw = TestGateway::start(ProvidersConfig {
        switch: Some(config(TwoFactor::Pin)),
        ..Default::default()
    })
    .await;
    errors.push(
        gw.catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: switch,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    payments.push(gw.pay(payment("sw-secret-ok", "7012345678", PIN, "")).await);
    payments.push(
        gw.pay(payment("sw-secret-pin", "2222222222", PIN, ""))
            .await,
    );
    payments.push(
        gw.pay(payment("sw-secret-502", "4444444444", PIN, ""))
            .await,
    );
    // Malformed PIN: refused by the API with a field violation that must not echo it.
    errors.push(
        gw.payments()
            .create_payment(payment("sw-secret-bad", "7012345678", "73910", ""))
            .await
            .unwrap_err(),
    );
    gw.stop().await;

    let gw = TestGateway::start(ProvidersConfig {
        switch: Some(config(TwoFactor::Otp)),
        ..Default::default()
    })
    .await;
    gw.payments()
        .send_payment_otp(pb::SendPaymentOtpRequest { provider: switch })
        .await
        .unwrap();
    payments.push(
        gw.pay(payment("sw-secret-otp", "7012345678", "", OTP))
            .await,
    );
    gw.stop().await;

    let sent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(sent.iter().any(|b| b.contains(PIN)), "the PIN was sent");
    assert!(sent.iter().any(|b| b.contains(OTP)), "the OTP was sent");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("payment recorded"), "the capture works");
    assert!(
        logs.contains("provider refused the token"),
        "the 401 path was logged"
    );
    for (name, secret) in [
        ("PIN", PIN),
        ("OTP", OTP),
        ("session token", SESSION),
        ("password", PASSWORD),
        ("checksum key", CHECKSUM_KEY),
    ] {
        assert!(!shows(&logs, secret), "{name} in logs");
        for status in &errors {
            let text = format!("{status:?}");
            assert!(!shows(&text, secret), "{name} in an error: {text}");
        }
        for p in &payments {
            let text = format!("{p:?}");
            assert!(!shows(&text, secret), "{name} in a payment: {text}");
        }
    }
}

/// Whether `text` holds `secret` not as part of a longer number (a PIN inside a port number
/// or a counter is chance, not a leak).
fn shows(text: &str, secret: &str) -> bool {
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    text.match_indices(secret).any(|(at, _)| {
        !digit(text[..at].chars().next_back()) && !digit(text[at + secret.len()..].chars().next())
    })
}

//! Secrets never reach a log line or an error: every log line of a session that exercises each
//! Interswitch and OnePipe operation, success and failure, is captured at TRACE level (all
//! crates, reqwest and hyper included) and searched for the client secrets, the OnePipe API
//! key, card data, PINs, OTPs, funding numbers, the `auth.secure` plaintext and the delivered
//! token; then the same for IP2's API key, API password and signature inputs.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine};
use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    providers::{
        interswitch::auth::SignatureMethod,
        onepipe::{MockMode, OnePipeConfig},
    },
};
use common::*;
use md5::Digest;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use wiremock::{
    matchers::{body_string_contains, method, path},
    Mock, MockServer, ResponseTemplate,
};

const TOKEN: &str = "9999-8888-7777-6666-5555";
const OP_API_KEY: &str = "onepipe-api-key-must-not-leak";
const OP_SECRET: &str = "onepipe-client-secret-must-not-leak";
const PAN: &str = "5060990580000217499";
const CVV: &str = "cvv-not-logged";
const CARD_PIN: &str = "pin-not-logged";
const OTP: &str = "97531864";
const VOUCHER: &str = "voucher-code-not-logged";
const OP_TOKEN: &str = "4321-1167-5843-6580-4889";

fn onepipe_request(
    request_id: &str,
    funding: pb::one_pipe_payment_options::Funding,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Onepipe as i32,
        biller_id: "IKEDCPR".into(),
        product_id: "IKEDCPR-TOKEN".into(),
        customer_id: "45000000001".into(),
        amount: ngn(10_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
            pb::OnePipePaymentOptions {
                order_reference: "1016".into(),
                funding: Some(funding),
            },
        )),
        ..Default::default()
    }
}

/// A OnePipe wiremock: options refused, card payments wait for an OTP, the OTP succeeds with a
/// token, reversal succeeds, voucher payments hit a 500 and their query answers garbage.
async fn onepipe_server() -> MockServer {
    let server = MockServer::start().await;
    let answer = |status: &str, pr: serde_json::Value| {
        ResponseTemplate::new(200).set_body_json(json!({"status": status, "message": status,
            "data": {"error": null, "provider_response": pr}}))
    };
    let routes = [
        (
            "/v2/transact/options",
            ResponseTemplate::new(401).set_body_string("denied"),
        ),
        (
            "/v2/transact/validate",
            answer("Successful", json!({"token": OP_TOKEN})),
        ),
        ("/v2/transact/reverse", answer("Successful", json!({}))),
        (
            "/v2/transact/query",
            ResponseTemplate::new(200).set_body_string("}{"),
        ),
    ];
    for (route, response) in routes {
        Mock::given(method("POST"))
            .and(path(route))
            .respond_with(response)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v2/transact"))
        .and(body_string_contains("voucher"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/transact"))
        .respond_with(answer("WaitingForOTP", json!({})))
        .mount(&server)
        .await;
    server
}

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

    let op_server = onepipe_server().await;
    let gw = TestGateway::start(ProvidersConfig {
        interswitch: Some(interswitch_config(
            &server.uri(),
            SignatureMethod::Sha1,
            500,
        )),
        onepipe: Some(OnePipeConfig {
            base_url: format!("{}/v2", op_server.uri()),
            api_key: OP_API_KEY.to_owned().into(),
            client_secret: OP_SECRET.to_owned().into(),
            mock_mode: MockMode::Inspect,
            auth_provider: "Beeceptor".into(),
            transaction_ref_prefix: "bp-".into(),
            timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            limits: Default::default(),
        }),
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

    // OnePipe: refused options, a card payment through OTP to a token and a reversal, and a
    // voucher payment whose outcome stays unknown.
    errors.push(
        gw.customers()
            .get_payment_options(pb::GetPaymentOptionsRequest {
                provider: pb::Provider::Onepipe as i32,
                biller_id: "IKEDCPR".into(),
                customer_id: "45000000001".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    let card = pb::one_pipe_payment_options::Funding::Card(pb::OnePipeCard {
        pan: PAN.into(),
        cvv: CVV.into(),
        expiry_mmyy: "2203".into(),
        pin: CARD_PIN.into(),
    });
    let waiting = gw.pay(onepipe_request("secret-op-card", card)).await;
    assert_eq!(waiting.state, pb::PaymentState::OtpRequired as i32);
    let done = gw
        .payments()
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            request_id: "secret-op-otp".into(),
            payment_id: waiting.payment_id.clone(),
            otp: OTP.into(),
            fields: [("date_of_birth".to_owned(), VOUCHER.to_owned())].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(done.fulfilment_token, OP_TOKEN);
    gw.payments()
        .reverse_payment(pb::ReversePaymentRequest {
            request_id: "secret-op-reverse".into(),
            payment_id: waiting.payment_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let voucher = pb::one_pipe_payment_options::Funding::Voucher(pb::OnePipeVoucher {
        voucher_code: VOUCHER.into(),
        provider_code: "VPRO".into(),
    });
    let unknown = gw.pay(onepipe_request("secret-op-voucher", voucher)).await;
    assert_eq!(unknown.state, pb::PaymentState::Pending as i32);
    let still = gw.get(&unknown.payment_id).await;
    assert_eq!(still.state, pb::PaymentState::Pending as i32);
    assert_eq!(op_server.received_requests().await.unwrap().len(), 6);
    gw.stop().await;

    // The same for IP2: a refused read, a paid debit, a debit without an answer, a refresh.
    errors.extend(ip2_session().await);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("intelworld_ip2"),
        "the IP2 session was logged"
    );
    assert!(!logs.contains(IP2_API_KEY), "IP2 API key in logs");
    assert!(!logs.contains(IP2_API_PASSWORD), "IP2 API password in logs");
    // The signature's inputs: its key (base64 MD5 of the password) and its representation
    // (which starts with the lower-cased subscription and account), and the header itself.
    let ip2_key = STANDARD.encode(md5::Md5::digest(IP2_API_PASSWORD.as_bytes()));
    let representation_start = format!("{IP2_SUBSCRIPTION}{IP2_ACCOUNT}").to_lowercase();
    assert!(!logs.contains(&ip2_key), "IP2 signing key in logs");
    assert!(
        !logs.contains(&representation_start),
        "IP2 signature input in logs"
    );
    assert!(
        !logs.contains("ApiAuth "),
        "IP2 Authorization header in logs"
    );
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
    let plaintext = format!("{PAN};{CVV};2203;{CARD_PIN}");
    let onepipe_secrets = [
        ("OnePipe api key", OP_API_KEY),
        ("OnePipe client secret", OP_SECRET),
        ("card number", PAN),
        ("CVV", CVV),
        ("card PIN", CARD_PIN),
        ("OTP", OTP),
        ("voucher or validation field", VOUCHER),
        ("auth.secure plaintext", plaintext.as_str()),
        ("OnePipe token", OP_TOKEN),
    ];
    for (what, value) in onepipe_secrets {
        assert!(!logs.contains(value), "{what} in logs");
    }
    for status in errors {
        let text = format!("{status:?}");
        assert!(
            !text.contains(CLIENT_SECRET),
            "client secret in an error: {text}"
        );
        for (what, value) in onepipe_secrets {
            assert!(!text.contains(value), "{what} in an error: {text}");
        }
        for secret in [IP2_API_KEY, IP2_API_PASSWORD] {
            assert!(!text.contains(secret), "IP2 secret in an error: {text}");
        }
    }
}

/// Exercises every IP2 path that logs: a refused read (401), a paid debit, a debit answered
/// 503, a status query that times out. Returns the errors the caller saw.
async fn ip2_session() -> Vec<tonic::Status> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/paymentMethods"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "ResponseCode": 401, "ResponseMessage": "signature mismatch"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .and(body_string_contains("256700000002"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": 0, "Data": {"TransactionStatus": "Successful"}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/transactions"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let gw = TestGateway::start(ProvidersConfig {
        intelworld_ip2: Some(ip2_config(&server.uri(), 100, 500)),
        ..ProvidersConfig::default()
    })
    .await;
    let ip2 = pb::Provider::IntelworldIp2 as i32;
    let mut errors = vec![gw
        .catalog()
        .list_payment_methods(pb::ListPaymentMethodsRequest {
            provider: ip2,
            ..Default::default()
        })
        .await
        .unwrap_err()];
    let debit = |request_id: &str, msisdn: &str| pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: ip2,
        customer_id: msisdn.into(),
        amount: ugx(5_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            pb::Ip2PaymentOptions {
                payment_method_id: "MTNMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), msisdn.to_owned())].into(),
                memo: "Top up".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let paid = gw.pay(debit("ip2-secret-ok", "256700000001")).await;
    assert_eq!(paid.state, pb::PaymentState::Succeeded as i32);
    let pending = gw.pay(debit("ip2-secret-503", "256700000002")).await;
    assert_eq!(pending.state, pb::PaymentState::Pending as i32);
    let again = gw.get(&pending.payment_id).await;
    assert_eq!(again.state, pb::PaymentState::Pending as i32);
    errors.push(
        gw.payments()
            .create_payment(pb::CreatePaymentRequest {
                amount: ugx(0),
                ..debit("ip2-secret-bad", "256700000001")
            })
            .await
            .unwrap_err(),
    );
    gw.stop().await;
    errors
}

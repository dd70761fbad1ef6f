//! Secrets never reach a log line, an error or a span: every log line of a session that
//! exercises each Interswitch and OnePipe operation, success and failure, is captured at TRACE
//! level (all crates, reqwest and hyper included), and every span it exports goes to a real
//! OTLP receiver; both are searched for the client secrets, the OnePipe API key, card data,
//! PINs, OTPs, funding numbers, the `auth.secure` plaintext and the delivered token; then the
//! same for IP2's API key, API password and signature inputs.

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

// Multi-threaded: flushing the span exporter blocks a thread while the runtime carries its
// gRPC channel and the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_error_or_span() {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};
    let capture = Capture::default();
    // Spans go to a real OTLP receiver as well, as with `[telemetry] otlp_endpoint`.
    let receiver = common::otlp::Receiver::start().await;
    let span_exporter =
        billpay_gateway::telemetry::Tracing::start(&billpay_gateway::config::TelemetryConfig {
            otlp_endpoint: receiver.endpoint.clone(),
            ..Default::default()
        })
        .unwrap()
        .expect("an exporter");
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(capture.clone())
                .with_ansi(false)
                .with_filter(tracing::level_filters::LevelFilter::TRACE),
        )
        .with(span_exporter.layer())
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
    mock_interswitch_items(&server).await;
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
    // And InterIntel's OAuth2 through every token path.
    errors.extend(interintel_session().await);

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
    // One audit line per mutating RPC, with caller, RPC, ids and outcome; the secret checks
    // above cover these lines too (the card, PIN and OTP calls are among them).
    let audit: Vec<&str> = logs.lines().filter(|l| l.contains(" audit: ")).collect();
    for rpc in ["CreatePayment", "ValidatePaymentOtp", "ReversePayment"] {
        let line = audit
            .iter()
            .find(|l| l.contains(&format!("rpc=\"{rpc}\"")))
            .unwrap_or_else(|| panic!("no audit line for {rpc}: {audit:#?}"));
        for field in ["caller=", "request_id=", "payment_id=", "outcome="] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
    }
    assert!(
        logs.contains("token refresh failed"),
        "the failed refresh was logged"
    );
    assert!(
        logs.contains("provider refused the token (401)"),
        "the 401 was logged"
    );
    for secret in [II_PASSWORD, II_CLIENT_SECRET, "ii-access-", "ii-refresh-"] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            let at = logs.find(line).unwrap();
            panic!(
                "InterIntel secret {secret:?} in logs: {}",
                &logs[at.saturating_sub(1500)..at + line.len()]
            );
        }
    }
    // Every span the session exported: names, attributes, events and resource.
    tokio::task::spawn_blocking(move || {
        span_exporter.flush().expect("export");
        drop(span_exporter);
    })
    .await
    .unwrap();
    let spans = common::otlp::all_text(&receiver.exports());
    assert!(
        spans.contains("interswitch pay") && spans.contains("onepipe"),
        "the provider calls were traced"
    );
    assert!(
        spans.contains("billpay.v1.PaymentService/ValidatePaymentOtp"),
        "the OTP call was traced"
    );
    for (what, value) in [
        ("client secret", CLIENT_SECRET),
        ("fulfilment token", TOKEN),
        ("IP2 api key", IP2_API_KEY),
        ("IP2 api password", IP2_API_PASSWORD),
        ("InterIntel password", II_PASSWORD),
        ("InterIntel client secret", II_CLIENT_SECRET),
        ("InterIntel access token", "ii-access-"),
        ("InterIntel refresh token", "ii-refresh-"),
    ]
    .into_iter()
    .chain(onepipe_secrets)
    {
        assert!(!shows(&spans, value), "{what} in a span");
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
        for secret in [II_PASSWORD, II_CLIENT_SECRET, "ii-access-", "ii-refresh-"] {
            assert!(!text.contains(secret), "{secret:?} in an error: {text}");
        }
    }
}

const II_PASSWORD: &str = "ii-portal-password-0f1e2d";
const II_CLIENT_SECRET: &str = "ii-client-secret-3c4b5a";

/// InterIntel through every token path; returns the errors callers saw.
async fn interintel_session() -> Vec<tonic::Status> {
    use std::sync::atomic::{AtomicU32, Ordering};
    let server = MockServer::start().await;
    let api = "/api/v1";
    let issued = Arc::new(AtomicU32::new(0));
    let n = issued.clone();
    // Tokens live 60 s with a 60 s margin: every call renews. The third renewal's refresh
    // fails with a body that quotes the refresh token.
    Mock::given(method("POST"))
        .and(path(format!("{api}/token")))
        .respond_with(move |r: &wiremock::Request| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            if body["grant_type"] == "refresh_token" && i == 3 {
                return ResponseTemplate::new(400).set_body_json(json!({
                    "error": "invalid_grant", "refresh_token": body["refresh_token"]}));
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "access_token": format!("ii-access-{i}"), "expires_in": 60,
                "token_type": "Bearer", "refresh_token": format!("ii-refresh-{i}")}))
        })
        .mount(&server)
        .await;
    // The first float call is refused with 401 (echoing the token), then all succeed.
    let refused = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path(format!("{api}/biller-float/")))
        .respond_with(move |r: &wiremock::Request| {
            if refused.fetch_add(1, Ordering::SeqCst) == 0 {
                let auth = r.headers.get("Authorization").unwrap().to_str().unwrap();
                return ResponseTemplate::new(401).set_body_json(json!({"detail": auth}));
            }
            ResponseTemplate::new(200)
                .set_body_json(json!({"response_status": "00", "response": "100"}))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/bill_payment/")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "response_status": "09", "response": "accepted"})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{api}/bill_status/")))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let config = toml::from_str(&format!(
        r#"
        base_url = "{}{api}"
        client_id = "ii-client"
        client_secret = "{II_CLIENT_SECRET}"
        username = "company1"
        password = "{II_PASSWORD}"
        send_body_credentials = true
        [[products]]
        id = "101"
        name = "Prepaid tokens"
        biller = "kplc"
        [[products]]
        id = "102"
        name = "Postpaid"
        biller = "kplc"
        "#,
        server.uri()
    ))
    .unwrap();
    let gw = TestGateway::start(ProvidersConfig {
        interintel: Some(config),
        ..ProvidersConfig::default()
    })
    .await;
    let ii = pb::Provider::Interintel as i32;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(gw.channel.clone());
    let float = || pb::GetBalanceRequest {
        provider: ii,
        product_id: "101".into(),
        ..Default::default()
    };
    for _ in 0..4 {
        accounts.get_balance(float()).await.unwrap();
    }
    let paid = gw
        .pay(pb::CreatePaymentRequest {
            request_id: "ii-secret-check".into(),
            provider: ii,
            product_id: "101".into(),
            customer_id: "1000000001".into(),
            amount: Some(pb::Money {
                currency_code: "KES".into(),
                minor_units: 10_000,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(paid.state, pb::PaymentState::Pending as i32);
    gw.get(&paid.payment_id).await;
    let mut errors = vec![accounts
        .get_balance(pb::GetBalanceRequest {
            provider: ii,
            ..Default::default()
        })
        .await
        .unwrap_err()];
    gw.stop().await;
    // Wrong password: the grant is refused, and the caller's error says nothing of it. (Every
    // request is matched: wiremock itself logs the body of an unmatched one.)
    Mock::given(method("POST"))
        .and(path("/refusing/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&server)
        .await;
    let config = toml::from_str(&format!(
        "base_url = \"{}/refusing\"\nclient_id = \"c\"\nusername = \"u\"\npassword = \"{II_PASSWORD}\"",
        server.uri()
    ))
    .unwrap();
    let gw = TestGateway::start(ProvidersConfig {
        interintel: Some(config),
        ..ProvidersConfig::default()
    })
    .await;
    errors.push(
        pb::account_service_client::AccountServiceClient::new(gw.channel.clone())
            .get_balance(float())
            .await
            .unwrap_err(),
    );
    gw.stop().await;
    assert!(issued.load(Ordering::SeqCst) >= 5, "the token paths ran");
    errors
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

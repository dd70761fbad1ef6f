//! Secrets never reach a log line or an error: every log line of a session that exercises each
//! Interswitch operation, success and failure, is captured at TRACE level (all crates, reqwest
//! and hyper included) and searched for the client secret and the delivered token. The same
//! session runs InterIntel's OAuth2 through every path (password grant, refresh grant, a failed
//! refresh, a 401 and its retry, payment, status query, float) and searches for its password,
//! client secret, access tokens and refresh tokens.

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
    errors.extend(interintel_session().await);

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
    assert!(!logs.contains(TOKEN), "fulfilment token in logs");
    for status in errors {
        let text = format!("{status:?}");
        assert!(
            !text.contains(CLIENT_SECRET),
            "client secret in an error: {text}"
        );
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

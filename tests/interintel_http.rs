//! InterIntel utility billers end to end: real tonic client -> real gateway -> real HTTP -> a
//! wiremock server that plays InterIntel. Every request's exact HTTP is checked: method, path
//! (trailing slashes, the hyphen of `biller-float`), the Bearer header, the JSON body, shilling
//! amount strings at the edges and `scheduled_send` text. The token lifecycle (cached,
//! refreshed near expiry, re-obtained after a failed refresh, a 401 invalidating the token:
//! a read retried once, a payment never resent) runs under paused tokio time: the clock is paused only to jump it, never
//! while a socket is waited on.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use billpay_gateway::{
    config::ProvidersConfig,
    pb::{self, account_service_client::AccountServiceClient},
    providers::interintel::InterIntelConfig,
};
use common::*;
use serde_json::{json, Value};
use tonic::Code;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, ResponseTemplate,
};

const API: &str = "/api/v1";
const II_CLIENT_ID: &str = "ii-client-7";
const II_CLIENT_SECRET: &str = "ii-client-secret-5d4c3b";
const II_USERNAME: &str = "company1";
const II_PASSWORD: &str = "ii-password-a1b2c3";

/// Configuration against `server`, with two configured product items.
fn config(server: &MockServer, extra: &str) -> InterIntelConfig {
    let text = format!(
        r#"
        base_url = "{}{API}"
        client_id = "{II_CLIENT_ID}"
        client_secret = "{II_CLIENT_SECRET}"
        username = "{II_USERNAME}"
        password = "{II_PASSWORD}"
        reference_prefix = "BPG"
        timeout_ms = 5000
        {extra}
        [[products]]
        id = "101"
        name = "Prepaid tokens"
        biller = "kplc"
        biller_name = "Kenya Power"
        account_label = "Meter Number"
        [[products]]
        id = "301"
        name = "DStv Compact"
        biller = "dstv_ke"
        fixed_amount_cents = 250000
        "#,
        server.uri()
    );
    toml::from_str(&text).expect("test config parses")
}

async fn gateway(server: &MockServer, extra: &str) -> TestGateway {
    TestGateway::start(ProvidersConfig {
        interintel: Some(config(server, extra)),
        ..ProvidersConfig::default()
    })
    .await
}

/// Answers the password grant with `pw-N`/`rf-N` and the refresh grant with `rt-N`/`rf-N`
/// (N counts every token issued), unless `refresh_fails`.
#[derive(Clone, Default)]
struct Tokens {
    issued: Arc<AtomicU32>,
    refresh_fails: Arc<AtomicBool>,
    expires_in: Arc<AtomicU32>,
}

impl Tokens {
    async fn mount(&self, server: &MockServer) {
        let this = self.clone();
        Mock::given(method("POST"))
            .and(path(format!("{API}/token")))
            .respond_with(move |r: &Request| {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                let kind = match body["grant_type"].as_str() {
                    Some("password") => "pw",
                    Some("refresh_token") if this.refresh_fails.load(Ordering::SeqCst) => {
                        return ResponseTemplate::new(400)
                            .set_body_json(json!({"error": "invalid_grant"}));
                    }
                    Some("refresh_token") => "rt",
                    _ => return ResponseTemplate::new(400),
                };
                let n = this.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let expires = match this.expires_in.load(Ordering::SeqCst) {
                    0 => 36_000,
                    e => e,
                };
                ResponseTemplate::new(200).set_body_json(json!({
                    "access_token": format!("{kind}-{n}"),
                    "expires_in": expires,
                    "token_type": "Bearer",
                    "scope": "read write groups",
                    "refresh_token": format!("rf-{n}"),
                }))
            })
            .mount(server)
            .await;
    }
}

async fn mock_service(server: &MockServer, service: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("{API}/{service}")))
        .respond_with(response)
        .mount(server)
        .await;
}

fn ok(code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"response_status": code, "response": message}))
}

async fn requests(server: &MockServer, full_path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == full_path)
        .collect()
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn header(r: &Request, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Checks a service call's method, headers and token.
fn assert_service_call(r: &Request, token: &str) {
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(header(r, "Authorization"), format!("Bearer {token}"));
    assert_eq!(header(r, "Content-Type"), "application/json");
}

fn kes(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "KES".into(),
        minor_units,
    })
}

fn pay_request(
    request_id: &str,
    product: &str,
    account: &str,
    cents: i64,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interintel as i32,
        biller_id: "kplc".into(),
        product_id: product.into(),
        customer_id: account.into(),
        amount: kes(cents),
        ..pb::CreatePaymentRequest::default()
    }
}

fn scheduled(mut request: pb::CreatePaymentRequest, at_ms: i64) -> pb::CreatePaymentRequest {
    request.provider_options = Some(pb::create_payment_request::ProviderOptions::Interintel(
        pb::InterIntelPaymentOptions {
            scheduled_send_time: Some(prost_types::Timestamp {
                seconds: at_ms.div_euclid(1000),
                nanos: (at_ms.rem_euclid(1000) * 1_000_000) as i32,
            }),
        },
    ));
    request
}

fn balance_request(product: &str) -> pb::GetBalanceRequest {
    pb::GetBalanceRequest {
        provider: pb::Provider::Interintel as i32,
        product_id: product.into(),
        ..Default::default()
    }
}

async fn balance(gw: &TestGateway, product: &str) -> pb::Balance {
    AccountServiceClient::new(gw.channel.clone())
        .get_balance(balance_request(product))
        .await
        .unwrap()
        .into_inner()
        .balances
        .remove(0)
}

#[tokio::test]
async fn every_operation_speaks_interintel_http() {
    let server = MockServer::start().await;
    let tokens = Tokens::default();
    tokens.mount(&server).await;
    mock_service(&server, "biller-float/", ok("00", "150000.50")).await;
    mock_service(
        &server,
        "bill_query/",
        ok("00", "Account 1000000001 is valid"),
    )
    .await;
    mock_service(
        &server,
        "bill_payment/",
        ok("09", "Request accepted for processing"),
    )
    .await;
    mock_service(&server, "bill_status/", ok("00", "Bill payment successful")).await;
    let gw = gateway(&server, "").await;
    let ii = pb::Provider::Interintel as i32;

    // Catalog: the configured items, no HTTP.
    let billers = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: ii,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    let names: Vec<_> = billers
        .iter()
        .map(|b| (b.biller_id.as_str(), b.name.as_str()))
        .collect();
    assert_eq!(names, [("dstv_ke", "dstv_ke"), ("kplc", "Kenya Power")]);
    let products = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: ii,
            biller_id: "dstv_ke".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].product_id, "301");
    assert!(products[0].amount_fixed);
    assert_eq!(products[0].amount, kes(250_000));
    assert!(server.received_requests().await.unwrap().is_empty());

    // biller-float: per product item, the float read exactly, the message kept.
    let float = balance(&gw, "101").await;
    assert_eq!(float.available, kes(15_000_050));
    assert_eq!(float.account_id, "101");
    assert_eq!(float.provider_message, "150000.50");
    let [r] = &requests(&server, &format!("{API}/biller-float/")).await[..] else {
        panic!("one biller-float call")
    };
    assert_service_call(r, "pw-1");
    assert_eq!(body(r), json!({"product_item_id": "101"}));

    // bill_query: the amount in shillings, the code and message back.
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
    assert_eq!(lookup.provider_message, "Account 1000000001 is valid");
    let [r] = &requests(&server, &format!("{API}/bill_query/")).await[..] else {
        panic!("one bill_query call")
    };
    assert_service_call(r, "pw-1");
    assert_eq!(
        body(r),
        json!({"account_number": "1000000001", "amount": "1000", "product_item_id": "101"})
    );

    // bill_payment: accepted for processing is PENDING; ext_outbound_id is the stored
    // reference.
    let paid = gw
        .pay(pay_request("ii-pay-1", "101", "1000000001", 250_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Pending);
    assert_eq!(paid.provider_code, "09");
    assert!(
        paid.provider_reference.starts_with("BPG"),
        "{}",
        paid.provider_reference
    );
    assert_eq!(paid.provider_reference.len(), 15);
    let [r] = &requests(&server, &format!("{API}/bill_payment/")).await[..] else {
        panic!("one bill_payment call")
    };
    assert_service_call(r, "pw-1");
    assert_eq!(
        body(r),
        json!({"account_number": "1000000001", "amount": "2500", "product_item_id": "101",
               "ext_outbound_id": paid.provider_reference})
    );

    // bill_status: the same fields, by ext_outbound_id.
    let settled = gw.get(&paid.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    assert_eq!(settled.provider_message, "Bill payment successful");
    let [r] = &requests(&server, &format!("{API}/bill_status/")).await[..] else {
        panic!("one bill_status call")
    };
    assert_service_call(r, "pw-1");
    assert_eq!(
        body(r),
        json!({"account_number": "1000000001", "amount": "2500", "product_item_id": "101",
               "ext_outbound_id": paid.provider_reference})
    );

    // One password grant for all of it, in the documented JSON form.
    let token_calls = requests(&server, &format!("{API}/token")).await;
    assert_eq!(token_calls.len(), 1);
    assert_eq!(header(&token_calls[0], "Content-Type"), "application/json");
    assert_eq!(
        body(&token_calls[0]),
        json!({"client_id": II_CLIENT_ID, "client_secret": II_CLIENT_SECRET,
               "username": II_USERNAME, "password": II_PASSWORD, "grant_type": "password"})
    );
    // Nothing went to a path without its trailing slash or with the other separator.
    for r in server.received_requests().await.unwrap() {
        let p = r.url.path();
        assert!(p == format!("{API}/token") || p.ends_with('/'), "{p}");
        assert!(!p.contains("biller_float") && !p.contains("bill-"), "{p}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_2023_generation_gets_gateway_host_and_credentials() {
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(&server, "biller-float/", ok("00", "10")).await;
    let gw = gateway(
        &server,
        "gateway_host = \"interintel.co\"\nsend_body_credentials = true\ntoken_path = \"/o/token/\"",
    )
    .await;
    // The token path is configurable: /o/token/ is not mocked, so the grant fails...
    let status = AccountServiceClient::new(gw.channel.clone())
        .get_balance(balance_request("101"))
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    let grant = requests(&server, &format!("{API}/o/token/")).await;
    assert_eq!(grant.len(), 1, "the grant went to the configured path");
    gw.stop().await;

    // ...and with the documented path the body carries both 2023 fields.
    let gw = gateway(
        &server,
        "gateway_host = \"interintel.co\"\nsend_body_credentials = true",
    )
    .await;
    assert_eq!(balance(&gw, "101").await.available, kes(1_000));
    let [r] = &requests(&server, &format!("{API}/biller-float/")).await[..] else {
        panic!("one biller-float call")
    };
    assert_eq!(
        body(r),
        json!({"gateway_host": "interintel.co",
               "credentials": {"username": II_USERNAME, "password": II_PASSWORD},
               "product_item_id": "101"})
    );
    gw.stop().await;
}

#[tokio::test]
async fn amount_strings_at_the_edges() {
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(
        &server,
        "bill_payment/",
        ok("00", "Bill payment successful"),
    )
    .await;
    let gw = gateway(&server, "").await;
    let cases = [
        (100, "1"),
        (100_000, "1000"),
        (9_223_372_036_854_775_800, "92233720368547758"),
    ];
    for (i, (cents, _)) in cases.iter().enumerate() {
        let paid = gw
            .pay(pay_request(
                &format!("edge-{i}"),
                "101",
                "1000000001",
                *cents,
            ))
            .await;
        assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    }
    let sent: Vec<String> = requests(&server, &format!("{API}/bill_payment/"))
        .await
        .iter()
        .map(|r| body(r)["amount"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = cases.iter().map(|(_, s)| s.to_string()).collect();
    assert_eq!(sent, expected);

    // Cents cannot be sent as whole shillings: refused before anything is recorded or sent.
    for (i, cents) in [1, 1_050, 9_223_372_036_854_775_807]
        .into_iter()
        .enumerate()
    {
        let status = gw
            .payments()
            .create_payment(pay_request(
                &format!("cents-{i}"),
                "101",
                "1000000001",
                cents,
            ))
            .await
            .unwrap_err();
        let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(fields, ["amount.minor_units"]);
    }
    // A fixed-amount item takes only its amount.
    let status = gw
        .payments()
        .create_payment(pb::CreatePaymentRequest {
            biller_id: "dstv_ke".into(),
            ..pay_request("fixed", "301", "1000000001", 260_000)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        requests(&server, &format!("{API}/bill_payment/"))
            .await
            .len(),
        3
    );
    gw.stop().await;

    // With cents = "decimal": two decimals when there are cents.
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(
        &server,
        "bill_payment/",
        ok("00", "Bill payment successful"),
    )
    .await;
    let gw = gateway(&server, "cents = \"decimal\"").await;
    let cases = [
        (1, "0.01"),
        (1_005, "10.05"),
        (100, "1"),
        (9_223_372_036_854_775_807, "92233720368547758.07"),
    ];
    for (i, (cents, _)) in cases.iter().enumerate() {
        gw.pay(pay_request(
            &format!("dec-{i}"),
            "101",
            "1000000001",
            *cents,
        ))
        .await;
    }
    let sent: Vec<String> = requests(&server, &format!("{API}/bill_payment/"))
        .await
        .iter()
        .map(|r| body(r)["amount"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = cases.iter().map(|(_, s)| s.to_string()).collect();
    assert_eq!(sent, expected);
    gw.stop().await;
}

#[tokio::test]
async fn scheduled_send_is_nairobi_time_text_and_the_payment_is_scheduled() {
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(&server, "bill_payment/", ok("00", "Payment scheduled")).await;
    let gw = gateway(&server, "").await;
    // 2030-01-04T21:00:00Z is midnight of Saturday 5 January 2030 in Nairobi (UTC+3).
    let midnight_ms: i64 = 1_893_790_800_000;
    let cases = [
        (midnight_ms, "05/01/2030 12:00 am"),
        (midnight_ms + 12 * 3_600_000, "05/01/2030 12:00 pm"),
        (midnight_ms + (9 * 60 + 5) * 60_000, "05/01/2030 9:05 am"),
        (
            midnight_ms + 26 * 86_400_000 + (23 * 60 + 59) * 60_000 + 59_999,
            "31/01/2030 11:59 pm",
        ),
    ];
    for (i, (at, _)) in cases.iter().enumerate() {
        let paid = gw
            .pay(scheduled(
                pay_request(&format!("sched-{i}"), "101", "1000000001", 10_000),
                *at,
            ))
            .await;
        assert_eq!(state(&paid), pb::PaymentState::Scheduled);
        assert_eq!(paid.provider_code, "00");
        let when = paid.scheduled_time.expect("scheduled_time");
        assert_eq!(when.seconds * 1000 + i64::from(when.nanos) / 1_000_000, *at);
    }
    let sent: Vec<String> = requests(&server, &format!("{API}/bill_payment/"))
        .await
        .iter()
        .map(|r| body(r)["scheduled_send"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = cases.iter().map(|(_, s)| s.to_string()).collect();
    assert_eq!(sent, expected);
    gw.stop().await;
}

#[tokio::test]
async fn answers_map_to_states_pending_unless_clearly_otherwise() {
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    let answers = [
        (
            "1000000051",
            ok("51", "Insufficient float"),
            pb::PaymentState::Failed,
            "51",
        ),
        ("1000000030", ok("30", ""), pb::PaymentState::Failed, "30"),
        (
            "1000000096",
            ok("96", "System error"),
            pb::PaymentState::Pending,
            "96",
        ),
        (
            "1000000077",
            ok("77", "Something new"),
            pb::PaymentState::Pending,
            "77",
        ),
        (
            "1000000500",
            ResponseTemplate::new(502),
            pb::PaymentState::Pending,
            "",
        ),
        (
            "1000000200",
            ResponseTemplate::new(200).set_body_string("<html>"),
            pb::PaymentState::Pending,
            "",
        ),
    ];
    for (account, response, _, _) in &answers {
        Mock::given(method("POST"))
            .and(path(format!("{API}/bill_payment/")))
            .and(wiremock::matchers::body_string_contains(*account))
            .respond_with(response.clone())
            .mount(&server)
            .await;
    }
    let gw = gateway(&server, "").await;
    for (account, _, expected, code) in &answers {
        let paid = gw.pay(pay_request(account, "101", account, 10_000)).await;
        assert_eq!(state(&paid), *expected, "{account}");
        assert_eq!(paid.provider_code, *code, "{account}");
    }
    let declined = gw
        .pay(pay_request("1000000030", "101", "1000000030", 10_000))
        .await;
    assert_eq!(
        declined.provider_message,
        "invalid account number or network"
    );
    gw.stop().await;
}

/// Jumps paused time by `by` with no socket waited on meanwhile.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn token_lifecycle_cached_refreshed_reobtained_and_replaced_on_401() {
    let server = MockServer::start().await;
    let tokens = Tokens::default();
    tokens.mount(&server).await;
    mock_service(&server, "biller-float/", ok("00", "500")).await;
    mock_service(&server, "bill_status/", ok("00", "Bill payment successful")).await;
    // bill_payment refuses the first token it sees with 401, then pays.
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    let first = refused.clone();
    Mock::given(method("POST"))
        .and(path(format!("{API}/bill_payment/")))
        .respond_with(move |r: &Request| {
            let mut first = first.lock().unwrap();
            if first.is_none() {
                *first = Some(header(r, "Authorization"));
                return ResponseTemplate::new(401).set_body_json(json!({"detail": "expired"}));
            }
            ok("00", "Bill payment successful")
        })
        .mount(&server)
        .await;
    let gw = gateway(&server, "").await;
    let float_tokens = || async {
        requests(&server, &format!("{API}/biller-float/"))
            .await
            .iter()
            .map(|r| header(r, "Authorization"))
            .collect::<Vec<_>>()
    };
    let grants = || async {
        requests(&server, &format!("{API}/token"))
            .await
            .iter()
            .map(body)
            .collect::<Vec<_>>()
    };

    // Cold: one password grant; then cached, also 10 hours minus 61 s later.
    balance(&gw, "101").await;
    balance(&gw, "101").await;
    jump(Duration::from_secs(36_000 - 61)).await;
    balance(&gw, "101").await;
    assert_eq!(float_tokens().await, ["Bearer pw-1"; 3]);
    assert_eq!(grants().await.len(), 1);

    // Inside the 60 s margin: the refresh grant, with the stored refresh token.
    jump(Duration::from_secs(2)).await;
    balance(&gw, "101").await;
    assert_eq!(float_tokens().await.last().unwrap(), "Bearer rt-2");
    assert_eq!(
        grants().await[1],
        json!({"client_id": II_CLIENT_ID, "client_secret": II_CLIENT_SECRET,
               "grant_type": "refresh_token", "refresh_token": "rf-1"})
    );

    // Near expiry again, the refresh fails: a new password grant.
    tokens.refresh_fails.store(true, Ordering::SeqCst);
    jump(Duration::from_secs(36_000 - 30)).await;
    balance(&gw, "101").await;
    assert_eq!(float_tokens().await.last().unwrap(), "Bearer pw-3");
    let kinds: Vec<_> = grants()
        .await
        .iter()
        .map(|g| g["grant_type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["password", "refresh_token", "refresh_token", "password"]
    );
    tokens.refresh_fails.store(false, Ordering::SeqCst);

    // A payment refused with 401: the token is invalidated but the payment is not sent again
    // (a resend could pay twice): PENDING. bill_status, a read, gets a new token (refresh
    // first) and decides.
    let pending = gw
        .pay(pay_request("ii-401", "101", "1000000001", 10_000))
        .await;
    assert_eq!(state(&pending), pb::PaymentState::Pending);
    let calls = requests(&server, &format!("{API}/bill_payment/")).await;
    assert_eq!(calls.len(), 1, "never resent");
    assert_eq!(refused.lock().unwrap().as_deref(), Some("Bearer pw-3"));
    let paid = gw.get(&pending.payment_id).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    let status = requests(&server, &format!("{API}/bill_status/")).await;
    assert_eq!(header(&status[0], "Authorization"), "Bearer rt-4");
    // The new token is the stored one now.
    balance(&gw, "101").await;
    assert_eq!(float_tokens().await.last().unwrap(), "Bearer rt-4");
    assert_eq!(grants().await.len(), 5);
    gw.stop().await;
}

/// A 401 on `bill_payment` is not followed by a new token and a resend: InterIntel documents
/// neither that a 401 comes before any processing nor a duplicate check on `ext_outbound_id`,
/// so the resend could pay twice. The payment is PENDING (a credential problem never makes it
/// FAILED); the refused token is dropped, and `bill_status` gets a new one and decides.
#[tokio::test]
async fn a_401_on_bill_payment_is_not_resent_and_bill_status_decides() {
    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(
        &server,
        "bill_payment/",
        ResponseTemplate::new(401).set_body_json(json!({"detail": "no"})),
    )
    .await;
    mock_service(&server, "bill_status/", ok("00", "Bill payment successful")).await;
    let gw = gateway(&server, "").await;
    let paid = gw
        .pay(pay_request("once-401", "101", "1000000001", 10_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Pending);
    assert_eq!(
        requests(&server, &format!("{API}/bill_payment/"))
            .await
            .len(),
        1,
        "never resent"
    );
    assert_eq!(requests(&server, &format!("{API}/token")).await.len(), 1);
    let settled = gw.get(&paid.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    let status = requests(&server, &format!("{API}/bill_status/")).await;
    assert_eq!(status.len(), 1);
    assert_service_call(&status[0], "rt-2");
    assert_eq!(
        body(&status[0])["ext_outbound_id"],
        json!(paid.provider_reference)
    );
    gw.stop().await;
}

/// A payment whose request never reached `bill_payment`, because no token could be had, is
/// certainly not sent: FAILED ("not sent"), not PENDING for reconciliation.
#[tokio::test]
async fn a_payment_without_a_token_is_failed_not_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/token")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    mock_service(&server, "bill_payment/", ok("00", "paid")).await;
    let gw = gateway(&server, "").await;

    let paid = gw
        .pay(pay_request("ii-no-token", "101", "1000000001", 250_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Failed, "{paid:?}");
    assert!(
        paid.provider_message.starts_with("not sent: "),
        "{}",
        paid.provider_message
    );
    assert!(!paid.provider_message.contains("not sent: not sent"));
    assert!(requests(&server, &format!("{API}/bill_payment/"))
        .await
        .is_empty());
    assert!(!requests(&server, &format!("{API}/token")).await.is_empty());
    // Final: a replay answers the same, nothing more is sent.
    let again = gw
        .pay(pay_request("ii-no-token", "101", "1000000001", 250_000))
        .await;
    assert_eq!(again.payment_id, paid.payment_id);
    assert_eq!(state(&again), pb::PaymentState::Failed);
    assert!(requests(&server, &format!("{API}/bill_payment/"))
        .await
        .is_empty());
    gw.stop().await;
}

/// The billers spec documents no code for "no transaction with this reference" (only `00` is
/// documented; `25` comes from the sibling Airtime API and also means "missing configuration").
/// So a `bill_status` answering `25` never lets the gateway conclude a payment was not sent: a
/// payment left claimed is not FAILED "never sent", and a payment whose call timed out stays
/// PENDING. Nothing is paid again.
#[tokio::test]
async fn a_status_answer_25_never_fails_a_payment_as_not_sent() {
    use billpay_gateway::{
        domain::{
            payment::{CallPhase, PaymentKind},
            Currency, Money, PaymentOrder, PaymentRecord, PaymentState, ProviderId,
        },
        gateway::{reconcile::ReconcileStats, Clock, PaymentSettings},
        store::{keys, memory::MemoryStore, Store},
    };

    let server = MockServer::start().await;
    Tokens::default().mount(&server).await;
    mock_service(&server, "bill_payment/", ResponseTemplate::new(502)).await;
    mock_service(&server, "bill_status/", ok("25", "Transaction not found")).await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    // What a replica that died between claiming the payment and calling InterIntel leaves:
    // the record, claimed a minute ago (past the in-flight expiry), due for reconciliation.
    let now = Clock::default().now_ms();
    let order = PaymentOrder::new(
        ProviderId::InterIntel,
        PaymentKind::Bill,
        "101",
        "1000000001",
        Money::new(Currency::Kes, 250_000),
    );
    let record = PaymentRecord::claimed(
        "ii-claimed".into(),
        order,
        "BPG000000000007".into(),
        now - 60_000,
    );
    let claimed_id = record.payment_id.clone();
    store
        .set(
            &keys::payment(&claimed_id),
            &serde_json::to_vec(&record).unwrap(),
            None,
        )
        .await
        .unwrap();
    store
        .schedule(&keys::reconcile_schedule(), &claimed_id, now - 60_000)
        .await
        .unwrap();
    let gw = TestGateway::start_with(
        ProvidersConfig {
            interintel: Some(config(&server, "")),
            ..ProvidersConfig::default()
        },
        store,
        PaymentSettings {
            in_flight_expiry_ms: 30_000,
            ..PaymentSettings::default()
        },
    )
    .await;

    let stats = ReconcileStats::default();
    assert_eq!(gw.gateway.reconcile_due(&stats).await.unwrap(), 1);
    let [r] = &requests(&server, &format!("{API}/bill_status/")).await[..] else {
        panic!("reconciliation asks bill_status once")
    };
    assert_eq!(body(r)["ext_outbound_id"], "BPG000000000007");
    let after = gw.gateway.load_payment(&claimed_id).await.unwrap().unwrap();
    assert_eq!(
        after.state,
        PaymentState::Pending,
        "{}",
        after.provider_message
    );
    assert_eq!(
        after.call,
        CallPhase::Returned,
        "reconciled as possibly sent"
    );
    let seen = gw.get(&claimed_id).await;
    assert_eq!(state(&seen), pb::PaymentState::Pending);

    // A payment whose call failed upstream: its status query answering 25 settles nothing.
    let paid = gw
        .pay(pay_request("ii-upstream", "101", "1000000002", 250_000))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Pending);
    let seen = gw.get(&paid.payment_id).await;
    assert_eq!(state(&seen), pb::PaymentState::Pending);
    assert_ne!(
        seen.provider_code, "25",
        "an unknown outcome records no code"
    );
    assert_eq!(
        requests(&server, &format!("{API}/bill_payment/"))
            .await
            .len(),
        1,
        "nothing is paid again"
    );
    gw.stop().await;
}

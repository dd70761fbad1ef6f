//! Interswitch Quickteller end to end: real tonic client -> real gateway -> real HTTP -> a
//! wiremock server that plays Interswitch. Every request's exact HTTP is checked: method, path
//! and query, the InterswitchAuth headers with the Signature recomputed here from the captured
//! Timestamp and Nonce, the body, and kobo amounts.

mod common;

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use billpay_gateway::{config::ProvidersConfig, pb, providers::interswitch::auth::SignatureMethod};
use common::*;
use serde_json::{json, Value};
use sha2::Digest;
use tonic::Code;
use wiremock::{
    matchers::{body_json, method, path, query_param},
    Mock, MockServer, Request, ResponseTemplate,
};

const API: &str = "/api/v2/quickteller";

async fn gateway_for(server: &MockServer, method: SignatureMethod, timeout_ms: u64) -> TestGateway {
    TestGateway::start(ProvidersConfig {
        interswitch: Some(interswitch_config(&server.uri(), method, timeout_ms)),
        ..Default::default()
    })
    .await
}

/// Java `URLEncoder.encode(s, UTF-8)`, written out here so that the test does not share the
/// gateway's encoder: letters, digits and `.-*_` stay, space becomes `+`, every other byte
/// `%XX` in upper case.
fn java_url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Recomputes the Signature independently of the gateway's code and checks every auth header.
fn assert_signed(request: &Request, expected_method: &str, sig: SignatureMethod) {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(request.method.as_str(), expected_method);
    assert_eq!(
        header("Authorization"),
        format!("InterswitchAuth {}", STANDARD.encode(CLIENT_ID))
    );
    assert_eq!(header("TerminalID"), TERMINAL_ID);
    assert_eq!(header("Content-Type"), "application/json");
    let timestamp = header("Timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = timestamp.parse().expect("Timestamp is an integer");
    assert!(
        (ts - now).abs() < 60,
        "Timestamp must be unix seconds, got {timestamp}"
    );
    let nonce = header("Nonce");
    assert!(!nonce.is_empty() && nonce.len() <= 64);
    // The URL as called (wiremock's `url` names no port, so rebuild it from the Host header),
    // with http:// signed as https://, form-encoded as Java URLEncoder.
    let query = request
        .url
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("https://{}{}{query}", header("Host"), request.url.path());
    let encoded = java_url_encode(&url);
    let canonical =
        format!("{expected_method}&{encoded}&{timestamp}&{nonce}&{CLIENT_ID}&{CLIENT_SECRET}");
    let (name, digest) = match sig {
        SignatureMethod::Sha1 => ("SHA1", sha1::Sha1::digest(canonical.as_bytes()).to_vec()),
        SignatureMethod::Sha256 => (
            "SHA256",
            sha2::Sha256::digest(canonical.as_bytes()).to_vec(),
        ),
        SignatureMethod::Sha512 => (
            "SHA512",
            sha2::Sha512::digest(canonical.as_bytes()).to_vec(),
        ),
    };
    assert_eq!(header("SignatureMethod"), name);
    assert_eq!(header("Signature"), STANDARD.encode(digest));
}

async fn requests_to(server: &MockServer, path_suffix: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == format!("{API}{path_suffix}"))
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

/// The customer validation a payment makes (and the catalog it checks first).
async fn mock_validation(server: &MockServer, amount_type: u8, amount_kobo: &str) {
    mock_interswitch_items(server).await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/customers/validations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"paymentCode": "90101", "customerId": "0000000001",
                "fullName": "Ada Obi", "responseCode": "90000",
                "amount": amount_kobo, "amountType": amount_type.to_string(),
                "amountTypeDescription": "rule"}]
        })))
        .mount(server)
        .await;
}

async fn mock_advice(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("{API}/payments/advices")))
        .respond_with(response)
        .mount(server)
        .await;
}

#[tokio::test]
async fn catalog_reads_speak_interswitch_http() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/categorys")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"categorys": [
            {"categoryid": 1, "categoryname": "Utilities", "categorydescription": "Power"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"billers": [
            {"billerid": "901", "billername": "IKEDC", "shortName": "IKEDC", "categoryid": "1", "currencyCode": "566"},
            {"billerid": "902", "billername": "DStv", "shortName": "DSTV", "categoryid": "2", "currencyCode": "566"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/categorys/1/billers")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"billers": [
            {"billerid": "901", "billername": "IKEDC", "categoryid": "1", "currencyCode": "566"}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers/902/paymentitems")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"paymentitems": [
            {"billerid": "902", "paymentitemname": "Compact", "paymentCode": "90201",
             "isAmountFixed": true, "amount": "1050000", "itemFee": "10000", "currencyCode": "566"}]})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let mut catalog = gw.catalog();
    let isw = pb::Provider::Interswitch as i32;

    let cats = catalog
        .list_categories(pb::ListCategoriesRequest {
            provider: isw,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cats.categories[0].category_id, "1");
    assert_eq!(cats.categories[0].name, "Utilities");

    // Paginated: one biller per page.
    let page1 = catalog
        .list_billers(pb::ListBillersRequest {
            provider: isw,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page1.billers.len(), 1);
    assert_eq!(page1.billers[0].currency_code, "NGN");
    assert!(!page1.next_page_token.is_empty());
    let page2 = catalog
        .list_billers(pb::ListBillersRequest {
            provider: isw,
            page_size: 1,
            page_token: page1.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page2.billers[0].biller_id, "902");
    assert!(page2.next_page_token.is_empty());

    let by_category = catalog
        .list_billers(pb::ListBillersRequest {
            provider: isw,
            category_id: "1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_category.billers.len(), 1);

    let products = catalog
        .list_products(pb::ListProductsRequest {
            provider: isw,
            biller_id: "902".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p = &products.products[0];
    assert_eq!(p.product_id, "90201");
    assert!(p.amount_fixed);
    assert_eq!(p.amount, ngn(1_050_000));
    assert_eq!(p.fee, ngn(10_000));

    for (suffix, count) in [
        ("/categorys", 1),
        ("/billers", 1), // the second page came from the cache
        ("/categorys/1/billers", 1),
        ("/billers/902/paymentitems", 1),
    ] {
        let reqs = requests_to(&server, suffix).await;
        assert_eq!(reqs.len(), count, "{suffix}");
        for r in &reqs {
            assert_signed(r, "GET", SignatureMethod::Sha1);
            assert_eq!(r.url.query(), None);
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn validation_posts_the_documented_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/customers/validations")))
        .and(body_json(json!({"customers": [{"customerId": "0434556574", "paymentCode": "13701"}]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"paymentCode": "13701", "customerId": "0434556574", "fullName": "Ada Obi",
                "responseCode": "90000", "amount": "1500000", "amountType": "4",
                "amountTypeDescription": "Less than maximum"}]})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let v = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            provider: pb::Provider::Interswitch as i32,
            product_id: "13701".into(),
            customer_id: "0434556574".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.customer_name, "Ada Obi");
    let rule = v.amount_rule.unwrap();
    assert_eq!(rule.kind, pb::AmountRuleKind::LessThanMaximum as i32);
    assert_eq!(rule.amount, ngn(1_500_000));
    let reqs = requests_to(&server, "/customers/validations").await;
    assert_eq!(reqs.len(), 1);
    assert_signed(&reqs[0], "POST", SignatureMethod::Sha1);
    gw.stop().await;
}

#[tokio::test]
async fn refused_customer_is_a_precondition_with_the_provider_code() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/customers/validations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"customerId": "x", "responseCode": "20050", "amountType": "0"}]})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let status = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            provider: pb::Provider::Interswitch as i32,
            product_id: "90101".into(),
            customer_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_REJECTED");
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert_eq!(
        details.error_info().unwrap().metadata["provider_code"],
        "20050"
    );
    gw.stop().await;
}

#[tokio::test]
async fn payment_advice_then_query_by_request_reference() {
    let server = MockServer::start().await;
    mock_validation(&server, 0, "0").await;
    mock_advice(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "TransactionReference": "ISW|1", "ResponseCode": "90009", "ResponseCodeGrouping": "PENDING"})),
    )
    .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let mut payments = gw.payments();
    let mut request = payment_request("advice-1", "90101", "0000000001", 150_000);
    request.contact = Some(pb::Contact {
        mobile_number: "2348031234567".into(),
        email: "ada@example.com".into(),
        ..Default::default()
    });
    let payment = payments
        .create_payment(request)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&payment), pb::PaymentState::Pending);
    let reference = payment.provider_reference.clone();
    assert_eq!(reference.len(), 12);
    assert!(reference.starts_with(PREFIX) && reference.bytes().all(|b| b.is_ascii_digit()));

    let advices = requests_to(&server, "/payments/advices").await;
    assert_eq!(advices.len(), 1);
    assert_signed(&advices[0], "POST", SignatureMethod::Sha1);
    assert_eq!(
        body(&advices[0]),
        json!({"TerminalId": TERMINAL_ID, "paymentCode": "90101", "customerId": "0000000001",
               "customerMobile": "2348031234567", "customerEmail": "ada@example.com",
               "amount": "150000", "requestReference": reference})
    );

    Mock::given(method("GET"))
        .and(path(format!("{API}/transactions")))
        .and(query_param("requestreference", reference.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": "90000", "TransactionResponseCode": "90000",
            "ResponseCodeGrouping": "SUCCESSFUL", "transactionRef": "ISW|1", "amount": "150000"})))
        .mount(&server)
        .await;
    let refreshed = payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: payment.payment_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&refreshed), pb::PaymentState::Succeeded);
    assert_eq!(refreshed.status_checks, 1);
    let queries = requests_to(&server, "/transactions").await;
    assert_eq!(queries.len(), 1);
    assert_signed(&queries[0], "GET", SignatureMethod::Sha1);
    assert_eq!(
        queries[0].url.query(),
        Some(format!("requestreference={reference}").as_str())
    );

    // Final now: GetPayment answers from the journal without asking again.
    payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: payment.payment_id,
        })
        .await
        .unwrap();
    assert_eq!(requests_to(&server, "/transactions").await.len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn configured_signature_methods_are_used() {
    for sig in [SignatureMethod::Sha256, SignatureMethod::Sha512] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{API}/categorys")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"categorys": []})))
            .mount(&server)
            .await;
        let gw = gateway_for(&server, sig, 5_000).await;
        gw.catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: pb::Provider::Interswitch as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        let reqs = requests_to(&server, "/categorys").await;
        assert_signed(&reqs[0], "GET", sig);
        gw.stop().await;
    }
}

#[tokio::test]
async fn amount_rules_are_enforced_at_their_edges() {
    // (amountType, passes at 99_999, at 100_000, at 100_001)
    let table = [
        (0u8, true, true, true),
        (1, false, true, true),
        (2, false, false, true),
        (3, true, true, false),
        (4, true, false, false),
        (5, false, true, false),
    ];
    for (amount_type, below, equal, above) in table {
        let server = MockServer::start().await;
        mock_validation(&server, amount_type, "100000").await;
        mock_advice(
            &server,
            ResponseTemplate::new(200).set_body_json(
                json!({"ResponseCode": "90000", "ResponseCodeGrouping": "SUCCESSFUL"}),
            ),
        )
        .await;
        let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
        let mut payments = gw.payments();
        let mut expected_advices = 0;
        for (kobo, passes) in [(99_999, below), (100_000, equal), (100_001, above)] {
            let id = format!("rule-{amount_type}-{kobo}");
            let result = payments
                .create_payment(payment_request(&id, "90101", "0000000001", kobo))
                .await;
            if passes {
                let p = result.unwrap().into_inner().payment.unwrap();
                assert_eq!(
                    state(&p),
                    pb::PaymentState::Succeeded,
                    "type {amount_type} {kobo}"
                );
                expected_advices += 1;
            } else {
                let status =
                    result.expect_err(&format!("type {amount_type} {kobo} must be refused"));
                let fields = assert_error(&status, Code::InvalidArgument, "AMOUNT_RULE_VIOLATED");
                assert_eq!(fields, vec!["amount.minor_units"]);
                assert!(
                    status.message().starts_with("amount.minor_units: must be "),
                    "{status:?}"
                );
            }
            let advices = requests_to(&server, "/payments/advices").await;
            assert_eq!(advices.len(), expected_advices, "type {amount_type} {kobo}");
            if passes {
                assert_eq!(body(advices.last().unwrap())["amount"], kobo.to_string());
            }
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn invalid_requests_are_refused_before_any_http() {
    let server = MockServer::start().await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let mut payments = gw.payments();
    let isw = pb::Provider::Interswitch as i32;

    let cases: Vec<(pb::CreatePaymentRequest, Vec<&str>)> = vec![
        (
            pb::CreatePaymentRequest::default(),
            vec![
                "request_id",
                "provider",
                "product_id",
                "customer_id",
                "amount",
            ],
        ),
        (
            pb::CreatePaymentRequest {
                amount: Some(pb::Money {
                    currency_code: "ngn".into(),
                    minor_units: 0,
                }),
                ..payment_request("ok-id", "90101", "0000000001", 1)
            },
            vec!["amount.currency_code", "amount.minor_units"],
        ),
        (
            pb::CreatePaymentRequest {
                request_id: "has space".into(),
                product_id: "x".repeat(21),
                customer_id: "y".repeat(51),
                ..payment_request("", "", "", -5)
            },
            vec![
                "request_id",
                "product_id",
                "customer_id",
                "amount.minor_units",
            ],
        ),
        (
            pb::CreatePaymentRequest {
                contact: Some(pb::Contact {
                    mobile_number: "not-a-phone".into(),
                    email: "nope".into(),
                    ..Default::default()
                }),
                ..payment_request("ok-id-2", "90101", "0000000001", 100)
            },
            vec!["contact.mobile_number", "contact.email"],
        ),
        (
            pb::CreatePaymentRequest {
                provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
                    Default::default(),
                )),
                ..payment_request("ok-id-3", "90101", "0000000001", 100)
            },
            vec!["switch"],
        ),
        (
            pb::CreatePaymentRequest {
                provider: 99,
                ..payment_request("ok-id-4", "90101", "0000000001", 100)
            },
            vec!["provider"],
        ),
    ];
    for (request, fields) in cases {
        let status = payments.create_payment(request).await.unwrap_err();
        let got = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(got, fields);
        // The message names the same fields, in the same order.
        let named: Vec<&str> = status
            .message()
            .split("; ")
            .map(|v| v.split(": ").next().unwrap())
            .collect();
        assert_eq!(named, fields, "{}", status.message());
    }
    // Amount in a currency Interswitch does not pay in.
    let kes = pb::CreatePaymentRequest {
        amount: Some(pb::Money {
            currency_code: "KES".into(),
            minor_units: 100,
        }),
        ..payment_request("kes-1", "90101", "0000000001", 1)
    };
    let status = payments.create_payment(kes).await.unwrap_err();
    assert_eq!(
        assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
        vec!["amount.currency_code"]
    );

    let status = payments
        .get_payment(pb::GetPaymentRequest {
            payment_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
        vec!["payment_id"]
    );
    let status = payments
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            otp: "12".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
        vec!["request_id", "payment_id", "otp"]
    );
    let status = gw
        .customers()
        .validate_customer(pb::ValidateCustomerRequest {
            provider: isw,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
        vec!["product_id", "customer_id"]
    );
    let status = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: isw,
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    let status = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: isw,
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST"),
        vec!["page_token"]
    );

    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "no HTTP call may be made"
    );
    gw.stop().await;
}

#[tokio::test]
async fn payment_faults_leave_the_payment_pending() {
    let faults = [
        (
            "http-500",
            ResponseTemplate::new(500).set_body_string("oops"),
        ),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(1_500))
                .set_body_json(json!({"ResponseCode": "90000"})),
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>not json</html>"),
        ),
        (
            "no-code",
            ResponseTemplate::new(200).set_body_json(json!({"TransactionReference": "x"})),
        ),
        (
            "unknown-code",
            ResponseTemplate::new(200).set_body_json(json!({"ResponseCode": "70001"})),
        ),
    ];
    for (name, response) in faults {
        let server = MockServer::start().await;
        mock_validation(&server, 0, "0").await;
        mock_advice(&server, response).await;
        let gw = gateway_for(&server, SignatureMethod::Sha1, 500).await;
        let p = gw
            .payments()
            .create_payment(payment_request(
                &format!("fault-{name}"),
                "90101",
                "0000000001",
                5_000,
            ))
            .await
            .unwrap_or_else(|s| panic!("{name}: a payment fault is not an RPC error: {s:?}"))
            .into_inner()
            .payment
            .unwrap();
        assert_eq!(state(&p), pb::PaymentState::Pending, "{name}");
        assert!(!p.provider_reference.is_empty());
        assert_eq!(
            requests_to(&server, "/payments/advices").await.len(),
            1,
            "{name}: never retried"
        );
        gw.stop().await;
    }
}

/// A duplicate-reference answer (`30020` "duplicate transfer code", `10001` "check for a
/// duplicate request reference, query the transaction") is about an earlier request with our
/// reference, not a refusal: PENDING whatever the grouping says, and the transaction query
/// decides. A 401 on the advice is not resent either (signed per request, no token to renew):
/// PENDING, and the query decides.
#[tokio::test]
async fn a_duplicate_reference_answer_is_pending_and_the_query_decides() {
    let answers = [
        (
            "30020",
            ResponseTemplate::new(200).set_body_json(json!({
                "ResponseCode": "30020", "ResponseCodeGrouping": "FAILED",
                "ResponseDescription": "Duplicate transfer code"})),
        ),
        (
            "10001",
            ResponseTemplate::new(400).set_body_json(json!({
                "errors": [{"code": "10001", "message": "Unknown error"}],
                "ResponseCodeGrouping": "FAILED"})),
        ),
        (
            "401",
            ResponseTemplate::new(401).set_body_json(json!({"message": "bad signature"})),
        ),
    ];
    for (name, response) in answers {
        let server = MockServer::start().await;
        mock_validation(&server, 0, "0").await;
        mock_advice(&server, response).await;
        let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
        let p = gw
            .pay(payment_request(
                &format!("dup-{name}"),
                "90101",
                "0000000001",
                5_000,
            ))
            .await;
        assert_eq!(state(&p), pb::PaymentState::Pending, "{name}: never FAILED");
        assert_eq!(
            requests_to(&server, "/payments/advices").await.len(),
            1,
            "{name}: never resent"
        );
        Mock::given(method("GET"))
            .and(path(format!("{API}/transactions")))
            .and(query_param(
                "requestreference",
                p.provider_reference.as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ResponseCode": "90000", "TransactionResponseCode": "90000",
                "transactionRef": "ISW|7", "amount": "5000"})))
            .mount(&server)
            .await;
        let settled = gw.get(&p.payment_id).await;
        assert_eq!(state(&settled), pb::PaymentState::Succeeded, "{name}");
        assert_eq!(requests_to(&server, "/transactions").await.len(), 1);
        gw.stop().await;
    }
}

#[tokio::test]
async fn declined_payment_is_ok_with_state_failed() {
    let server = MockServer::start().await;
    mock_validation(&server, 0, "0").await;
    mock_advice(
        &server,
        ResponseTemplate::new(400).set_body_json(
            json!({"errors": [{"code": "70120", "message": "Biller service unavailable"}]}),
        ),
    )
    .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let p = gw
        .pay(payment_request("declined-1", "90101", "0000000001", 5_000))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Failed);
    assert_eq!(p.provider_code, "70120");
    assert_eq!(p.provider_message, "Biller service unavailable");
    gw.stop().await;
}

#[tokio::test]
async fn read_faults_are_unavailable_with_error_info() {
    let faults = [
        ("http-503", ResponseTemplate::new(503)),
        (
            "timeout",
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(1_500))
                .set_body_json(json!({"categorys": []})),
        ),
        ("garbage", ResponseTemplate::new(200).set_body_string("}{")),
    ];
    for (name, response) in faults {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(format!("{API}/categorys")))
            .respond_with(response)
            .mount(&server)
            .await;
        let gw = gateway_for(&server, SignatureMethod::Sha1, 500).await;
        let status = gw
            .catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: pb::Provider::Interswitch as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&status, Code::Unavailable, "PROVIDER_UNAVAILABLE");
        assert!(retry_delay(&status).is_some(), "{name}: RetryInfo");
        let info = tonic_types::StatusExt::get_error_details(&status)
            .error_info()
            .unwrap()
            .clone();
        assert_eq!(info.metadata["provider"], "PROVIDER_INTERSWITCH");
        assert!(
            !info.metadata.contains_key("operation") && !status.message().contains("list_"),
            "{name}: no internal operation name reaches the caller: {status:?}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn credential_refusal_is_the_gateways_problem() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "bad signature"})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let status = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    // Never UNAUTHENTICATED to the caller: the caller's credentials are not at fault.
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    gw.stop().await;
}

#[tokio::test]
async fn idempotent_create_calls_the_provider_once() {
    let server = MockServer::start().await;
    mock_validation(&server, 0, "0").await;
    mock_advice(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"ResponseCode": "90000", "ResponseCodeGrouping": "SUCCESSFUL"})),
    )
    .await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let mut payments = gw.payments();
    let first = payments
        .create_payment(payment_request("same-key", "90101", "0000000001", 7_000))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    let again = payments
        .create_payment(payment_request("same-key", "90101", "0000000001", 7_000))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(first, again);
    let status = payments
        .create_payment(payment_request("same-key", "90101", "0000000001", 7_001))
        .await
        .unwrap_err();
    assert_error(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(requests_to(&server, "/payments/advices").await.len(), 1);
    // The replay did not validate the customer again either.
    assert_eq!(
        requests_to(&server, "/customers/validations").await.len(),
        1
    );
    gw.stop().await;
}

#[tokio::test]
async fn unsupported_operations_name_the_provider() {
    let server = MockServer::start().await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let mut accounts = pb::account_service_client::AccountServiceClient::new(gw.channel.clone());
    let status = accounts
        .get_balance(pb::GetBalanceRequest {
            provider: pb::Provider::Interswitch as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED");
    let info = tonic_types::StatusExt::get_error_details(&status)
        .error_info()
        .unwrap()
        .clone();
    assert_eq!(info.metadata["provider"], "PROVIDER_INTERSWITCH");
    assert_eq!(info.metadata["capability"], "CAPABILITY_GET_BALANCE");
    let status = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: pb::Provider::Onepipe as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED");
    let providers = gw
        .catalog()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(providers.len(), 1);
    assert!(providers[0]
        .capabilities
        .contains(&(pb::Capability::CreatePayment as i32)));
    assert!(!providers[0]
        .capabilities
        .contains(&(pb::Capability::GetBalance as i32)));
    gw.stop().await;
}

#[tokio::test]
async fn an_open_circuit_fails_fast_and_starts_no_payment() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/categorys")))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    mock_validation(&server, 0, "0").await;
    let gw = gateway_for(&server, SignatureMethod::Sha1, 5_000).await;
    let isw = pb::Provider::Interswitch as i32;
    // The default breaker opens after 5 transport failures in a row.
    for _ in 0..6 {
        let status = gw
            .catalog()
            .list_categories(pb::ListCategoriesRequest {
                provider: isw,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&status, Code::Unavailable, "PROVIDER_UNAVAILABLE");
        assert!(retry_delay(&status).is_some());
    }
    assert_eq!(
        requests_to(&server, "/categorys").await.len(),
        5,
        "the 6th was not sent"
    );

    let status = gw
        .payments()
        .create_payment(payment_request("breaker-1", "90101", "0000000001", 1_000))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "PROVIDER_UNAVAILABLE");
    assert!(requests_to(&server, "/payments/advices").await.is_empty());
    let id = billpay_gateway::domain::PaymentRecord::id_for_request("breaker-1");
    assert!(
        gw.gateway.load_payment(&id).await.unwrap().is_none(),
        "nothing recorded"
    );
    gw.stop().await;
}

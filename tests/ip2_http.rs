//! Intelworld IP2 end to end: real tonic client -> real gateway -> real HTTP -> a wiremock
//! server that plays IP2. Every request's exact HTTP is checked: method, path and query, the
//! ApiAuth headers with Content-MD5 and the signature recomputed here (with the hmac and md-5
//! crates directly, not the gateway's signing code) under the documented reading, the body's
//! PascalCase field names, and whole-shilling amounts. Bad orders are refused before any call.
//! An answer echoing another RequestId, CustomerId or Amount never settles a payment: it ends
//! NEEDS_ATTENTION with the difference; IP2 documents no "not found" answer, so a claimed
//! payment missing from the listing is reconciled, never failed as "not sent".

mod common;

use base64::{engine::general_purpose::STANDARD, Engine};
use std::sync::Arc;

use billpay_gateway::{
    config::ProvidersConfig,
    domain::{
        options::Ip2Options,
        payment::{CallPhase, PaymentKind},
        Currency, Money, PaymentOptions, PaymentOrder, PaymentRecord, PaymentState, ProviderId,
    },
    gateway::{reconcile::ReconcileStats, registry, CatalogSettings, Gateway, PaymentSettings},
    pb,
    store::{keys, memory::MemoryStore, Store},
};
use common::*;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tonic::Code;
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, Request, ResponseTemplate,
};

const IP2: i32 = pb::Provider::IntelworldIp2 as i32;

async fn gateway_for(server: &MockServer, page_size: u32) -> TestGateway {
    TestGateway::start(ProvidersConfig {
        intelworld_ip2: Some(ip2_config(&server.uri(), page_size, 2_000)),
        ..ProvidersConfig::default()
    })
    .await
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query(request: &Request, name: &str) -> String {
    request
        .url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("missing query parameter {name} in {}", request.url))
}

/// Checks every ApiAuth header of `request`. `signed` are the ten fields after SubscriptionId
/// and AccountId, then Reference: `[RequestId, BatchId, Amount, PaymentMethodId, ProductId,
/// CurrencyCode, CountryCode, Memo, ChannelId]`.
fn assert_api_auth(request: &Request, expected_method: &str, signed: [&str; 9]) {
    assert_eq!(request.method.as_str(), expected_method);
    assert_eq!(header(request, "X-ApiAuth-ApiKey"), IP2_API_KEY);
    assert_eq!(
        header(request, "X-Content-Type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(query(request, "subscriptionId"), IP2_SUBSCRIPTION);
    // X-Date: "Thursday, 18 June 2015 07:30:19 GMT".
    let date = header(request, "X-Date");
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 6, "{date}");
    assert!(parts[0].ends_with(',') && parts[5] == "GMT", "{date}");
    assert_eq!(parts[1].len(), 2, "two-digit day: {date}");
    assert_eq!(parts[4].len(), 8, "HH:mm:ss: {date}");
    // Content-MD5 of the exact bytes sent.
    let md5 = STANDARD.encode(Md5::digest(&request.body));
    assert_eq!(header(request, "Content-MD5"), md5);
    // The signature, recomputed.
    let account = query(request, "accountId");
    let mut representation = String::new();
    representation.push_str(IP2_SUBSCRIPTION);
    representation.push_str(&account);
    for field in signed {
        representation.push_str(field);
    }
    let mut representation = representation.to_lowercase();
    representation.push_str(&date);
    let key = STANDARD.encode(Md5::digest(IP2_API_PASSWORD.as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(representation.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(
        header(request, "Authorization"),
        format!("ApiAuth {signature}")
    );
}

const UNSIGNED: [&str; 9] = ["", "", "", "", "", "", "", "", ""];

async fn requests_to(server: &MockServer, suffix: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == suffix)
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn ip2_options(msisdn: &str, memo: &str) -> pb::Ip2PaymentOptions {
    pb::Ip2PaymentOptions {
        payment_method_id: "MTNMM".into(),
        payment_method_reference: [("MSISDN".to_owned(), msisdn.to_owned())].into(),
        memo: memo.into(),
        ..pb::Ip2PaymentOptions::default()
    }
}

fn debit_request(
    request_id: &str,
    amount: Option<pb::Money>,
    memo: &str,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: IP2,
        customer_id: "256772000001".into(),
        amount,
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            ip2_options("256772000001", memo),
        )),
        ..pb::CreatePaymentRequest::default()
    }
}

#[tokio::test]
async fn catalog_and_account_reads_speak_ip2_http() {
    let server = MockServer::start().await;
    let method_json = |id: &str| {
        json!({"PaymentProviderId": id, "Name": format!("{id} name"), "ShortDescription": "short",
               "Currencies": [{"CurrencyCode": "UGX"}], "Countries": [{"CountryCode": "UG"}]})
    };
    // Two pages of two: the gateway reads until a short page.
    Mock::given(method("GET"))
        .and(path("/paymentMethods"))
        .and(query_param("offset", "0"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([method_json("MTNMM"), method_json("AIRTELMM")])),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/paymentMethods"))
        .and(query_param("offset", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([method_json("AFRI")])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"ProductId": "AIRTIME-MTN", "Name": "MTN airtime", "CurrencyCode": "UGX", "CountryCode": "UG"}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccountId": IP2_ACCOUNT, "SubscriptionId": IP2_SUBSCRIPTION, "AccountType": "Payment",
            "CurrencyCode": "UGX", "CountryCode": "UG", "AccountStatus": "Active", "Name": "Float",
            "MinimumTransactionAmount": 500, "MaximumTransactionAmount": 2000000,
            "MinimumBalance": 0, "Balance": 750000})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/accounts/balances"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(750000)))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 2).await;

    let methods = gw
        .catalog()
        .list_payment_methods(pb::ListPaymentMethodsRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .payment_methods;
    let ids: Vec<&str> = methods
        .iter()
        .map(|m| m.payment_method_id.as_str())
        .collect();
    assert_eq!(ids, ["MTNMM", "AIRTELMM", "AFRI"]);
    assert_eq!(methods[0].currency_codes, ["UGX"]);
    assert_eq!(methods[0].country_codes, ["UG"]);
    let pages = requests_to(&server, "/paymentMethods").await;
    assert_eq!(pages.len(), 2);
    for (request, offset) in pages.iter().zip(["0", "2"]) {
        assert_api_auth(request, "GET", UNSIGNED);
        assert_eq!(query(request, "offset"), offset);
        assert_eq!(query(request, "count"), "2");
        assert_eq!(query(request, "accountId"), IP2_ACCOUNT);
    }

    // Products: a flat list, no biller needed.
    let products = gw
        .catalog()
        .list_products(pb::ListProductsRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].product_id, "AIRTIME-MTN");
    assert_eq!(products[0].name, "MTN airtime");
    let request = &requests_to(&server, "/products").await[0];
    assert_api_auth(request, "GET", UNSIGNED);
    assert_eq!(query(request, "offset"), "0");

    let accounts = gw
        .accounts()
        .list_accounts(pb::ListAccountsRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert_eq!(accounts.len(), 1);
    let a = &accounts[0];
    assert_eq!(
        (a.account_id.as_str(), a.r#type.as_str(), a.status.as_str()),
        (IP2_ACCOUNT, "Payment", "Active")
    );
    assert_eq!(a.min_transaction_amount, ugx(500));
    assert_eq!(a.max_transaction_amount, ugx(2_000_000));
    assert_eq!(a.minimum_balance, None, "0 means no minimum");
    assert_api_auth(&requests_to(&server, "/accounts").await[0], "GET", UNSIGNED);

    let balances = gw
        .accounts()
        .get_balance(pb::GetBalanceRequest {
            provider: IP2,
            account_id: "ACC-OTHER".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .balances;
    assert_eq!(balances[0].available, ugx(750_000));
    assert_eq!(balances[0].account_id, "ACC-OTHER");
    let request = &requests_to(&server, "/accounts/balances").await[0];
    assert_eq!(query(request, "accountId"), "ACC-OTHER");
    assert_api_auth(request, "GET", UNSIGNED);
    gw.stop().await;
}

#[tokio::test]
async fn a_debit_sends_the_documented_body_signed_and_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(|request: &Request| {
            // Echo the RequestId, as IP2 would for this transaction.
            let request_id = body(request)[0]["RequestId"].clone();
            ResponseTemplate::new(200).set_body_json(json!({
                "ResponseCode": 0, "ResponseMessage": "Request accepted",
                "Data": {"TransactionId": "IP2T1", "RequestId": request_id, "Amount": 25000,
                         "CurrencyCode": "UGX", "CustomerId": "cust-42", "ProductId": "AIRTIME-MTN",
                         "TransactionStatus": "Successful", "StatusMessage": "Transaction completed"}}))
        })
        .mount(&server)
        .await;
    // The product is one IP2 lists (checked before anything is recorded or sent).
    Mock::given(method("GET"))
        .and(path("/products"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"ProductId": "AIRTIME-MTN", "Name": "MTN airtime", "CurrencyCode": "UGX", "CountryCode": "UG"}
        ])))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let mut request = debit_request("ip2-debit-1", ugx(25_000), "Airtime for Okello");
    request.product_id = "AIRTIME-MTN".into();
    request.metadata = [("order".to_owned(), "A-17".to_owned())].into();
    if let Some(pb::create_payment_request::ProviderOptions::Ip2(o)) =
        request.provider_options.as_mut()
    {
        o.product_reference = [("Msisdn".to_owned(), "256772000001".to_owned())].into();
        o.channel_reference = "pos-7".into();
        o.customer_reference = "cust-42".into();
    }
    let payment = gw.pay(request).await;
    assert_eq!(state(&payment), pb::PaymentState::Succeeded);
    assert_eq!(payment.provider_transaction_id, "IP2T1");
    assert_eq!(payment.provider_message, "Transaction completed");

    let requests = requests_to(&server, "/transactions/debits").await;
    assert_eq!(requests.len(), 1, "a payment is sent once");
    let request = &requests[0];
    let reference = payment.provider_reference.as_str();
    assert!(
        reference.starts_with("BPG") && reference.len() == 15,
        "{reference}"
    );
    assert_eq!(
        body(request),
        json!([{
            "BatchId": reference, "RequestId": reference,
            "PaymentMethodId": "MTNMM", "PaymentMethodReference": {"MSISDN": "256772000001"},
            "Metadata": {"order": "A-17"},
            "ProductId": "AIRTIME-MTN", "ProductReference": {"Msisdn": "256772000001"},
            "Amount": 25000, "CurrencyCode": "UGX", "CountryCode": "UG",
            "Memo": "Airtime for Okello", "ChannelId": IP2_CHANNEL,
            "ChannelReference": {"Reference": "pos-7"}, "CustomerId": "cust-42"
        }])
    );
    assert_eq!(query(request, "accountId"), IP2_ACCOUNT);
    assert_api_auth(
        request,
        "POST",
        [
            reference,
            reference,
            "25000",
            "MTNMM",
            "AIRTIME-MTN",
            "UGX",
            "UG",
            "Airtime for Okello",
            IP2_CHANNEL,
        ],
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_credit_goes_to_transactions_credits() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transactions/credits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": 0, "ResponseMessage": "Request accepted", "Data": {}})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let collection = gw
        .payments()
        .create_collection(pb::CreateCollectionRequest {
            request_id: "ip2-credit-1".into(),
            provider: IP2,
            payer_id: "256772000009".into(),
            amount: ugx(1),
            ip2: Some(pb::Ip2PaymentOptions {
                account_id: "ACC-COLLECT".into(),
                channel_id: "USSD".into(),
                country_code: "UG".into(),
                ..ip2_options("256772000009", "School fees")
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    // ResponseCode 0 alone says "accepted": the payment stays PENDING until a status says.
    assert_eq!(state(&collection), pb::PaymentState::Pending);
    assert_eq!(collection.kind, pb::PaymentKind::Collection as i32);
    let request = &requests_to(&server, "/transactions/credits").await[0];
    let reference = collection.provider_reference.as_str();
    let sent = body(request);
    assert_eq!(sent[0]["Amount"], json!(1), "UGX 1 is sent as 1");
    assert_eq!(sent[0]["CustomerId"], "256772000009");
    assert_eq!(sent[0]["ChannelId"], "USSD");
    assert!(sent[0].get("ProductId").is_none());
    assert_eq!(query(request, "accountId"), "ACC-COLLECT");
    assert_api_auth(
        request,
        "POST",
        [
            reference,
            reference,
            "1",
            "MTNMM",
            "",
            "UGX",
            "UG",
            "School fees",
            "USSD",
        ],
    );
    assert!(requests_to(&server, "/transactions/debits")
        .await
        .is_empty());
}

#[tokio::test]
#[allow(deprecated)] // ListPayments, the old name of ListProviderTransactions, keeps working.
async fn list_payments_sends_the_date_range_and_maps_the_listing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/transactions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"TransactionId": "IP2T9", "BatchId": "B9", "AccountId": IP2_ACCOUNT, "RequestId": "BPG000000000009",
             "CurrencyCode": "UGX", "Amount": 12000, "PaymentMethodId": "MTNMM", "ProductId": "AIRTIME-MTN",
             "ChannelId": "API", "Memo": "Airtime", "TransactionType": "Debit",
             "TransactionStatus": "Successful", "StatusMessage": "Done", "Fee": 150, "Commission": 20,
             "CustomerId": "c1", "CreatedOn": "2025-11-20T10:00:00Z"},
            {"TransactionId": "IP2T10", "RequestId": "X", "CurrencyCode": "UGX", "Amount": "500",
             "TransactionType": "Credit", "TransactionStatus": "Processing", "CreatedOn": "2025-11-20T11:00:00Z"},
            {"TransactionId": "IP2T11", "RequestId": "Y", "CurrencyCode": "UGX", "Amount": 1,
             "TransactionType": "Debit", "TransactionStatus": "Failed"}
        ])))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let listed = gw
        .payments()
        .list_payments(pb::ListPaymentsRequest {
            provider: IP2,
            page_size: 2,
            start_time: Some(prost_types::Timestamp {
                seconds: 1_763_596_800, // 2025-11-20T00:00:00Z
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 1_763_683_200, // 2025-11-21T00:00:00Z
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.transactions.len(), 2);
    assert!(!listed.next_page_token.is_empty(), "a third item follows");
    let t = &listed.transactions[0];
    assert_eq!(t.provider_transaction_id, "IP2T9");
    assert_eq!(t.provider_reference, "BPG000000000009");
    assert_eq!(t.state, pb::PaymentState::Succeeded as i32);
    assert_eq!(t.amount, ugx(12_000));
    assert_eq!(t.fee, ugx(150));
    assert_eq!(t.commission, ugx(20));
    assert_eq!(
        (
            t.product_id.as_str(),
            t.payment_method_id.as_str(),
            t.account_id.as_str()
        ),
        ("AIRTIME-MTN", "MTNMM", IP2_ACCOUNT)
    );
    assert_eq!(
        (t.provider_code.as_str(), t.provider_message.as_str()),
        ("Successful", "Done")
    );
    assert_eq!(
        t.create_time.as_ref().map(|c| c.seconds),
        Some(1_763_632_800)
    );
    let credit = &listed.transactions[1];
    assert_eq!(credit.kind, pb::PaymentKind::Collection as i32);
    assert_eq!(credit.state, pb::PaymentState::Pending as i32);
    assert_eq!(credit.amount, ugx(500));

    let request = &requests_to(&server, "/transactions").await[0];
    assert_api_auth(request, "GET", UNSIGNED);
    assert_eq!(query(request, "ealierdate"), "2025-11-20T00:00:00Z");
    assert_eq!(query(request, "laterdate"), "2025-11-21T00:00:00Z");
    assert_eq!(query(request, "offset"), "0");
    assert_eq!(
        query(request, "count"),
        "3",
        "one more than the page tells if more follow"
    );
    gw.stop().await;
}

#[tokio::test]
async fn get_payment_finds_a_pending_debit_by_its_request_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": 0, "ResponseMessage": "Request accepted",
            "Data": {"TransactionStatus": "Pending", "StatusMessage": "Awaiting operator"}})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let payment = gw
        .pay(debit_request("ip2-pending-1", ugx(7_000), "Top up"))
        .await;
    assert_eq!(state(&payment), pb::PaymentState::Pending);
    Mock::given(method("GET"))
        .and(path("/transactions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            // Another client's transaction, then ours.
            {"TransactionId": "IP2T1", "RequestId": "OTHER-1", "CurrencyCode": "UGX", "Amount": 7000,
             "TransactionStatus": "Failed"},
            {"TransactionId": "IP2T2", "RequestId": payment.provider_reference, "CurrencyCode": "UGX",
             "Amount": 7000, "CustomerId": "256772000001", "TransactionType": "Debit",
             "TransactionStatus": "Successful", "StatusMessage": "Completed", "Fee": 100}
        ])))
        .mount(&server)
        .await;
    let refreshed = gw.get(&payment.payment_id).await;
    assert_eq!(state(&refreshed), pb::PaymentState::Succeeded);
    assert_eq!(refreshed.provider_transaction_id, "IP2T2");
    assert_eq!(refreshed.fee, ugx(100));
    let request = &requests_to(&server, "/transactions").await[0];
    assert_api_auth(request, "GET", UNSIGNED);
    assert!(query(request, "ealierdate").ends_with('Z'));
    assert!(query(request, "laterdate").ends_with('Z'));
    gw.stop().await;
}

/// IP2 publishes no codes: a debit answered 400 or 422 does not say that no money moved. The
/// answer is recorded, the payment is PENDING, and the transaction list decides (here: it
/// was paid). Never FAILED, which would let the caller pay again; never sent again.
#[tokio::test]
async fn a_debit_answered_400_or_422_is_pending_and_the_listing_decides() {
    for status in [400, 422] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/transactions/debits"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "ResponseCode": 17, "ResponseMessage": "Could not process request"})))
            .mount(&server)
            .await;
        let gw = gateway_for(&server, 100).await;
        let payment = gw
            .pay(debit_request(
                &format!("ip2-{status}"),
                ugx(6_000),
                "Top up",
            ))
            .await;
        assert_eq!(state(&payment), pb::PaymentState::Pending, "{status}");
        assert_eq!(payment.provider_code, "17");
        assert!(
            payment
                .provider_message
                .contains("Could not process request"),
            "{}",
            payment.provider_message
        );
        mock_listing(
            &server,
            json!([{"TransactionId": "IP2T5", "RequestId": payment.provider_reference,
                    "CurrencyCode": "UGX", "Amount": 6000, "CustomerId": "256772000001",
                    "TransactionType": "Debit", "TransactionStatus": "Successful"}]),
        )
        .await;
        let refreshed = gw.get(&payment.payment_id).await;
        assert_eq!(state(&refreshed), pb::PaymentState::Succeeded, "{status}");
        assert_eq!(refreshed.provider_transaction_id, "IP2T5");
        assert_eq!(requests_to(&server, "/transactions/debits").await.len(), 1);
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_debit_without_an_answer_stays_pending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let payment = gw.pay(debit_request("ip2-503", ugx(5_000), "Top up")).await;
    assert_eq!(state(&payment), pb::PaymentState::Pending);
    gw.stop().await;
}

#[tokio::test]
async fn bad_orders_are_refused_before_any_http_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/accounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "AccountId": IP2_ACCOUNT, "CurrencyCode": "UGX",
            "MinimumTransactionAmount": 500, "MaximumTransactionAmount": 2000000})))
        .mount(&server)
        .await;
    let gw = gateway_for(&server, 100).await;
    let refused = |request: pb::CreatePaymentRequest| {
        let mut client = gw.payments();
        async move { client.create_payment(request).await.unwrap_err() }
    };

    let long_memo = "m".repeat(501);
    let status = refused(debit_request("bad-memo", ugx(5_000), &long_memo)).await;
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["ip2.memo"]);
    let unknown_currency = pb::Money {
        currency_code: "XYZ".into(),
        minor_units: 5_000,
    };
    let status = refused(debit_request("bad-ccy", Some(unknown_currency), "Top up")).await;
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["amount.currency_code"]);
    // KES 150.50: not IP2's currency, and a fraction of a unit IP2 could not take.
    let kes = pb::Money {
        currency_code: "KES".into(),
        minor_units: 15_050,
    };
    let status = refused(debit_request("bad-kes", Some(kes), "Top up")).await;
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["amount.currency_code"]);
    for (id, amount) in [("zero", 0), ("negative", -5_000)] {
        let status = refused(debit_request(id, ugx(amount), "Top up")).await;
        let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(fields, ["amount.minor_units"], "{id}");
    }
    // No method reference, and no IP2 options at all.
    let mut no_reference = debit_request("no-ref", ugx(5_000), "Top up");
    if let Some(pb::create_payment_request::ProviderOptions::Ip2(o)) =
        no_reference.provider_options.as_mut()
    {
        o.payment_method_reference.clear();
    }
    let status = refused(no_reference).await;
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["ip2.payment_method_reference"]);
    let mut no_options = debit_request("no-options", ugx(5_000), "Top up");
    no_options.provider_options = None;
    let status = refused(no_options).await;
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, ["ip2"]);

    // Once the account's limits are known, amounts outside them are refused too.
    gw.accounts()
        .list_accounts(pb::ListAccountsRequest {
            provider: IP2,
            ..Default::default()
        })
        .await
        .unwrap();
    for (id, amount) in [("below-min", 499), ("above-max", 2_000_001)] {
        let status = refused(debit_request(id, ugx(amount), "Top up")).await;
        let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(fields, ["amount.minor_units"], "{id}");
    }

    let calls: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(calls, ["/accounts"], "no debit was sent");
    gw.stop().await;
}

/// A debit that IP2 accepts (ResponseCode 0) without deciding it.
async fn mock_accepted_debits(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": 0, "ResponseMessage": "Request accepted", "Data": {}})))
        .mount(server)
        .await;
}

async fn mock_listing(server: &MockServer, items: Value) {
    Mock::given(method("GET"))
        .and(path("/transactions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(items))
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_debit_answer_about_another_request_id_needs_an_operator() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/transactions/debits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "ResponseCode": 0, "ResponseMessage": "Request accepted",
            "Data": {"TransactionId": "IP2T8", "RequestId": "BPG999999999999", "Amount": 5000,
                     "TransactionStatus": "Successful", "StatusMessage": "Completed"}})))
        .mount(&server)
        .await;
    mock_listing(&server, json!([])).await;
    let gw = gateway_for(&server, 100).await;
    let payment = gw
        .pay(debit_request("ip2-other-ref", ugx(5_000), "Top up"))
        .await;
    assert_eq!(state(&payment), pb::PaymentState::NeedsAttention);
    assert!(
        payment
            .provider_message
            .contains(r#"reference "BPG999999999999""#),
        "{}",
        payment.provider_message
    );
    assert!(
        payment.provider_message.contains("Completed"),
        "the provider's answer is kept: {}",
        payment.provider_message
    );
    // An operator's payment now: asking again never settles it.
    let again = gw.get(&payment.payment_id).await;
    assert_eq!(state(&again), pb::PaymentState::NeedsAttention);
    gw.stop().await;
}

#[tokio::test]
async fn a_listed_transaction_for_another_customer_or_amount_never_settles() {
    let server = MockServer::start().await;
    mock_accepted_debits(&server).await;
    let gw = gateway_for(&server, 100).await;
    let customer = gw
        .pay(debit_request("ip2-other-customer", ugx(7_000), "Top up"))
        .await;
    let amount = gw
        .pay(debit_request("ip2-other-amount", ugx(7_000), "Top up"))
        .await;
    assert_eq!(state(&customer), pb::PaymentState::Pending);
    assert_eq!(state(&amount), pb::PaymentState::Pending);
    // Both RequestIds are listed as Successful, each for another payment's details.
    mock_listing(
        &server,
        json!([
            {"TransactionId": "IP2T3", "RequestId": customer.provider_reference,
             "CurrencyCode": "UGX", "Amount": 7000, "CustomerId": "256772000999",
             "TransactionType": "Debit", "TransactionStatus": "Successful"},
            {"TransactionId": "IP2T4", "RequestId": amount.provider_reference,
             "CurrencyCode": "UGX", "Amount": 7001, "CustomerId": "256772000001",
             "TransactionType": "Debit", "TransactionStatus": "Successful"}
        ]),
    )
    .await;
    for (payment, difference) in [
        (
            &customer,
            r#"customer "256772000999" (ours "256772000001")"#,
        ),
        (&amount, "amount 7001 UGX (ours 7000 UGX)"),
    ] {
        let checked = gw.get(&payment.payment_id).await;
        assert_eq!(state(&checked), pb::PaymentState::NeedsAttention);
        assert_eq!(
            checked.provider_code, "Successful",
            "the provider's answer is kept"
        );
        assert!(
            checked.provider_message.contains(difference),
            "{}",
            checked.provider_message
        );
        assert_eq!(
            state(&gw.get(&payment.payment_id).await),
            pb::PaymentState::NeedsAttention
        );
    }
    gw.stop().await;
}

/// A debit record left at `call` by a replica that died, due for reconciliation now.
async fn strand(store: &dyn Store, request_id: &str, reference: &str, call: CallPhase) -> String {
    let mut order = PaymentOrder::new(
        ProviderId::IntelworldIp2,
        PaymentKind::Bill,
        "",
        "256772000001",
        Money::new(Currency::Ugx, 5_000),
    );
    order.description = "Top up".into();
    order.options = PaymentOptions::Ip2(Ip2Options {
        payment_method_id: "MTNMM".into(),
        payment_method_reference: [("MSISDN".to_owned(), "256772000001".to_owned())].into(),
        ..Ip2Options::default()
    });
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let record = PaymentRecord {
        call,
        ..PaymentRecord::claimed(request_id.into(), order, reference.into(), now - 120_000)
    };
    store
        .set(
            &keys::payment(&record.payment_id),
            &serde_json::to_vec(&record).unwrap(),
            None,
        )
        .await
        .unwrap();
    // Due a minute ago: the gateway's clock was anchored earlier than this one and reads up to
    // 2 ms behind it (both truncate to whole milliseconds), so an entry due "now" by this
    // clock can still be in the gateway's future.
    store
        .schedule(
            &keys::reconcile_schedule(),
            &record.payment_id,
            now - 60_000,
        )
        .await
        .unwrap();
    record.payment_id
}

#[tokio::test]
async fn reconciliation_never_fails_a_claim_ip2_does_not_list_and_flags_a_mismatch() {
    let server = MockServer::start().await;
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    // Lists only another payment's transaction behind the in-flight payment's RequestId.
    mock_listing(
        &server,
        json!([{"TransactionId": "IP2T5", "RequestId": "BPG000000000902", "CurrencyCode": "UGX",
                "Amount": 4000, "TransactionType": "Debit", "TransactionStatus": "Successful"}]),
    )
    .await;
    // The gateway alone, without a server: no background reconciler races the pass below.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let providers = ProvidersConfig {
        intelworld_ip2: Some(ip2_config(&server.uri(), 100, 2_000)),
        ..ProvidersConfig::default()
    };
    let gateway = Gateway::new(
        registry::build(providers, &store).unwrap(),
        store.clone(),
        PaymentSettings {
            in_flight_expiry_ms: 30_000,
            ..PaymentSettings::default()
        },
        CatalogSettings::default(),
        false,
    );
    let since_ms = now - 60_000;
    let claimed = strand(
        store.as_ref(),
        "ip2-claimed",
        "BPG000000000901",
        CallPhase::Claimed { since_ms },
    )
    .await;
    let in_flight = strand(
        store.as_ref(),
        "ip2-in-flight",
        "BPG000000000902",
        CallPhase::InFlight { since_ms },
    )
    .await;
    let stats = ReconcileStats::default();
    assert_eq!(gateway.reconcile_due(&stats).await.unwrap(), 2);
    // Not listed: IP2 documents no "no such transaction" answer, so the claim may still have
    // gone out; it is reconciled further, never FAILED as not sent.
    let record = gateway.load_payment(&claimed).await.unwrap().unwrap();
    assert_eq!(
        record.state,
        PaymentState::Pending,
        "{}",
        record.provider_message
    );
    assert_eq!(record.call, CallPhase::Returned);
    // Listed for another amount: handed to an operator, never settled.
    let record = gateway.load_payment(&in_flight).await.unwrap().unwrap();
    assert_eq!(record.state, PaymentState::NeedsAttention);
    assert!(
        record
            .provider_message
            .contains("amount 4000 UGX (ours 5000 UGX)"),
        "{}",
        record.provider_message
    );
    assert_eq!(requests_to(&server, "/transactions").await.len(), 2);
    assert!(requests_to(&server, "/transactions/debits")
        .await
        .is_empty());
}

//! A payment names a product the provider lists, and a customer is validated once per request.
//!
//! Through gRPC against the in-process sandbox simulators: a product id no catalog lists is
//! refused NOT_FOUND with ErrorInfo reason PRODUCT_NOT_FOUND on every provider that has a
//! catalog (Interswitch, Switch, InterIntel, IP2), and nothing is recorded (no payment in the
//! store) or sent (no call counted by the simulator). Against a wiremock Interswitch: the
//! cached catalog is read again once on a miss (a product added since is found), and a catalog
//! outage on that read answers UNAVAILABLE, not NOT_FOUND. Concurrent duplicates of one
//! request, in one gateway and over two gateways sharing a store, validate the customer once.

mod common;

use std::sync::Arc;

use billpay_gateway::{
    config::ProvidersConfig,
    gateway::PaymentSettings,
    pb,
    providers::interswitch::auth::SignatureMethod,
    sandbox::{self, Simulators},
    store::{memory::MemoryStore, Store},
};
use common::*;
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

const API: &str = "/api/v2/quickteller";

async fn sandbox_gateway() -> (Simulators, TestGateway, Arc<MemoryStore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let store = Arc::new(MemoryStore::default());
    let gw = TestGateway::start_with(
        sandbox::providers_config(&sims.base_url()),
        store.clone(),
        PaymentSettings::default(),
    )
    .await;
    (sims, gw, store)
}

/// Payment records in the store.
async fn payments_recorded(store: &MemoryStore) -> Vec<String> {
    store.keys_with_prefix("billpay:v1:payment:").await.unwrap()
}

/// Asserts a PRODUCT_NOT_FOUND refusal naming `provider` (its contract name) and `product_id`.
fn assert_product_not_found(status: &Status, provider: &str, product_id: &str) {
    assert_error(status, Code::NotFound, "PRODUCT_NOT_FOUND");
    let details = status.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.metadata["provider"], provider, "{status:?}");
    assert_eq!(info.metadata["product_id"], product_id, "{status:?}");
    let resource = details
        .resource_info()
        .expect("a ResourceInfo names the product");
    assert_eq!(resource.resource_type, "billpay.v1.Product");
    assert!(resource.resource_name.ends_with(product_id), "{resource:?}");
    assert_eq!(resource.owner, provider);
}

fn interswitch(request_id: &str, biller: &str, product: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        biller_id: biller.into(),
        ..payment_request(request_id, product, "0000000000", 150_000)
    }
}

fn switch(request_id: &str, product: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Switch as i32,
        biller_id: "104".into(),
        product_id: product.into(),
        customer_id: "7012345678".into(),
        amount: ngn(180_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Switch(
            pb::SwitchPaymentOptions {
                pin: "1234".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn interintel(request_id: &str, biller: &str, product: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Interintel as i32,
        biller_id: biller.into(),
        product_id: product.into(),
        customer_id: "1000000002".into(),
        amount: Some(pb::Money {
            currency_code: "KES".into(),
            minor_units: 150_000,
        }),
        ..Default::default()
    }
}

fn ip2(request_id: &str, product: &str) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::IntelworldIp2 as i32,
        product_id: product.into(),
        customer_id: "256700000001".into(),
        amount: ugx(25_000),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Ip2(
            pb::Ip2PaymentOptions {
                payment_method_id: "MTNMM".into(),
                payment_method_reference: [("MSISDN".to_owned(), "256700000001".to_owned())].into(),
                memo: "Airtime".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Every payment call a simulator counted.
fn provider_payment_calls(sims: &Simulators) -> u64 {
    [
        ("interswitch", "pay"),
        ("interswitch", "validate_customer"),
        ("switch", "pay"),
        ("interintel", "pay"),
        ("intelworld_ip2", "pay"),
        ("intelworld_ip2", "debit"),
    ]
    .iter()
    .map(|(p, op)| sims.calls.get(p, op))
    .sum()
}

#[tokio::test]
async fn an_unlisted_product_is_not_found_on_every_provider_and_nothing_is_recorded_or_sent() {
    let (sims, gw, store) = sandbox_gateway().await;
    let mut payments = gw.payments();
    let cases = [
        (
            interswitch("bad-isw", "901", "90199"),
            "PROVIDER_INTERSWITCH",
            "90199",
        ),
        // A product of another biller is not this biller's.
        (
            interswitch("bad-isw-2", "901", "90201"),
            "PROVIDER_INTERSWITCH",
            "90201",
        ),
        (switch("bad-switch", "99"), "PROVIDER_SWITCH", "99"),
        (
            interintel("bad-ii", "kplc", "999"),
            "PROVIDER_INTERINTEL",
            "999",
        ),
        // Without a biller, every configured biller's items are looked at.
        (
            interintel("bad-ii-2", "", "999"),
            "PROVIDER_INTERINTEL",
            "999",
        ),
        (
            ip2("bad-ip2", "NOT-A-PRODUCT"),
            "PROVIDER_INTELWORLD_IP2",
            "NOT-A-PRODUCT",
        ),
    ];
    for (request, provider, product) in cases {
        let status = payments.create_payment(request).await.unwrap_err();
        assert_product_not_found(&status, provider, product);
    }
    assert_eq!(payments_recorded(&store).await, Vec::<String>::new());
    assert_eq!(provider_payment_calls(&sims), 0, "nothing was sent");

    // The same requests with listed products pay, so the refusals above were the products'.
    for request in [
        interswitch("good-isw", "901", "90101"),
        switch("good-switch", "28"),
        interintel("good-ii", "kplc", "101"),
        ip2("good-ip2", "AIRTIME-MTN"),
    ] {
        let paid = gw.pay(request).await;
        assert_ne!(state(&paid), pb::PaymentState::Failed, "{paid:?}");
    }
    assert_eq!(payments_recorded(&store).await.len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn interswitch_payments_name_their_biller() {
    let (sims, gw, store) = sandbox_gateway().await;
    let status = gw
        .payments()
        .create_payment(interswitch("no-biller", "", "90101"))
        .await
        .unwrap_err();
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(fields, vec!["biller_id"]);
    assert_eq!(payments_recorded(&store).await, Vec::<String>::new());
    assert_eq!(provider_payment_calls(&sims), 0);
    gw.stop().await;
}

#[tokio::test]
async fn validate_customer_with_a_biller_checks_the_product_first() {
    let (sims, gw, _store) = sandbox_gateway().await;
    let mut customers = gw.customers();
    let request = |biller: &str, product: &str| pb::ValidateCustomerRequest {
        provider: pb::Provider::Interswitch as i32,
        biller_id: biller.into(),
        product_id: product.into(),
        customer_id: "0000000001".into(),
        ..Default::default()
    };
    let status = customers
        .validate_customer(request("901", "90199"))
        .await
        .unwrap_err();
    assert_product_not_found(&status, "PROVIDER_INTERSWITCH", "90199");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 0);

    let valid = customers
        .validate_customer(request("901", "90101"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.customer_name, "Ada Obi");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 1);
    gw.stop().await;
}

async fn wiremock_gateway(server: &MockServer) -> TestGateway {
    TestGateway::start(ProvidersConfig {
        interswitch: Some(interswitch_config(
            &server.uri(),
            SignatureMethod::Sha1,
            5_000,
        )),
        ..Default::default()
    })
    .await
}

fn item(code: &str) -> serde_json::Value {
    json!({"categoryid": "1", "billerid": "901", "isAmountFixed": false,
        "paymentitemid": "01", "paymentitemname": "Prepaid token", "amount": "0",
        "code": "01", "currencyCode": "566", "paymentCode": code, "itemFee": "0"})
}

async fn mock_payment_path(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{API}/customers/validations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "Customers": [{"paymentCode": "90102", "customerId": "0000000000",
                "fullName": "Ada Obi", "responseCode": "90000",
                "amount": "0", "amountType": "0", "amountTypeDescription": "any"}]
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/payments/advices")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ResponseCode": "90000", "ResponseCodeGrouping": "SUCCESSFUL"}),
            ),
        )
        .mount(server)
        .await;
}

async fn calls_to(server: &MockServer, suffix: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == format!("{API}{suffix}"))
        .count()
}

#[tokio::test]
async fn a_miss_reads_the_catalog_again_once() {
    let server = MockServer::start().await;
    // The first read lists 90101 only; later reads list 90102 as well.
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers/901/paymentitems")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"paymentitems": [item("90101")]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers/901/paymentitems")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"paymentitems": [item("90101"), item("90102")]})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    mock_payment_path(&server).await;
    let gw = wiremock_gateway(&server).await;
    // Cached without 90102.
    gw.catalog()
        .list_products(pb::ListProductsRequest {
            provider: pb::Provider::Interswitch as i32,
            biller_id: "901".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(calls_to(&server, "/billers/901/paymentitems").await, 1);

    // Added at the provider since: found by the one read a miss makes.
    let paid = gw.pay(interswitch("added-since", "901", "90102")).await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    assert_eq!(calls_to(&server, "/billers/901/paymentitems").await, 2);
    // Now cached: a listed product costs no catalog read.
    gw.pay(interswitch("cached", "901", "90101")).await;
    assert_eq!(calls_to(&server, "/billers/901/paymentitems").await, 2);

    // Not listed even after the read: refused, never sent.
    let status = gw
        .payments()
        .create_payment(interswitch("never-listed", "901", "90199"))
        .await
        .unwrap_err();
    assert_product_not_found(&status, "PROVIDER_INTERSWITCH", "90199");
    assert_eq!(calls_to(&server, "/billers/901/paymentitems").await, 3);
    assert_eq!(calls_to(&server, "/payments/advices").await, 2);
    gw.stop().await;
}

#[tokio::test]
async fn a_catalog_outage_on_the_second_look_is_unavailable_not_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers/901/paymentitems")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"paymentitems": [item("90101")]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/billers/901/paymentitems")))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(2)
        .mount(&server)
        .await;
    mock_payment_path(&server).await;
    let gw = wiremock_gateway(&server).await;
    gw.catalog()
        .list_products(pb::ListProductsRequest {
            provider: pb::Provider::Interswitch as i32,
            biller_id: "901".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = gw
        .payments()
        .create_payment(interswitch("outage", "901", "90102"))
        .await
        .unwrap_err();
    assert_error(&status, Code::Unavailable, "PROVIDER_UNAVAILABLE");
    assert!(retry_delay(&status).is_some());
    assert_eq!(calls_to(&server, "/payments/advices").await, 0);
    // A listed product is paid from the cached copy while the catalog is down.
    let paid = gw
        .pay(interswitch("cached-in-outage", "901", "90101"))
        .await;
    assert_eq!(state(&paid), pb::PaymentState::Succeeded);
    gw.stop().await;
}

/// Sends `n` concurrent duplicates of `request` round `gateways`, each retrying while told
/// the request is in flight, and returns the payment ids they ended with.
async fn duplicates(
    gateways: &[&TestGateway],
    request: pb::CreatePaymentRequest,
    n: usize,
) -> Vec<String> {
    let mut callers = Vec::new();
    for i in 0..n {
        let mut client = gateways[i % gateways.len()].payments();
        let request = request.clone();
        callers.push(tokio::spawn(async move {
            loop {
                match client.create_payment(request.clone()).await {
                    Ok(r) => return r.into_inner().payment.unwrap().payment_id,
                    Err(s) if s.code() == Code::Aborted => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(s) => panic!("unexpected status {s:?}"),
                }
            }
        }));
    }
    let mut ids = Vec::new();
    for caller in callers {
        ids.push(caller.await.unwrap());
    }
    ids
}

#[tokio::test]
async fn concurrent_duplicates_validate_the_customer_once() {
    let (sims, gw, _store) = sandbox_gateway().await;
    // The slow customer keeps the payment in flight, so duplicates keep arriving.
    let request = pb::CreatePaymentRequest {
        customer_id: "3333333333".into(),
        ..interswitch("dup-1", "901", "90101")
    };
    let ids = duplicates(&[&gw], request, 100).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one payment");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 1);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn duplicates_over_two_gateways_sharing_a_store_validate_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let start = || {
        TestGateway::start_with(
            sandbox::providers_config(&sims.base_url()),
            store.clone(),
            PaymentSettings::default(),
        )
    };
    let (a, b) = (start().await, start().await);
    let request = pb::CreatePaymentRequest {
        customer_id: "3333333333".into(),
        ..interswitch("dup-2", "901", "90101")
    };
    let ids = duplicates(&[&a, &b], request, 100).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one payment");
    assert_eq!(sims.calls.get("interswitch", "validate_customer"), 1);
    assert_eq!(sims.calls.get("interswitch", "pay"), 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_refused_validation_is_not_kept_from_a_retry() {
    let (sims, gw, store) = sandbox_gateway().await;
    let request = pb::CreatePaymentRequest {
        customer_id: "9999999999".into(),
        ..interswitch("refused-1", "901", "90101")
    };
    for attempt in 1..=2 {
        let status = gw
            .payments()
            .create_payment(request.clone())
            .await
            .unwrap_err();
        // The provider's refusal each time, never "in flight".
        assert_error(&status, Code::FailedPrecondition, "PROVIDER_REJECTED");
        assert_eq!(sims.calls.get("interswitch", "validate_customer"), attempt);
    }
    assert_eq!(payments_recorded(&store).await, Vec::<String>::new());
    gw.stop().await;
}

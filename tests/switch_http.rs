//! Switch end to end: real tonic client -> real gateway -> real HTTP -> a wiremock server that
//! plays Switch. Every request's exact HTTP is checked: method, path and query, `SWI-CID`, the
//! Bearer session token from the login call, `SWI-CS` recomputed here (HMAC-SHA256 hex over the
//! exact body bytes, the configured default strategy) and the JSON body with naira strings.
//! Orders that break the plan's rules are refused with no HTTP call, and the catalog cache
//! serves plans without asking Switch again.

mod common;

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use billpay_gateway::{
    config::ProvidersConfig,
    gateway::{CatalogSettings, PaymentSettings},
    pb,
    providers::switch::{auth::ChecksumStrategy, LoginConfig, SwitchConfig, TwoFactor},
    store::{keys, memory::MemoryStore, Store},
};
use common::*;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{json, Value};
use tonic::Code;
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, Request, Respond, ResponseTemplate,
};

const CID: &str = "SWI-TEST-CID-0042";
const CHECKSUM_KEY: &str = "wiremock-checksum-key-5e4d";
const USERNAME: &str = "ops@billpay.test";
const PASSWORD: &str = "wiremock-password-77aa";
const PIN: &str = "4821";

fn switch_config(base_url: &str) -> SwitchConfig {
    SwitchConfig {
        base_url: base_url.to_owned(),
        client_id: CID.to_owned(),
        checksum: ChecksumStrategy::HmacSha256Hex,
        checksum_key: Some(SecretString::from(CHECKSUM_KEY.to_owned())),
        session_token: None,
        login: Some(LoginConfig {
            path: "/user/login".into(),
            username_field: "email".into(),
            username: USERNAME.to_owned(),
            password: SecretString::from(PASSWORD.to_owned()),
        }),
        session_lifetime_ms: 1_800_000,
        session_refresh_margin_ms: 60_000,
        two_factor: TwoFactor::Pin,
        timeout_ms: 5_000,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

async fn gateway_with(config: SwitchConfig, store: Arc<dyn Store>) -> TestGateway {
    TestGateway::start_with(
        ProvidersConfig {
            switch: Some(config),
            ..Default::default()
        },
        store,
        PaymentSettings::default(),
    )
    .await
}

async fn gateway_for(server: &MockServer) -> TestGateway {
    gateway_with(
        switch_config(&server.uri()),
        Arc::new(MemoryStore::default()),
    )
    .await
}

/// Issues "session-1", "session-2", ... and counts logins.
struct Sessions(Arc<AtomicU32>);

impl Respond for Sessions {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "message": "Login successful",
            "data": {"auth_token": format!("session-{n}"), "two_factor_authentication_type": "pin"}
        }))
    }
}

async fn mount_login(server: &MockServer) -> Arc<AtomicU32> {
    let logins = Arc::new(AtomicU32::new(0));
    Mock::given(method("POST"))
        .and(path("/user/login"))
        .respond_with(Sessions(logins.clone()))
        .mount(server)
        .await;
    logins
}

/// HMAC-SHA256 hex of `body`, computed here independently of the gateway's code.
fn expected_checksum(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(CHECKSUM_KEY.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Checks SWI-CID, the Bearer token and SWI-CS (on POSTs only, over the exact body bytes).
fn assert_switch_headers(request: &Request, expected_method: &str, token: Option<&str>) {
    assert_eq!(request.method.as_str(), expected_method);
    assert_eq!(header(request, "SWI-CID").as_deref(), Some(CID));
    assert_eq!(
        header(request, "Authorization"),
        token.map(|t| format!("Bearer {t}"))
    );
    if expected_method == "POST" {
        assert_eq!(
            header(request, "SWI-CS"),
            Some(expected_checksum(&request.body))
        );
        assert_eq!(
            header(request, "Content-Type").as_deref(),
            Some("application/json")
        );
    } else {
        assert_eq!(
            header(request, "SWI-CS"),
            None,
            "no checksum without a body"
        );
    }
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

fn plan(id: &str, name: &str, amount: &str, item_fee: Value, vat: Value, total: &str) -> Value {
    json!({
        "mandate_id": "SWV220200401122742464584041257", "id": id, "name": name,
        "payment_code": format!("104{id}"), "item_fee": item_fee, "vat": vat, "category_id": "2",
        "input_fields": [{"key": "consumer_id_field", "value": "", "text": "Decoder Number"}],
        "additions": {"amount": amount, "total": total}
    })
}

/// Vendor 104's plans: the documented Premium plan, and plans at the edges.
fn plans() -> Value {
    let mut with_input = plan("INP", "With input", "10.00", json!("0"), json!(0), "10.00");
    with_input["input_fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "smartcard_type", "value": "", "text": "Card type"}));
    json!({"message": "Vendor plans retrieved successfully", "data": [
        plan("01", "Premium", "14600.00", json!("80"), json!(4), "14684.00"),
        plan("1K", "One kobo", "0.01", json!("0"), json!(0), "0.01"),
        plan("BIG", "Large", "90000000000.00", json!("80"), json!(4), "90000000084.00"),
        plan("VAR", "Any amount", "0", json!("0.5"), json!("0.01"), "0"),
        plan("BAD", "Does not add up", "100.00", json!("80"), json!(4), "200.00"),
        with_input,
    ]})
}

async fn mount_plans(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(plans()))
        .mount(server)
        .await;
}

async fn mount_pay(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .respond_with(response)
        .mount(server)
        .await;
}

fn paid() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "message": "Bill payment successful", "data": {"reference": "SWT00000001"}}))
}

const SWITCH: i32 = pb::Provider::Switch as i32;

fn pin() -> Option<pb::create_payment_request::ProviderOptions> {
    Some(pb::create_payment_request::ProviderOptions::Switch(
        pb::SwitchPaymentOptions {
            pin: PIN.into(),
            ..Default::default()
        },
    ))
}

fn switch_payment(request_id: &str, plan_id: &str, kobo: i64) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: SWITCH,
        biller_id: "104".into(),
        product_id: plan_id.into(),
        customer_id: "7012345678".into(),
        amount: ngn(kobo),
        provider_options: pin(),
        ..Default::default()
    }
}

#[tokio::test]
async fn catalog_reads_speak_switch_http() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Bill payment categories retrieved successfully",
            "data": [{"id": "2", "name": "Cable TV Bills", "description": "Pay for your cable TV subscriptions here",
                      "category_icon": null, "category_color": null}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Bill payment category vendors retrieved successfully",
            "data": [
                {"vendor_id": "901", "name": "Airtel Prepaid", "short_name": "AirtelMTU", "surcharge": null,
                 "bill_payment_category_id": "6", "logo_url": null},
                {"vendor_id": 14319, "name": "IBEDC", "short_name": "IBEDC", "surcharge": null,
                 "bill_payment_category_id": "6", "logo_url": null}]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories/4/vendors"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Vendors retrieved successfully",
            "data": [{"vendor_id": "109", "name": "MTN Prepaid", "short_name": "MTNVTU",
                      "bill_payment_category_id": "4"}]})))
        .mount(&server)
        .await;
    mount_plans(&server).await;
    let gw = gateway_for(&server).await;
    let mut catalog = gw.catalog();

    let cats = catalog
        .list_categories(pb::ListCategoriesRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .categories;
    assert_eq!(
        (cats[0].category_id.as_str(), cats[0].name.as_str()),
        ("2", "Cable TV Bills")
    );
    let all = catalog
        .list_billers(pb::ListBillersRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].biller_id, "14319", "numeric ids read as strings");
    assert_eq!(all[1].currency_code, "NGN");
    let by_short_name = catalog
        .list_billers(pb::ListBillersRequest {
            provider: SWITCH,
            short_name: "ibedc".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(by_short_name.len(), 1);
    assert_eq!(by_short_name[0].name, "IBEDC");
    let airtime = catalog
        .list_billers(pb::ListBillersRequest {
            provider: SWITCH,
            category_id: "4".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(airtime[0].short_name, "MTNVTU");
    assert_eq!(airtime[0].category_id, "4");
    let products = catalog
        .list_products(pb::ListProductsRequest {
            provider: SWITCH,
            biller_id: "104".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products;
    let premium = &products[0];
    assert_eq!(premium.product_id, "01");
    assert_eq!(premium.name, "Premium");
    assert!(premium.amount_fixed);
    assert_eq!(premium.amount, ngn(1_460_000));
    assert_eq!(premium.fee, ngn(8_000));
    assert_eq!(premium.tax, ngn(400));
    assert_eq!(premium.total, ngn(1_468_400));
    assert_eq!(premium.customer_id_label, "Decoder Number");
    let with_input = products.iter().find(|p| p.product_id == "INP").unwrap();
    assert_eq!(with_input.input_fields.len(), 1);
    assert_eq!(with_input.input_fields[0].key, "smartcard_type");
    assert_eq!(with_input.input_fields[0].label, "Card type");
    assert!(with_input.input_fields[0].required);
    let any_amount = products.iter().find(|p| p.product_id == "VAR").unwrap();
    assert!(!any_amount.amount_fixed);
    assert_eq!(any_amount.amount, None);

    // One login for every call; GETs carry no checksum.
    let logins = requests_to(&server, "/user/login").await;
    assert_eq!(logins.len(), 1);
    assert_switch_headers(&logins[0], "POST", None);
    assert_eq!(
        body(&logins[0]),
        json!({"email": USERNAME, "password": PASSWORD})
    );
    for p in [
        "/user/bills/categories",
        "/user/bills/vendors",
        "/user/bills/categories/4/vendors",
        "/user/bills/vendors/104/plans",
    ] {
        let calls = requests_to(&server, p).await;
        assert_eq!(calls.len(), 1, "{p}: the cache answers repeats");
        assert_switch_headers(&calls[0], "GET", Some("session-1"));
        assert_eq!(calls[0].url.query(), None);
    }
}

#[tokio::test]
async fn payments_send_the_plan_with_exact_naira_strings() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    mount_plans(&server).await;
    mount_pay(&server, paid()).await;
    let gw = gateway_for(&server).await;

    // The documented plan, whole naira, saved, with the caller's expected total.
    let mut premium = switch_payment("sw-premium", "01", 1_460_000);
    premium.expected_total = ngn(1_468_400);
    premium.provider_options = Some(pb::create_payment_request::ProviderOptions::Switch(
        pb::SwitchPaymentOptions {
            pin: PIN.into(),
            save_information: true,
            ..Default::default()
        },
    ));
    let p = gw.pay(premium).await;
    assert_eq!(state(&p), pb::PaymentState::Succeeded);
    assert_eq!(p.provider_code, "200");
    assert_eq!(p.provider_message, "Bill payment successful");
    assert_eq!(p.provider_transaction_id, "SWT00000001");
    assert_eq!(p.fee, ngn(8_000));
    assert_eq!(p.total, ngn(1_468_400));
    let sent = requests_to(&server, "/bills/pay").await;
    assert_eq!(sent.len(), 1);
    assert_switch_headers(&sent[0], "POST", Some("session-1"));
    assert_eq!(
        body(&sent[0]),
        json!({
            "vendor_id": "104", "plan_id": "01", "plan_name": "Premium", "category_id": "2",
            "mandate_id": "SWV220200401122742464584041257", "payment_code": "10401",
            "consumer_id_field": "7012345678", "amount": "14600.00", "item_fee": "80.00",
            "vat": "4.00", "total": "14684.00", "save_information": true, "pin": PIN
        })
    );

    // 1 kobo, a large amount, a variable-amount plan with fractional charges, a plan input.
    let mut with_input = switch_payment("sw-input", "INP", 1_000);
    with_input
        .inputs
        .insert("smartcard_type".into(), "smart".into());
    for (request, amount, fee, vat, total) in [
        (
            switch_payment("sw-kobo", "1K", 1),
            "0.01",
            "0.00",
            "0.00",
            "0.01",
        ),
        (
            switch_payment("sw-big", "BIG", 9_000_000_000_000),
            "90000000000.00",
            "80.00",
            "4.00",
            "90000000084.00",
        ),
        (
            switch_payment("sw-var", "VAR", 150_001),
            "1500.01",
            "0.50",
            "0.01",
            "1500.52",
        ),
        (with_input, "10.00", "0.00", "0.00", "10.00"),
    ] {
        let id = request.request_id.clone();
        let p = gw.pay(request).await;
        assert_eq!(state(&p), pb::PaymentState::Succeeded, "{id}");
        let last = requests_to(&server, "/bills/pay").await.pop().unwrap();
        assert_switch_headers(&last, "POST", Some("session-1"));
        let b = body(&last);
        assert_eq!(
            (&b["amount"], &b["item_fee"], &b["vat"], &b["total"]),
            (&json!(amount), &json!(fee), &json!(vat), &json!(total)),
            "{id}"
        );
        assert_eq!(b["save_information"], json!(false));
        assert!(b.get("start_date").is_none() && b.get("otp").is_none());
        if id == "sw-input" {
            assert_eq!(b["smartcard_type"], json!("smart"));
        }
    }
}

#[tokio::test]
async fn the_documented_answer_shape_settles_as_before() {
    // The documents show `/bills/pay` answering only HTTP 200 + message (no body that echoes
    // the customer, plan or amount) and errors as HTTP 400 + message: nothing to match, so a
    // 200 settles SUCCEEDED and the documented PIN error FAILED, as before.
    for (status, message, expected) in [
        (200, "Bill payment successful", pb::PaymentState::Succeeded),
        (
            400,
            "Pin should be a 4-digit number",
            pb::PaymentState::Failed,
        ),
    ] {
        let server = MockServer::start().await;
        mount_login(&server).await;
        mount_plans(&server).await;
        mount_pay(
            &server,
            ResponseTemplate::new(status).set_body_json(json!({ "message": message })),
        )
        .await;
        let gw = gateway_for(&server).await;
        let p = gw
            .pay(switch_payment(&format!("sw-doc-{status}"), "01", 1_460_000))
            .await;
        assert_eq!(state(&p), expected, "{status}");
        assert_eq!(
            (p.provider_code.as_str(), p.provider_message.as_str()),
            (status.to_string().as_str(), message)
        );
        assert_eq!(p.provider_transaction_id, "", "{status}");
        let again = gw.get(&p.payment_id).await;
        assert_eq!(state(&again), expected, "{status}");
        assert_eq!(requests_to(&server, "/bills/pay").await.len(), 1);
        gw.stop().await;
    }
}

/// Only HTTP 400 with a message is Switch's documented refusal. Any other 4xx, a 400 with
/// another JSON body (even `{}`), and a 2xx without the documented message are answers Switch
/// does not define; it has no status query to correct a guess, so the payment goes to an
/// operator (NEEDS_ATTENTION) with Switch's status and answer recorded, never FAILED (which
/// would let the caller pay again) and never sent again.
#[tokio::test]
async fn an_undocumented_pay_answer_goes_to_an_operator_never_failed() {
    for (i, (status, body)) in [
        (402, json!({"message": "Insufficient funds"})),
        (404, json!({"message": "Vendor not found"})),
        (422, json!({"message": "Unprocessable"})),
        (400, json!({})),
        (400, json!({"error": "bad request"})),
        (200, json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        let server = MockServer::start().await;
        mount_login(&server).await;
        mount_plans(&server).await;
        mount_pay(&server, ResponseTemplate::new(status).set_body_json(&body)).await;
        let gw = gateway_for(&server).await;
        let p = gw
            .pay(switch_payment(&format!("sw-undoc-{i}"), "01", 1_460_000))
            .await;
        assert_eq!(
            state(&p),
            pb::PaymentState::NeedsAttention,
            "{status} {body}"
        );
        assert_eq!(p.provider_code, status.to_string(), "{status} {body}");
        assert!(
            p.provider_message.contains("no status query")
                && p.provider_message.ends_with(&body.to_string()),
            "the answer is recorded for the operator: {}",
            p.provider_message
        );
        assert_eq!(
            state(&gw.get(&p.payment_id).await),
            pb::PaymentState::NeedsAttention
        );
        assert_eq!(requests_to(&server, "/bills/pay").await.len(), 1);
        gw.stop().await;
    }
}

/// A 401 on `/bills/pay` is not followed by a new login and a resend: Switch takes no
/// reference of ours, so the resend would be a second payment (with the same OTP). The
/// payment goes to an operator; the refused session is dropped, so the next call logs in.
#[tokio::test]
async fn a_401_on_pay_is_never_resent_and_the_next_call_logs_in_again() {
    let server = MockServer::start().await;
    let logins = mount_login(&server).await;
    mount_plans(&server).await;
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "jwt expired"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_pay(&server, paid()).await;
    let gw = gateway_for(&server).await;
    let p = gw.pay(switch_payment("sw-401", "01", 1_460_000)).await;
    assert_eq!(state(&p), pb::PaymentState::NeedsAttention);
    assert_eq!(p.provider_code, "401");
    assert!(
        p.provider_message.contains("jwt expired"),
        "{}",
        p.provider_message
    );
    let pays = requests_to(&server, "/bills/pay").await;
    assert_eq!(pays.len(), 1, "the payment was not sent again");
    assert_switch_headers(&pays[0], "POST", Some("session-1"));
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    // The next payment logs in again and goes out once with the new session.
    let next = gw
        .pay(switch_payment("sw-after-401", "01", 1_460_000))
        .await;
    assert_eq!(state(&next), pb::PaymentState::Succeeded);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    let pays = requests_to(&server, "/bills/pay").await;
    assert_eq!(pays.len(), 2);
    assert_switch_headers(&pays[1], "POST", Some("session-2"));
    gw.stop().await;
}

#[tokio::test]
async fn a_scheduled_payment_is_scheduled_and_never_reconciled() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    mount_plans(&server).await;
    mount_pay(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"message": "Bill payment scheduled successfully"})),
    )
    .await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gw = gateway_with(switch_config(&server.uri()), store.clone()).await;
    let mut request = switch_payment("sw-scheduled", "01", 1_460_000);
    request.provider_options = Some(pb::create_payment_request::ProviderOptions::Switch(
        pb::SwitchPaymentOptions {
            pin: PIN.into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 1_796_000_000,
                nanos: 0,
            }),
            repeat: true,
            repeat_pattern: "custom".into(),
            custom_interval_days: 10,
            ..Default::default()
        },
    ));
    let p = gw.pay(request).await;
    assert_eq!(state(&p), pb::PaymentState::Scheduled);
    assert_eq!(p.scheduled_time.unwrap().seconds, 1_796_000_000);
    let b = body(&requests_to(&server, "/bills/pay").await[0]);
    assert_eq!(b["start_date"], json!("2026-11-30T00:53:20.000Z"));
    assert_eq!(b["repeat"], json!(true));
    assert_eq!(b["event_pattern"], json!("custom"));
    assert_eq!(b["custom_cron"], json!("10"));
    // Nothing to ask Switch about an accepted schedule: off the reconciliation schedule.
    let due = store
        .due(&keys::reconcile_schedule(), i64::MAX, 10)
        .await
        .unwrap();
    assert!(
        due.is_empty(),
        "scheduled Switch payment reconciled: {due:?}"
    );
}

#[tokio::test]
async fn orders_that_break_the_plan_are_refused_without_any_http_call() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    mount_plans(&server).await;
    Mock::given(method("POST"))
        .and(path("/bills/pay"))
        .respond_with(paid())
        .expect(0)
        .mount(&server)
        .await;
    let gw = gateway_for(&server).await;
    let payments = gw.payments();
    let refuse = |request: pb::CreatePaymentRequest| {
        let mut payments = payments.clone();
        async move { payments.create_payment(request).await.unwrap_err() }
    };

    // The plan's stated total is not amount + item_fee + vat.
    let e = refuse(switch_payment("r-total", "BAD", 10_000)).await;
    assert_eq!(
        assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST"),
        ["product_id"]
    );
    // Not the fixed price.
    let e = refuse(switch_payment("r-amount", "01", 1_460_001)).await;
    assert_eq!(
        assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST"),
        ["amount.minor_units"]
    );
    // A PIN user without a PIN.
    let mut no_pin = switch_payment("r-pin", "01", 1_460_000);
    no_pin.provider_options = None;
    let e = refuse(no_pin).await;
    assert_eq!(
        assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST"),
        ["switch.pin"]
    );
    // A required plan input missing, and one the plan does not have.
    let mut inputs = switch_payment("r-inputs", "INP", 1_000);
    inputs.inputs.insert("colour".into(), "blue".into());
    let e = refuse(inputs).await;
    let mut fields = assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST");
    fields.sort();
    assert_eq!(fields, ["inputs[colour]", "inputs[smartcard_type]"]);
    // The caller expects another total: the plan was repriced.
    let mut repriced = switch_payment("r-price", "01", 1_460_000);
    repriced.expected_total = ngn(1_468_300);
    let e = refuse(repriced).await;
    assert_error(&e, Code::FailedPrecondition, "PRICE_CHANGED");
    // Not a plan of the vendor (even after the plans are read again): NOT_FOUND, as on
    // every provider with a catalog.
    let e = refuse(switch_payment("r-plan", "99", 1_000)).await;
    assert_error(&e, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert!(requests_to(&server, "/bills/pay").await.is_empty());
}

#[tokio::test]
async fn an_unknown_outcome_stays_pending_and_is_never_sent_again() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    mount_plans(&server).await;
    mount_pay(&server, ResponseTemplate::new(502)).await;
    let gw = gateway_for(&server).await;
    let p = gw.pay(switch_payment("sw-lost", "01", 1_460_000)).await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    // No status query exists: GetPayment answers from the journal without HTTP.
    let again = gw.get(&p.payment_id).await;
    assert_eq!(state(&again), pb::PaymentState::Pending);
    let replay = gw.pay(switch_payment("sw-lost", "01", 1_460_000)).await;
    assert_eq!(replay.payment_id, p.payment_id);
    assert_eq!(requests_to(&server, "/bills/pay").await.len(), 1);
    let everything = server.received_requests().await.unwrap();
    assert!(
        everything.iter().all(
            |r| ["/user/login", "/user/bills/vendors/104/plans", "/bills/pay"]
                .contains(&r.url.path())
        ),
        "no other call was made"
    );
}

#[tokio::test]
async fn an_expired_session_is_replaced_once_and_a_static_token_needs_no_login() {
    let server = MockServer::start().await;
    let logins = mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "jwt expired"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "ok", "data": []})),
        )
        .mount(&server)
        .await;
    let gw = gateway_for(&server).await;
    gw.catalog()
        .list_categories(pb::ListCategoriesRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        logins.load(Ordering::SeqCst),
        2,
        "a new session after the 401"
    );
    let calls = requests_to(&server, "/user/bills/categories").await;
    assert_eq!(calls.len(), 2);
    assert_switch_headers(&calls[0], "GET", Some("session-1"));
    assert_switch_headers(&calls[1], "GET", Some("session-2"));

    let server = MockServer::start().await;
    let logins = mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/categories"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "ok", "data": []})),
        )
        .mount(&server)
        .await;
    let mut config = switch_config(&server.uri());
    config.login = None;
    config.session_token = Some(SecretString::from("static-session-abc".to_owned()));
    let gw = gateway_with(config, Arc::new(MemoryStore::default())).await;
    gw.catalog()
        .list_categories(pb::ListCategoriesRequest {
            provider: SWITCH,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logins.load(Ordering::SeqCst), 0);
    let calls = requests_to(&server, "/user/bills/categories").await;
    assert_switch_headers(&calls[0], "GET", Some("static-session-abc"));
}

#[tokio::test]
async fn saved_bills_page_by_number_delete_once_and_otp_is_requested() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    let vendor = json!({"vendor_id": "2", "name": "Vendor1", "narration": "", "short_name": "vend1",
                        "surcharge": null, "switch_category": null, "switch_short_name": null});
    Mock::given(method("GET"))
        .and(path("/user/bills/saved_bills"))
        .and(query_param("per_page", "2"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Saved bill payment information retrieved successfully",
            "data": [
                {"consumer_id_field": "08183372896", "vendor": vendor, "created_at": "2019-03-27T13:35:47.160Z"},
                {"id": 7, "consumer_id_field": "08027194502", "vendor": vendor, "created_at": "2019-03-27T13:37:22.482Z"}
            ]})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/saved_bills"))
        .and(query_param("per_page", "2"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "message": "Saved bill payment information retrieved successfully",
            "data": [{"id": "9", "consumer_id_field": "0803", "vendor": vendor, "created_at": "2019-03-28T00:00:00.000Z"}]})))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/user/saved_bills/7"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"message": "Saved bill deleted successfully"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/user/two_factor_auth/send_otp"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "OTP sent to 0803***4502"})),
        )
        .mount(&server)
        .await;
    let gw = gateway_for(&server).await;
    let mut payments = gw.payments();

    let first = payments
        .list_saved_bills(pb::ListSavedBillsRequest {
            provider: SWITCH,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.saved_bills.len(), 2);
    let documented = &first.saved_bills[0];
    assert_eq!(
        documented.saved_bill_id, "",
        "the documented shape has no id"
    );
    assert_eq!(documented.customer_id, "08183372896");
    assert_eq!(
        (
            documented.biller_id.as_str(),
            documented.biller_name.as_str()
        ),
        ("2", "Vendor1")
    );
    let created = documented.create_time.as_ref().unwrap();
    assert_eq!(
        (created.seconds, created.nanos),
        (1_553_693_747, 160_000_000)
    );
    assert_eq!(first.saved_bills[1].saved_bill_id, "7");
    assert!(
        !first.next_page_token.is_empty(),
        "a full page may have more"
    );
    let second = payments
        .list_saved_bills(pb::ListSavedBillsRequest {
            provider: SWITCH,
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.saved_bills[0].saved_bill_id, "9");
    assert!(second.next_page_token.is_empty());
    for call in requests_to(&server, "/user/bills/saved_bills").await {
        assert_switch_headers(&call, "GET", Some("session-1"));
    }

    let delete = pb::DeleteSavedBillRequest {
        request_id: "del-7".into(),
        provider: SWITCH,
        saved_bill_id: "7".into(),
    };
    payments.delete_saved_bill(delete.clone()).await.unwrap();
    payments.delete_saved_bill(delete).await.unwrap();
    let deletes = requests_to(&server, "/user/saved_bills/7").await;
    assert_eq!(deletes.len(), 1, "idempotent by request_id");
    assert_switch_headers(&deletes[0], "DELETE", Some("session-1"));

    let otp = payments
        .send_payment_otp(pb::SendPaymentOtpRequest { provider: SWITCH })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(otp.provider_message, "OTP sent to 0803***4502");
    let sent = requests_to(&server, "/user/two_factor_auth/send_otp").await;
    assert_switch_headers(&sent[0], "POST", Some("session-1"));
    assert!(sent[0].body.is_empty());
}

/// Makes the cached plans of vendor 104 older than the freshness window.
/// Makes the cached plans look stale, as time passing would: the store's copy is backdated and
/// the gateway's in-memory copy (which would have expired with the same time) is dropped.
async fn age_cached_plans(store: &Arc<dyn Store>, gw: &TestGateway) {
    gw.gateway.forget_local_catalog().await;
    let key = keys::catalog("switch", "products", "biller:104");
    let mut cached: Value =
        serde_json::from_slice(&store.get(&key).await.unwrap().expect("plans are cached")).unwrap();
    cached["fetched_at_ms"] = json!(0);
    store
        .set(&key, &serde_json::to_vec(&cached).unwrap(), None)
        .await
        .unwrap();
}

async fn plan_names(gw: &TestGateway) -> Vec<String> {
    gw.catalog()
        .list_products(pb::ListProductsRequest {
            provider: SWITCH,
            biller_id: "104".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .products
        .into_iter()
        .map(|p| p.name)
        .collect()
}

async fn wait_for_plan_calls(server: &MockServer, n: usize) {
    for _ in 0..500 {
        if requests_to(server, "/user/bills/vendors/104/plans")
            .await
            .len()
            >= n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the plans were not fetched {n} times");
}

#[tokio::test]
async fn plans_are_cached_refreshed_once_when_stale_and_served_during_an_outage() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(plans()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let mut renamed = plans();
    renamed["data"][0]["name"] = json!("Premium Plus");
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(renamed))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(3)
        .mount(&server)
        .await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gw = gateway_with(switch_config(&server.uri()), store.clone()).await;

    assert_eq!(plan_names(&gw).await[0], "Premium");
    assert_eq!(plan_names(&gw).await[0], "Premium");
    assert_eq!(
        requests_to(&server, "/user/bills/vendors/104/plans")
            .await
            .len(),
        1,
        "the second ListProducts made no HTTP call"
    );

    // Past the freshness window: the stale copy answers at once, and exactly one refresh runs
    // however many callers saw it stale.
    age_cached_plans(&store, &gw).await;
    let (a, b, c) = tokio::join!(plan_names(&gw), plan_names(&gw), plan_names(&gw));
    for names in [a, b, c] {
        assert_eq!(names[0], "Premium");
    }
    wait_for_plan_calls(&server, 2).await;
    for _ in 0..200 {
        if plan_names(&gw).await[0] == "Premium Plus" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(plan_names(&gw).await[0], "Premium Plus");
    assert_eq!(
        requests_to(&server, "/user/bills/vendors/104/plans")
            .await
            .len(),
        2,
        "exactly one refresh"
    );

    // Stale again with Switch down: the cached plans still answer.
    age_cached_plans(&store, &gw).await;
    assert_eq!(plan_names(&gw).await[0], "Premium Plus");
    wait_for_plan_calls(&server, 3).await;
    assert_eq!(plan_names(&gw).await[0], "Premium Plus");
}

#[tokio::test]
async fn concurrent_cold_list_products_on_two_replicas_make_one_provider_call() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    // Slow, so every caller arrives while the first fetch is still out.
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(plans())
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    // Two replicas sharing one store: 10 concurrent callers each.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gw = gateway_with(switch_config(&server.uri()), store.clone()).await;
    let other = gateway_with(switch_config(&server.uri()), store).await;

    let callers: Vec<_> = (0..20)
        .map(|i| plan_names(if i % 2 == 0 { &gw } else { &other }))
        .collect();
    for names in futures_util::future::join_all(callers).await {
        assert_eq!(names[0], "Premium");
    }
    // Warm now: served from memory, still one provider call.
    assert_eq!(plan_names(&gw).await[0], "Premium");
    server.verify().await;
}

#[tokio::test]
async fn a_local_catalog_copy_is_not_served_past_the_freshness_window_on_any_replica() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(plans()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let mut renamed = plans();
    renamed["data"][0]["name"] = json!("Premium Plus");
    Mock::given(method("GET"))
        .and(path("/user/bills/vendors/104/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(renamed))
        .with_priority(2)
        .mount(&server)
        .await;
    let fresh_ms = 300;
    let catalog = CatalogSettings {
        fresh_ms,
        ..CatalogSettings::default()
    };
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let replica = |store: Arc<dyn Store>| {
        TestGateway::start_with_catalog(
            ProvidersConfig {
                switch: Some(switch_config(&server.uri())),
                ..Default::default()
            },
            store,
            PaymentSettings::default(),
            catalog.clone(),
        )
    };
    let (a, b) = (replica(store.clone()).await, replica(store.clone()).await);

    // Both replicas hold the first copy; only one provider call was made.
    assert_eq!(plan_names(&a).await[0], "Premium");
    assert_eq!(plan_names(&b).await[0], "Premium");
    assert_eq!(plan_names(&b).await[0], "Premium");
    assert_eq!(
        requests_to(&server, "/user/bills/vendors/104/plans")
            .await
            .len(),
        1
    );

    // Past the window (a wait, not a timing assertion): replica A's read is stale, answers
    // with the old copy and refreshes the store.
    tokio::time::sleep(Duration::from_millis(fresh_ms + 100)).await;
    assert_eq!(plan_names(&a).await[0], "Premium");
    wait_for_plan_calls(&server, 2).await;
    for _ in 0..200 {
        if plan_names(&a).await[0] == "Premium Plus" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(plan_names(&a).await[0], "Premium Plus");
    // Replica B's in-memory copy is older than the window too: it is not served; B reads the
    // refreshed copy from the store at once.
    assert_eq!(plan_names(&b).await[0], "Premium Plus");
    assert_eq!(
        requests_to(&server, "/user/bills/vendors/104/plans")
            .await
            .len(),
        2,
        "one refresh for both replicas"
    );
}

#[tokio::test]
async fn an_otp_user_pays_with_the_otp_and_another_checksum_strategy_applies() {
    let server = MockServer::start().await;
    mount_login(&server).await;
    mount_plans(&server).await;
    mount_pay(&server, paid()).await;
    let mut config = switch_config(&server.uri());
    config.two_factor = TwoFactor::Otp;
    config.checksum = ChecksumStrategy::Sha256Hex;
    let gw = gateway_with(config, Arc::new(MemoryStore::default())).await;

    // A PIN is not this user's second factor: refused, nothing sent.
    let e = gw
        .payments()
        .create_payment(switch_payment("otp-missing", "01", 1_460_000))
        .await
        .unwrap_err();
    assert_eq!(
        assert_error(&e, Code::InvalidArgument, "INVALID_REQUEST"),
        ["switch.otp"]
    );
    assert!(requests_to(&server, "/bills/pay").await.is_empty());

    let mut request = switch_payment("otp-ok", "01", 1_460_000);
    request.provider_options = Some(pb::create_payment_request::ProviderOptions::Switch(
        pb::SwitchPaymentOptions {
            otp: "583016".into(),
            ..Default::default()
        },
    ));
    assert_eq!(state(&gw.pay(request).await), pb::PaymentState::Succeeded);
    let sent = requests_to(&server, "/bills/pay").await;
    let b = body(&sent[0]);
    assert_eq!(b["otp"], json!("583016"));
    assert!(b.get("pin").is_none());
    // sha256-hex: SHA-256 of the key bytes then the body bytes.
    let mut hash = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hash, CHECKSUM_KEY.as_bytes());
    sha2::Digest::update(&mut hash, &sent[0].body);
    let expected: String = sha2::Digest::finalize(hash)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(header(&sent[0], "SWI-CS"), Some(expected));
}

#[tokio::test]
async fn replicas_sharing_a_store_share_one_session() {
    let server = MockServer::start().await;
    let logins = mount_login(&server).await;
    Mock::given(method("GET"))
        .and(path("/user/bills/saved_bills"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"message": "ok", "data": []})),
        )
        .mount(&server)
        .await;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let a = gateway_with(switch_config(&server.uri()), store.clone()).await;
    let b = gateway_with(switch_config(&server.uri()), store.clone()).await;
    for gw in [&a, &b] {
        gw.payments()
            .list_saved_bills(pb::ListSavedBillsRequest {
                provider: SWITCH,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(
        logins.load(Ordering::SeqCst),
        1,
        "one login for both replicas"
    );
    for call in requests_to(&server, "/user/bills/saved_bills").await {
        assert_switch_headers(&call, "GET", Some("session-1"));
    }
}

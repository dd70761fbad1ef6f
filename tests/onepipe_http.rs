//! OnePipe pay_electricity end to end: real tonic client -> real gateway -> real HTTP -> a
//! wiremock server that plays OnePipe. Every request's exact HTTP is checked: path, Bearer,
//! the Signature recomputed here (MD5 of `request_ref;secret`), `auth.secure` decrypted here
//! with an independent 3DES (RustCrypto `des` used directly, UTF-16LE, zero IV) and compared
//! with the expected plaintext, kobo amounts, a new `request_ref` per call and one
//! `transaction_ref` across pay, validate, query and reverse.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine};
use billpay_gateway::{
    config::ProvidersConfig,
    domain::{
        options::{OnePipeFundingKind, OnePipeOptions},
        payment::{CallPhase, PaymentKind},
        Currency, Money, PaymentOptions, PaymentOrder, PaymentRecord, PaymentState, ProviderId,
    },
    gateway::{reconcile::ReconcileStats, Clock, PaymentSettings},
    pb,
    providers::onepipe::{MockMode, OnePipeConfig},
    store::{keys, memory::MemoryStore, Store},
};
use common::*;
use des::cipher::{BlockDecrypt, KeyInit};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tonic::Code;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, Request, ResponseTemplate,
};

const API_KEY: &str = "wiremock-onepipe-api-key-42";
const SECRET: &str = "wiremock-onepipe-secret-73";
const AUTH_PROVIDER: &str = "Beeceptor";

fn config(server: &MockServer, timeout_ms: u64) -> OnePipeConfig {
    OnePipeConfig {
        base_url: format!("{}/v2", server.uri()),
        api_key: API_KEY.to_owned().into(),
        client_secret: SECRET.to_owned().into(),
        mock_mode: MockMode::Inspect,
        auth_provider: AUTH_PROVIDER.to_owned(),
        transaction_ref_prefix: "bp-test-".to_owned(),
        timeout_ms,
        connect_timeout_ms: 1_000,
        limits: Default::default(),
    }
}

async fn gateway_for(server: &MockServer, timeout_ms: u64) -> TestGateway {
    TestGateway::start(ProvidersConfig {
        onepipe: Some(config(server, timeout_ms)),
        ..Default::default()
    })
    .await
}

/// 3DES-EDE CBC decryption written out block by block with the raw `des` cipher, so the test
/// does not share the gateway's CBC and padding code.
fn decrypt(secure: &str) -> String {
    let k16 = Md5::digest(
        SECRET
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>(),
    );
    let mut key = k16.to_vec();
    key.extend_from_slice(&k16[..8]);
    let cipher = des::TdesEde3::new_from_slice(&key).unwrap();
    let data = STANDARD.decode(secure).expect("auth.secure is Base64");
    assert_eq!(data.len() % 8, 0);
    let mut previous = [0u8; 8];
    let mut plain = Vec::new();
    for chunk in data.chunks(8) {
        let mut block = des::cipher::generic_array::GenericArray::clone_from_slice(chunk);
        cipher.decrypt_block(&mut block);
        plain.extend(block.iter().zip(previous).map(|(b, p)| b ^ p));
        previous.copy_from_slice(chunk);
    }
    let pad = *plain.last().unwrap() as usize;
    assert!((1..=8).contains(&pad));
    plain.truncate(plain.len() - pad);
    let units: Vec<u16> = plain
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

/// Checks Bearer and the Signature recomputed from the body's request_ref; answers the body.
fn assert_signed(request: &Request) -> Value {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(header("Authorization"), format!("Bearer {API_KEY}"));
    assert_eq!(header("Content-Type"), "application/json");
    let b = body(request);
    let request_ref = b["request_ref"].as_str().expect("request_ref");
    let expected: String = Md5::digest(format!("{request_ref};{SECRET}"))
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    assert_eq!(header("Signature"), expected);
    assert_eq!(b["request_type"], "pay_electricity");
    assert_eq!(b["auth"]["auth_provider"], AUTH_PROVIDER);
    assert_eq!(b["transaction"]["mock_mode"], "Inspect");
    b
}

async fn requests_to(server: &MockServer, suffix: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == format!("/v2{suffix}"))
        .collect()
}

async fn mock(server: &MockServer, suffix: &str, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("/v2{suffix}")))
        .respond_with(response)
        .mount(server)
        .await;
}

fn envelope(status: &str, provider_response: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "status": status, "message": format!("{status} message"),
        "data": {"provider_response_code": "00", "provider": AUTH_PROVIDER,
                 "errors": null, "error": null, "provider_response": provider_response}
    }))
}

fn success(reference: &str) -> Value {
    json!({"reference": reference, "payment_status": "Successful",
           "fulfillment_status": "Succesful", "transaction_final_amount": 1_510_000,
           "transaction_fee": 10_000, "narration": "Token for meter", "units": "30.2kWh",
           "token": "1253-1167-5843-6580-4889"})
}

fn card() -> pb::one_pipe_payment_options::Funding {
    pb::one_pipe_payment_options::Funding::Card(pb::OnePipeCard {
        pan: "5060990580000217499".into(),
        cvv: "111".into(),
        expiry_mmyy: "2203".into(),
        pin: "1234".into(),
    })
}

fn request(
    request_id: &str,
    kobo: i64,
    funding: pb::one_pipe_payment_options::Funding,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: pb::Provider::Onepipe as i32,
        biller_id: "IKEDCPR".into(),
        product_id: "IKEDCPR-TOKEN".into(),
        customer_id: "45000000001".into(),
        amount: ngn(kobo),
        contact: Some(pb::Contact {
            mobile_number: "2348023431320".into(),
            email: "uju@example.com".into(),
            first_name: "Uju".into(),
            last_name: "Usmanu".into(),
        }),
        description: "Electricity for flat 3".into(),
        metadata: [("flat".to_owned(), "3".to_owned())].into(),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
            pb::OnePipePaymentOptions {
                order_reference: "101638163628490752".into(),
                funding: Some(funding),
            },
        )),
        ..Default::default()
    }
}

#[tokio::test]
async fn billers_are_the_distribution_companies_without_http() {
    let server = MockServer::start().await;
    let gw = gateway_for(&server, 5_000).await;
    let op = pb::Provider::Onepipe as i32;
    let cats = gw
        .catalog()
        .list_categories(pb::ListCategoriesRequest {
            provider: op,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cats.categories[0].category_id, "electricity");
    let billers = gw
        .catalog()
        .list_billers(pb::ListBillersRequest {
            provider: op,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .billers;
    assert_eq!(billers.len(), 21);
    assert!(billers
        .iter()
        .any(|b| b.biller_id == "IKEDCPR" && b.currency_code == "NGN"));
    assert!(server.received_requests().await.unwrap().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn options_are_read_per_customer_with_currency_566_as_ngn() {
    let server = MockServer::start().await;
    mock(
        &server,
        "/transact/options",
        ResponseTemplate::new(200).set_body_json(json!({
            "status": "OptionsDelivered", "message": "ok",
            "data": {"provider_response_code": "00", "errors": null, "error": null,
              "provider_response": {"products": [{
                "order_reference": "101638163628490752", "biller_item_id": "IKEDCPR-TOKEN",
                "biller_item_code": "RAC01", "biller_item_name": "Prepaid token",
                "biller_item_description": "By amount", "customer_name": "Kola Abubakar",
                "amount": "500000", "currency": "566", "terms": "<p>t</p>",
                "terms_url": "https://t.example"}], "reference": "x"}}})),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    let answer = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            provider: pb::Provider::Onepipe as i32,
            biller_id: "IKEDCPR".into(),
            product_id: String::new(),
            customer_id: "45000000001".into(),
            amount: ngn(500_000),
            contact: Some(pb::Contact {
                first_name: "Kola".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.customer_name, "Kola Abubakar");
    let o = &answer.options[0];
    assert_eq!(o.order_reference, "101638163628490752");
    assert_eq!(o.product_id, "IKEDCPR-TOKEN");
    assert_eq!(o.amount, ngn(500_000));
    assert_eq!(o.terms_url, "https://t.example");

    let reqs = requests_to(&server, "/transact/options").await;
    assert_eq!(reqs.len(), 1);
    let b = assert_signed(&reqs[0]);
    assert_eq!(b["auth"]["type"], Value::Null);
    assert_eq!(b["auth"]["secure"], Value::Null);
    assert_eq!(b["auth"]["route_mode"], "options");
    let t = &b["transaction"];
    assert_eq!(t["amount"], 500_000);
    assert_eq!(t["customer"]["customer_ref"], "45000000001");
    assert_eq!(t["customer"]["firstname"], "Kola");
    assert_eq!(
        t["details"],
        json!({"biller_id": "IKEDCPR", "biller_item_id": null, "order_reference": null})
    );
    gw.stop().await;
}

#[tokio::test]
async fn every_funding_type_is_encrypted_with_its_documented_plaintext() {
    use pb::one_pipe_payment_options::Funding;
    let cases = [
        ("card", card(), "5060990580000217499;111;2203;1234"),
        (
            "bank.account",
            Funding::BankAccount(pb::OnePipeBankAccount {
                account_number: "0123456789".into(),
                bank_cbn_code: "058".into(),
            }),
            "0123456789;058",
        ),
        (
            "wallet",
            Funding::Wallet(pb::OnePipeWallet {
                wallet_number: "W-55501".into(),
                provider_code: "OPAY".into(),
            }),
            "W-55501;OPAY",
        ),
        (
            "airtime",
            Funding::Airtime(pb::OnePipeAirtime {
                phone_number: "2348030000001".into(),
                telco_code: "MTN".into(),
            }),
            "2348030000001;MTN",
        ),
        (
            "voucher",
            Funding::Voucher(pb::OnePipeVoucher {
                voucher_code: "VCH-0099".into(),
                provider_code: "VPRO".into(),
            }),
            "VCH-0099;VPRO",
        ),
    ];
    let server = MockServer::start().await;
    mock(
        &server,
        "/transact",
        envelope("Successful", success("OP-1")),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    // 1 kobo, whole naira, and a large amount travel as exact kobo integers.
    let amounts = [1, 1_500_000, 9_000_000_000_000];
    for (i, (kind, funding, plain)) in cases.into_iter().enumerate() {
        let kobo = amounts[i % amounts.len()];
        let p = gw
            .pay(request(&format!("fund-{kind}"), kobo, funding))
            .await;
        assert_eq!(state(&p), pb::PaymentState::Succeeded, "{kind}");
        let reqs = requests_to(&server, "/transact").await;
        let b = assert_signed(reqs.last().unwrap());
        assert_eq!(b["auth"]["type"], kind);
        assert_eq!(b["auth"]["route_mode"], Value::Null);
        let secure = b["auth"]["secure"].as_str().unwrap();
        assert_eq!(decrypt(secure), plain, "{kind}");
        assert!(!String::from_utf8_lossy(&reqs.last().unwrap().body).contains(plain));
        let t = &b["transaction"];
        assert_eq!(t["amount"], json!(kobo), "{kind}: kobo");
        assert_eq!(t["transaction_ref"], p.provider_reference.as_str());
        assert!(p.provider_reference.starts_with("bp-test-"));
        assert_eq!(t["transaction_desc"], "Electricity for flat 3");
        assert_eq!(t["meta"], json!({"flat": "3"}));
        assert_eq!(
            t["customer"],
            json!({"customer_ref": "45000000001", "firstname": "Uju", "surname": "Usmanu",
                   "email": "uju@example.com", "mobile_no": "2348023431320"})
        );
        assert_eq!(
            t["details"],
            json!({"biller_id": "IKEDCPR", "biller_item_id": "IKEDCPR-TOKEN",
                   "order_reference": "101638163628490752"})
        );
    }
    // Token, fee, total and delivery reach the payment.
    let p = gw.pay(request("fund-card", 1, card())).await;
    assert_eq!(p.fulfilment_token, "1253-1167-5843-6580-4889");
    assert_eq!(p.fee, ngn(10_000));
    assert_eq!(p.total, ngn(1_510_000));
    assert_eq!(p.fulfilment_state, pb::FulfilmentState::Delivered as i32);
    assert_eq!(p.fulfilment_details["units"], "30.2kWh");
    assert_eq!(p.provider_transaction_id, "OP-1");
    gw.stop().await;
}

#[tokio::test]
async fn orders_without_funding_or_order_reference_are_refused_before_any_http() {
    let server = MockServer::start().await;
    let gw = gateway_for(&server, 5_000).await;
    let mut payments = gw.payments();
    let mut no_funding = request("bad-1", 100, card());
    if let Some(pb::create_payment_request::ProviderOptions::Onepipe(o)) =
        &mut no_funding.provider_options
    {
        o.funding = None;
    }
    let status = payments.create_payment(no_funding).await.unwrap_err();
    let fields = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert!(fields.contains(&"onepipe.funding".to_owned()), "{fields:?}");

    let mut no_reference = request("bad-2", 100, card());
    if let Some(pb::create_payment_request::ProviderOptions::Onepipe(o)) =
        &mut no_reference.provider_options
    {
        o.order_reference.clear();
    }
    let status = payments.create_payment(no_reference).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(format!("{status:?}").contains("onepipe.order_reference"));

    let mut no_options = request("bad-3", 100, card());
    no_options.provider_options = None;
    let status = payments.create_payment(no_options).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let mut dollars = request("bad-4", 100, card());
    dollars.amount = Some(pb::Money {
        currency_code: "USD".into(),
        minor_units: 100,
    });
    let status = payments.create_payment(dollars).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn pay_query_otp_and_reverse_share_one_transaction_ref() {
    let server = MockServer::start().await;
    mock(&server, "/transact", envelope("WaitingForOTP", json!({}))).await;
    let gw = gateway_for(&server, 5_000).await;
    let mut payments = gw.payments();
    let p = gw.pay(request("otp-1", 250_000, card())).await;
    assert_eq!(state(&p), pb::PaymentState::OtpRequired);
    let reference = p.provider_reference.clone();

    // GetPayment asks /transact/query while the payment waits; it still waits.
    mock(
        &server,
        "/transact/query",
        envelope("WaitingForOTP", json!({})),
    )
    .await;
    assert_eq!(
        state(&gw.get(&p.payment_id).await),
        pb::PaymentState::OtpRequired
    );
    assert_eq!(requests_to(&server, "/transact/query").await.len(), 1);

    // A wrong OTP: OnePipe asks again.
    Mock::given(method("POST"))
        .and(path("/v2/transact/validate"))
        .respond_with(envelope("WaitingForOTP", json!({})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let validate = |request_id: &str, otp: &str| pb::ValidatePaymentOtpRequest {
        request_id: request_id.into(),
        payment_id: p.payment_id.clone(),
        otp: otp.into(),
        fields: [("date_of_birth".to_owned(), "1990-01-01".to_owned())].into(),
    };
    let wrong = payments
        .validate_payment_otp(validate("otp-1-v1", "000000"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&wrong), pb::PaymentState::OtpRequired);
    mock(
        &server,
        "/transact/validate",
        envelope("Successful", success("OP-7")),
    )
    .await;
    let right = payments
        .validate_payment_otp(validate("otp-1-v2", "123456"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&right), pb::PaymentState::Succeeded);
    assert_eq!(right.fulfilment_token, "1253-1167-5843-6580-4889");

    // Idempotent: the same request replays without a call; another request under it is
    // refused.
    let replay = payments
        .validate_payment_otp(validate("otp-1-v2", "123456"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&replay), pb::PaymentState::Succeeded);
    let mut other = validate("otp-1-v2", "123456");
    other.fields.insert("extra".into(), "x".into());
    let status = payments.validate_payment_otp(other).await.unwrap_err();
    assert_error(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let validations = requests_to(&server, "/transact/validate").await;
    assert_eq!(validations.len(), 2);
    for (v, otp) in validations.iter().zip(["000000", "123456"]) {
        let mut b = assert_signed(v);
        assert_eq!(decrypt(b["auth"]["secure"].as_str().unwrap()), otp);
        // The whole body: the OTP encrypted in auth.secure (no funding type), the fields by
        // name in transaction.details, nothing else.
        b["request_ref"] = json!("<fresh>");
        b["auth"]["secure"] = json!("<the OTP, encrypted>");
        assert_eq!(
            b,
            json!({
                "request_ref": "<fresh>",
                "request_type": "pay_electricity",
                "auth": {"type": null, "secure": "<the OTP, encrypted>",
                         "auth_provider": AUTH_PROVIDER, "route_mode": null},
                "transaction": {"mock_mode": "Inspect", "transaction_ref": reference.as_str(),
                                "details": {"date_of_birth": "1990-01-01"}}
            })
        );
    }

    // Reverse, once per request_id.
    mock(
        &server,
        "/transact/reverse",
        envelope("Successful", json!({"reference": "OPR-1"})),
    )
    .await;
    let reverse = |request_id: &str, reason: &str| pb::ReversePaymentRequest {
        request_id: request_id.into(),
        payment_id: p.payment_id.clone(),
        reason: reason.into(),
    };
    let reversed = payments
        .reverse_payment(reverse("otp-1-r", "customer changed their mind"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&reversed), pb::PaymentState::Reversed);
    let again = payments
        .reverse_payment(reverse("otp-1-r", "customer changed their mind"))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&again), pb::PaymentState::Reversed);
    let status = payments
        .reverse_payment(reverse("otp-1-r", "another reason"))
        .await
        .unwrap_err();
    assert_error(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    let reversals = requests_to(&server, "/transact/reverse").await;
    assert_eq!(reversals.len(), 1);
    let b = assert_signed(&reversals[0]);
    assert_eq!(b["transaction"]["transaction_ref"], reference.as_str());
    assert_eq!(
        b["transaction"]["transaction_desc"],
        "customer changed their mind"
    );
    assert_eq!(b["auth"]["secure"], Value::Null);

    // Every call had its own request_ref; the transaction_ref never changed.
    let all = server.received_requests().await.unwrap();
    assert_eq!(all.len(), 5, "pay, query, two validations, reversal");
    for r in &all {
        assert_signed(r);
    }
    let refs: HashSet<String> = all
        .iter()
        .map(|r| body(r)["request_ref"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refs.len(), all.len());
    assert!(all
        .iter()
        .all(|r| body(r)["transaction"]["transaction_ref"] == reference.as_str()));
    gw.stop().await;
}

#[tokio::test]
async fn validation_required_lists_the_inputs() {
    let server = MockServer::start().await;
    mock(
        &server,
        "/transact",
        envelope(
            "PendingValidation",
            json!({"required_fields": ["date_of_birth"]}),
        ),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    let p = gw.pay(request("val-1", 5_000, card())).await;
    assert_eq!(state(&p), pb::PaymentState::ValidationRequired);
    assert_eq!(p.required_inputs, vec!["date_of_birth".to_owned()]);

    // Completed with the listed input and no OTP: one /transact/validate whose auth carries no
    // funding and no secure, and whose details carry the input by name.
    mock(
        &server,
        "/transact/validate",
        envelope("Successful", success("OP-V1")),
    )
    .await;
    let mut payments = gw.payments();
    let missing = payments
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            request_id: "val-1-v0".into(),
            payment_id: p.payment_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let violations = assert_error(&missing, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(violations, vec!["fields[date_of_birth]".to_owned()]);
    assert!(requests_to(&server, "/transact/validate").await.is_empty());
    let done = payments
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            request_id: "val-1-v1".into(),
            payment_id: p.payment_id.clone(),
            otp: String::new(),
            fields: [("date_of_birth".to_owned(), "1990-01-01".to_owned())].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&done), pb::PaymentState::Succeeded);
    assert_eq!(done.fulfilment_token, "1253-1167-5843-6580-4889");
    let validations = requests_to(&server, "/transact/validate").await;
    assert_eq!(validations.len(), 1);
    let mut b = assert_signed(&validations[0]);
    b["request_ref"] = json!("<fresh>");
    assert_eq!(
        b,
        json!({
            "request_ref": "<fresh>",
            "request_type": "pay_electricity",
            "auth": {"type": null, "secure": null, "auth_provider": AUTH_PROVIDER,
                     "route_mode": null},
            "transaction": {"mock_mode": "Inspect", "transaction_ref": p.provider_reference,
                            "details": {"date_of_birth": "1990-01-01"}}
        })
    );
    gw.stop().await;
}

#[tokio::test]
async fn declines_and_contradictory_successes() {
    let cases = [
        (
            "declined",
            ResponseTemplate::new(400).set_body_json(json!({"status": "Failed",
                "message": "Insufficient funds", "data": {"error": "insufficient funds"}})),
            pb::PaymentState::Failed,
        ),
        (
            "successful-with-error",
            ResponseTemplate::new(200).set_body_json(json!({"status": "Successful",
                "message": "ok", "data": {"error": "debit failed", "provider_response": {}}})),
            pb::PaymentState::Pending,
        ),
        (
            "successful-with-errors",
            ResponseTemplate::new(200).set_body_json(json!({"status": "Successful",
                "errors": [{"message": "x"}], "data": {}})),
            pb::PaymentState::Pending,
        ),
    ];
    for (name, response, expected) in cases {
        let server = MockServer::start().await;
        mock(&server, "/transact", response).await;
        let gw = gateway_for(&server, 5_000).await;
        let p = gw
            .pay(request(&format!("case-{name}"), 5_000, card()))
            .await;
        assert_eq!(state(&p), expected, "{name}");
        gw.stop().await;
    }
}

/// `Failed` is cross-checked with `provider_response.payment_status` like `Successful` is: a
/// Failed envelope whose payment_status says Successful is not a refusal (PENDING, the query
/// asks again), and a query's Failed with an empty `provider_response: {}` is a Failed without
/// a transaction (unknown). The payment ends as the provider finally says: SUCCEEDED.
#[tokio::test]
async fn a_failed_that_payment_status_contradicts_is_pending_until_the_query_agrees() {
    let server = MockServer::start().await;
    mock(
        &server,
        "/transact",
        envelope(
            "Failed",
            json!({"reference": "OP-21", "payment_status": "Successful"}),
        ),
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v2/transact/query"))
        .respond_with(envelope("Failed", json!({})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mock(
        &server,
        "/transact/query",
        envelope("Successful", success("OP-21")),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    let p = gw.pay(request("contra-failed", 5_000, card())).await;
    assert_eq!(state(&p), pb::PaymentState::Pending, "never FAILED");
    assert!(
        p.provider_message.contains("payment_status \"Successful\""),
        "{}",
        p.provider_message
    );
    let still = gw.get(&p.payment_id).await;
    assert_eq!(
        state(&still),
        pb::PaymentState::Pending,
        "{{}} is no transaction"
    );
    let settled = gw.get(&p.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    assert_eq!(requests_to(&server, "/transact").await.len(), 1);
    assert_eq!(requests_to(&server, "/transact/query").await.len(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn faults_leave_the_payment_pending_and_the_query_settles_it() {
    let faults = [
        (
            "http-500",
            ResponseTemplate::new(500).set_body_string("oops"),
        ),
        (
            "timeout",
            envelope("Successful", success("late")).set_delay(Duration::from_millis(1_500)),
        ),
        (
            "garbage",
            ResponseTemplate::new(200).set_body_string("<html>not json</html>"),
        ),
        (
            "no-status",
            ResponseTemplate::new(200).set_body_json(json!({"data": {}})),
        ),
        ("unknown-status", envelope("Processing", json!({}))),
    ];
    for (name, response) in faults {
        let server = MockServer::start().await;
        mock(&server, "/transact", response).await;
        let settings = PaymentSettings {
            reconcile_backoff_ms: vec![0, 0, 0],
            ..PaymentSettings::default()
        };
        let gw = TestGateway::start_with(
            ProvidersConfig {
                onepipe: Some(config(&server, 500)),
                ..Default::default()
            },
            Arc::new(MemoryStore::default()),
            settings,
        )
        .await;
        let id = format!("fault-{name}");
        let p = gw.pay(request(&id, 5_000, card())).await;
        assert_eq!(state(&p), pb::PaymentState::Pending, "{name}");
        assert_eq!(requests_to(&server, "/transact").await.len(), 1, "{name}");

        // The reconciler asks /transact/query: still processing, stays PENDING.
        Mock::given(method("POST"))
            .and(path("/v2/transact/query"))
            .respond_with(envelope("Processing", json!({})))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        gw.gateway
            .reconcile_due(&ReconcileStats::default())
            .await
            .unwrap();
        assert_eq!(
            state(&gw.get(&p.payment_id).await),
            pb::PaymentState::Pending,
            "{name}"
        );
        // Then GetPayment asks again and the answer settles it.
        mock(
            &server,
            "/transact/query",
            envelope("Successful", success("OP-9")),
        )
        .await;
        let settled = gw.get(&p.payment_id).await;
        assert_eq!(state(&settled), pb::PaymentState::Succeeded, "{name}");
        assert_eq!(settled.fee, ngn(10_000));
        let queries = requests_to(&server, "/transact/query").await;
        assert!(queries.len() >= 2, "{name}");
        let mut refs = HashSet::new();
        for q in &queries {
            let b = assert_signed(q);
            assert_eq!(b["transaction"]["transaction_ref"], p.provider_reference);
            assert_eq!(b["auth"]["secure"], Value::Null);
            refs.insert(b["request_ref"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            refs.len(),
            queries.len(),
            "{name}: fresh request_ref per call"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_failed_query_without_a_transaction_does_not_fail_the_payment() {
    let server = MockServer::start().await;
    mock(&server, "/transact", ResponseTemplate::new(502)).await;
    mock(
        &server,
        "/transact/query",
        ResponseTemplate::new(200)
            .set_body_json(json!({"status": "Failed", "message": "Transaction not found"})),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    let p = gw.pay(request("nf-1", 5_000, card())).await;
    let again = gw.get(&p.payment_id).await;
    assert_eq!(state(&again), pb::PaymentState::Pending);
    gw.stop().await;
}

#[tokio::test]
async fn credential_refusal_on_options_is_the_gateways_problem() {
    let server = MockServer::start().await;
    mock(
        &server,
        "/transact/options",
        ResponseTemplate::new(401).set_body_string("denied"),
    )
    .await;
    let gw = gateway_for(&server, 5_000).await;
    let status = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            provider: pb::Provider::Onepipe as i32,
            biller_id: "IKEDCPR".into(),
            customer_id: "45000000001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    gw.stop().await;
}

#[tokio::test]
async fn the_reconciler_settles_a_payment_left_pending_by_a_502() {
    let server = MockServer::start().await;
    mock(&server, "/transact", ResponseTemplate::new(502)).await;
    mock(
        &server,
        "/transact/query",
        envelope("Successful", success("OP-11")),
    )
    .await;
    let settings = PaymentSettings {
        reconcile_backoff_ms: vec![0, 0],
        ..PaymentSettings::default()
    };
    let gw = TestGateway::start_with(
        ProvidersConfig {
            onepipe: Some(config(&server, 5_000)),
            ..Default::default()
        },
        Arc::new(MemoryStore::default()),
        settings,
    )
    .await;
    let p = gw.pay(request("recon-1", 5_000, card())).await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    let stats = ReconcileStats::default();
    gw.gateway.reconcile_due(&stats).await.unwrap();
    let queries = requests_to(&server, "/transact/query").await;
    assert_eq!(queries.len(), 1, "the reconciler asked OnePipe");
    let b = assert_signed(&queries[0]);
    assert_eq!(b["transaction"]["transaction_ref"], p.provider_reference);
    // Read straight from the journal: GetPayment of a final payment asks nothing more.
    let settled = gw.get(&p.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    assert_eq!(settled.fulfilment_token, "1253-1167-5843-6580-4889");
    assert_eq!(requests_to(&server, "/transact/query").await.len(), 1);
    gw.stop().await;
}

/// What a replica that died between claiming a OnePipe payment and calling `/transact`
/// leaves behind: the record marked claimed, its in-flight time over, due for reconciliation.
async fn strand_claimed(store: &MemoryStore, request_id: &str) -> String {
    let now = Clock::default().now_ms();
    let mut order = PaymentOrder::new(
        ProviderId::OnePipe,
        PaymentKind::Bill,
        "IKEDCPR-TOKEN",
        "45000000001",
        Money::new(Currency::Ngn, 5_000),
    );
    order.biller_id = "IKEDCPR".into();
    order.options = PaymentOptions::OnePipe(OnePipeOptions {
        order_reference: "OPT-1".into(),
        funding: OnePipeFundingKind::Card,
    });
    let record = PaymentRecord {
        call: CallPhase::Claimed {
            since_ms: now - 10_000,
        },
        ..PaymentRecord::claimed(
            request_id.into(),
            order,
            format!("billpay-{request_id}"),
            now - 10_000,
        )
    };
    let payment_id = record.payment_id.clone();
    store
        .set(
            &keys::payment(&payment_id),
            &serde_json::to_vec(&record).unwrap(),
            None,
        )
        .await
        .unwrap();
    store
        .schedule(&keys::reconcile_schedule(), &payment_id, now - 1)
        .await
        .unwrap();
    payment_id
}

#[tokio::test]
async fn a_not_found_looking_query_answer_never_fails_a_claimed_payment_as_never_sent() {
    // OnePipe documents no "no such transaction" answer, so neither a 404 nor a Failed
    // without a transaction proves the claimed call never went out: the payment is
    // reconciled as one whose call returned with an unknown outcome, not FAILED.
    for (name, answer) in [
        (
            "404",
            ResponseTemplate::new(404).set_body_string("not found"),
        ),
        (
            "failed",
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "Failed", "message": "Transaction not found"})),
        ),
    ] {
        let server = MockServer::start().await;
        mock(&server, "/transact/query", answer).await;
        let store = Arc::new(MemoryStore::default());
        let settings = PaymentSettings {
            in_flight_expiry_ms: 1_000,
            ..PaymentSettings::default()
        };
        let gw = TestGateway::start_with(
            ProvidersConfig {
                onepipe: Some(config(&server, 5_000)),
                ..Default::default()
            },
            store.clone(),
            settings,
        )
        .await;
        let payment_id = strand_claimed(&store, &format!("claimed-{name}")).await;
        gw.gateway
            .reconcile_due(&ReconcileStats::default())
            .await
            .unwrap();
        let queries = requests_to(&server, "/transact/query").await;
        assert_eq!(queries.len(), 1, "{name}: asked OnePipe first");
        let b = assert_signed(&queries[0]);
        assert_eq!(
            b["transaction"]["transaction_ref"],
            format!("billpay-claimed-{name}")
        );
        let record = gw.gateway.load_payment(&payment_id).await.unwrap().unwrap();
        assert_eq!(record.state, PaymentState::Pending, "{name}");
        assert_eq!(
            record.call,
            CallPhase::Returned,
            "{name}: may have gone out"
        );
        assert!(
            !record.provider_message.contains("never sent"),
            "{name}: {}",
            record.provider_message
        );
        assert!(requests_to(&server, "/transact").await.is_empty(), "{name}");
        gw.stop().await;
    }
}

//! OnePipe in sandbox mode: real tonic client -> real gateway -> real HTTP -> the in-process
//! OnePipe simulator, which checks Bearer, Signature and the 3DES `auth.secure`. Covers the
//! README walkthrough journey (options -> pay -> OTP_REQUIRED -> wrong OTP -> right OTP ->
//! SUCCEEDED with a token -> reverse -> REVERSED) and the documented test meters.

mod common;

use billpay_gateway::{
    config::ProvidersConfig,
    pb,
    sandbox::{self, onepipe as sim, Simulators},
};
use common::*;
use tonic::Code;

const OP: pb::Provider = pb::Provider::Onepipe;

async fn sandbox_gateway() -> (Simulators, TestGateway) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let gw = TestGateway::start(sandbox::providers_config(&sims.base_url())).await;
    (sims, gw)
}

/// GetPaymentOptions for `meter`: the option's product and order_reference.
async fn option_for(gw: &TestGateway, meter: &str, kobo: i64) -> pb::PaymentOption {
    let answer = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            provider: OP as i32,
            biller_id: "IKEDCPR".into(),
            customer_id: meter.into(),
            amount: ngn(kobo),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.customer_name, "Ngozi Okafor");
    answer.options.into_iter().next().expect("one option")
}

fn pay_request(
    request_id: &str,
    meter: &str,
    kobo: i64,
    option: &pb::PaymentOption,
) -> pb::CreatePaymentRequest {
    pb::CreatePaymentRequest {
        request_id: request_id.into(),
        provider: OP as i32,
        biller_id: "IKEDCPR".into(),
        product_id: option.product_id.clone(),
        customer_id: meter.into(),
        amount: ngn(kobo),
        provider_options: Some(pb::create_payment_request::ProviderOptions::Onepipe(
            pb::OnePipePaymentOptions {
                order_reference: option.order_reference.clone(),
                funding: Some(pb::one_pipe_payment_options::Funding::BankAccount(
                    pb::OnePipeBankAccount {
                        account_number: "0123456789".into(),
                        bank_cbn_code: "058".into(),
                    },
                )),
            },
        )),
        ..Default::default()
    }
}

async fn validate(
    gw: &TestGateway,
    request_id: &str,
    payment_id: &str,
    otp: &str,
) -> Result<pb::Payment, tonic::Status> {
    gw.payments()
        .validate_payment_otp(pb::ValidatePaymentOtpRequest {
            request_id: request_id.into(),
            payment_id: payment_id.into(),
            otp: otp.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().payment.unwrap())
}

#[tokio::test]
async fn walkthrough_journey_otp_then_reversal() {
    let (sims, gw) = sandbox_gateway().await;
    let meter = "10000000001";
    let option = option_for(&gw, meter, 500_000).await;
    assert_eq!(option.amount, ngn(500_000));
    assert!(!option.order_reference.is_empty());

    let p = gw
        .pay(pay_request("op-journey", meter, 500_000, &option))
        .await;
    assert_eq!(state(&p), pb::PaymentState::OtpRequired);

    let wrong = validate(&gw, "op-journey-otp-1", &p.payment_id, "000000")
        .await
        .unwrap();
    assert_eq!(state(&wrong), pb::PaymentState::OtpRequired);
    let right = validate(&gw, "op-journey-otp-2", &p.payment_id, sim::OTP)
        .await
        .unwrap();
    assert_eq!(state(&right), pb::PaymentState::Succeeded);
    assert!(!right.fulfilment_token.is_empty());
    assert_eq!(right.fee, ngn(sim::FEE_KOBO));
    assert_eq!(right.total, ngn(500_000 + sim::FEE_KOBO));
    assert_eq!(
        right.fulfilment_state,
        pb::FulfilmentState::Delivered as i32
    );

    let reversed = gw
        .payments()
        .reverse_payment(pb::ReversePaymentRequest {
            request_id: "op-journey-reverse".into(),
            payment_id: p.payment_id.clone(),
            reason: "walkthrough".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&reversed), pb::PaymentState::Reversed);
    assert_eq!(reversed.fulfilment_token, right.fulfilment_token);

    for (op, n) in [
        ("payment_options", 1),
        ("pay", 1),
        ("validate_payment", 2),
        ("reverse_payment", 1),
        ("rejected_auth", 0),
        ("rejected_request_ref", 0),
    ] {
        assert_eq!(sims.calls.get("onepipe", op), n, "{op}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn documented_meters_behave_as_the_readme_says() {
    let (_sims, gw) = sandbox_gateway().await;
    // Validation: see validation_required_completes_with_the_fields_and_no_otp.

    // Declined.
    let meter = "20000000000";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw
        .pay(pay_request("op-decline", meter, 10_000, &option))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Failed);

    // Pending, then the first query settles it.
    let meter = "30000000001";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw
        .pay(pay_request("op-pending", meter, 10_000, &option))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    assert_eq!(
        state(&gw.get(&p.payment_id).await),
        pb::PaymentState::Succeeded
    );

    // Pending forever: the query keeps it PENDING.
    let meter = "30000000002";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw
        .pay(pay_request("op-forever", meter, 10_000, &option))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    let again = gw.get(&p.payment_id).await;
    assert_eq!(state(&again), pb::PaymentState::Pending);
    assert_eq!(again.status_checks, 1);

    // Took the money, then 502: PENDING, and the query finds the success.
    let meter = "50000000000";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw.pay(pay_request("op-502", meter, 10_000, &option)).await;
    assert_eq!(state(&p), pb::PaymentState::Pending);
    let settled = gw.get(&p.payment_id).await;
    assert_eq!(state(&settled), pb::PaymentState::Succeeded);
    assert!(!settled.fulfilment_token.is_empty());

    // An order_reference of another meter is refused by the simulator: FAILED, nothing paid.
    let p = gw
        .pay(pay_request(
            "op-wrong-order",
            "30000000002",
            10_000,
            &option,
        ))
        .await;
    assert_eq!(state(&p), pb::PaymentState::Failed);
    gw.stop().await;
}

#[tokio::test]
async fn validation_required_completes_with_the_fields_and_no_otp() {
    let (sims, gw) = sandbox_gateway().await;
    let meter = "10000000002";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw.pay(pay_request("op-val", meter, 10_000, &option)).await;
    assert_eq!(state(&p), pb::PaymentState::ValidationRequired);
    assert_eq!(p.required_inputs, vec![sim::VALIDATION_FIELD.0.to_owned()]);
    let (field, value) = (
        sim::VALIDATION_FIELD.0.to_owned(),
        sim::VALIDATION_FIELD.1.to_owned(),
    );
    let request =
        |request_id: &str, otp: &str, fields: &[(&str, &str)]| pb::ValidatePaymentOtpRequest {
            request_id: request_id.into(),
            payment_id: p.payment_id.clone(),
            otp: otp.into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };

    // Refused before any call: the listed input missing (or empty), or an OTP it did not ask
    // for.
    let mut payments = gw.payments();
    for (bad, fields, otp, violation) in [
        ("op-val-none", vec![], "", format!("fields[{field}]")),
        (
            "op-val-empty",
            vec![(field.as_str(), " ")],
            "",
            format!("fields[{field}]"),
        ),
        (
            "op-val-other",
            vec![("meter_type", "prepaid")],
            "",
            format!("fields[{field}]"),
        ),
        (
            "op-val-otp",
            vec![(field.as_str(), value.as_str())],
            "123456",
            "otp".to_owned(),
        ),
    ] {
        let status = payments
            .validate_payment_otp(request(bad, otp, &fields))
            .await
            .unwrap_err();
        let violations = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
        assert_eq!(violations, vec![violation], "{bad}");
    }
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 0);
    assert_eq!(
        state(&gw.get(&p.payment_id).await),
        pb::PaymentState::ValidationRequired
    );

    // The listed input and no OTP complete it, in one call.
    let done = payments
        .validate_payment_otp(request("op-val-1", "", &[(&field, &value)]))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&done), pb::PaymentState::Succeeded);
    assert!(!done.fulfilment_token.is_empty());
    assert!(done.required_inputs.is_empty());
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 1);
    // A replay answers from the record; the same request_id with an OTP is another request.
    let replay = payments
        .validate_payment_otp(request("op-val-1", "", &[(&field, &value)]))
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(state(&replay), pb::PaymentState::Succeeded);
    let status = payments
        .validate_payment_otp(request("op-val-1", "123456", &[(&field, &value)]))
        .await
        .unwrap_err();
    assert_error(&status, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 1);
    assert_eq!(sims.calls.get("onepipe", "rejected_auth"), 0);
    gw.stop().await;
}

#[tokio::test]
async fn otp_required_needs_the_otp() {
    let (sims, gw) = sandbox_gateway().await;
    let meter = "10000000001";
    let option = option_for(&gw, meter, 10_000).await;
    let p = gw
        .pay(pay_request("op-otp-none", meter, 10_000, &option))
        .await;
    assert_eq!(state(&p), pb::PaymentState::OtpRequired);
    let status = validate(&gw, "op-otp-none-1", &p.payment_id, "")
        .await
        .unwrap_err();
    let violations = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(violations, vec!["otp".to_owned()]);
    let status = validate(&gw, "op-otp-none-2", &p.payment_id, "12a4")
        .await
        .unwrap_err();
    let violations = assert_error(&status, Code::InvalidArgument, "INVALID_REQUEST");
    assert_eq!(violations, vec!["otp".to_owned()]);
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 0);
    let done = validate(&gw, "op-otp-none-3", &p.payment_id, sim::OTP)
        .await
        .unwrap();
    assert_eq!(state(&done), pb::PaymentState::Succeeded);
    assert_eq!(sims.calls.get("onepipe", "validate_payment"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_simulator_refuses_a_wrong_client_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let mut config = sim::client_config(&format!("{}/onepipe", sims.base_url()));
    config.client_secret = "not-the-sandbox-secret".to_owned().into();
    let gw = TestGateway::start(ProvidersConfig {
        onepipe: Some(config),
        ..Default::default()
    })
    .await;
    let status = gw
        .customers()
        .get_payment_options(pb::GetPaymentOptionsRequest {
            provider: OP as i32,
            biller_id: "IKEDCPR".into(),
            customer_id: "10000000001".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&status, Code::FailedPrecondition, "PROVIDER_AUTH_FAILED");
    assert_eq!(sims.calls.get("onepipe", "rejected_auth"), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_simulator_refuses_a_reused_request_ref_and_a_bad_secure() {
    use billpay_gateway::providers::onepipe::auth;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sims = Simulators::start(listener).unwrap();
    let url = format!("{}/onepipe/v2/transact/query", sims.base_url());
    let send = |request_ref: &'static str, secure: Option<&'static str>| {
        let body = serde_json::json!({
            "request_ref": request_ref, "request_type": "pay_electricity",
            "auth": {"type": null, "secure": secure, "auth_provider": sim::AUTH_PROVIDER},
            "transaction": {"mock_mode": "Inspect", "transaction_ref": "nope"}});
        reqwest::Client::new()
            .post(&url)
            .bearer_auth(sim::API_KEY)
            .header(
                "Signature",
                auth::signature(request_ref, sim::CLIENT_SECRET),
            )
            .json(&body)
            .send()
    };
    assert_eq!(send("ref-1", None).await.unwrap().status(), 404);
    assert_eq!(send("ref-1", None).await.unwrap().status(), 400);
    assert_eq!(sims.calls.get("onepipe", "rejected_request_ref"), 1);
    assert_eq!(
        send("ref-2", Some("AAAAAAAAAAA=")).await.unwrap().status(),
        401
    );
}

//! The follow-up journal (OTP validation, reversal, saved-bill deletion) through the gateway
//! with a scripted provider: one provider call per `request_id` also under concurrent
//! duplicates, replays answer what the first call learned, a different request under the same
//! key is refused, the payment's state gates each operation, and an unknown OTP outcome leaves
//! the payment to reconciliation. The providers' own HTTP is covered by their `*_http.rs` tests.
//!
//! One follow-up at a time is shown over real HTTP: OnePipe's `/transact/validate` and
//! `/transact/reverse` played by wiremock with a slow answer, through a real tonic client.

mod common;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use billpay_gateway::{
    auth::ObjectScope,
    domain::{
        payment::PaymentKind, Capability, Currency, Money, PaymentOrder, PaymentOutcome,
        PaymentRecord, PaymentSecrets, PaymentState, Provider, ProviderError, ProviderId,
    },
    error::GatewayError,
    gateway::{CatalogSettings, Gateway, PaymentSettings, Registry},
    store::{memory::MemoryStore, Store},
};
use secrecy::{ExposeSecret, SecretString};

/// Pays into OTP_REQUIRED; validates and reverses from scripts of answers.
#[derive(Default)]
struct Scripted {
    validations: Mutex<VecDeque<Result<PaymentOutcome, ProviderError>>>,
    reversals: Mutex<VecDeque<Result<PaymentOutcome, ProviderError>>>,
    validate_calls: AtomicU32,
    reverse_calls: AtomicU32,
    delete_calls: AtomicU32,
    otps_seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Provider for Scripted {
    fn id(&self) -> ProviderId {
        ProviderId::OnePipe
    }
    fn display_name(&self) -> &'static str {
        "scripted"
    }
    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ngn]
    }
    fn capabilities(&self) -> &'static [Capability] {
        &[
            Capability::CreatePayment,
            Capability::ValidatePaymentOtp,
            Capability::ReversePayment,
            Capability::SavedBills,
        ]
    }
    fn payment_reference(&self, sequence: u64) -> Option<String> {
        Some(format!("ref{sequence}"))
    }
    async fn pay(
        &self,
        _: &PaymentRecord,
        _: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        Ok(PaymentOutcome::answered(
            PaymentState::OtpRequired,
            "WaitingForOTP",
            "enter the OTP",
        ))
    }
    async fn validate_payment(
        &self,
        _: &PaymentRecord,
        secrets: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        self.validate_calls.fetch_add(1, Ordering::SeqCst);
        let otp = secrets.otp.as_ref().expect("the OTP reaches the provider");
        self.otps_seen
            .lock()
            .unwrap()
            .push(otp.expose_secret().to_owned());
        tokio::task::yield_now().await;
        self.validations
            .lock()
            .unwrap()
            .pop_front()
            .expect("scripted validation")
    }
    async fn reverse_payment(
        &self,
        _: &PaymentRecord,
        _: &str,
    ) -> Result<PaymentOutcome, ProviderError> {
        self.reverse_calls.fetch_add(1, Ordering::SeqCst);
        self.reversals
            .lock()
            .unwrap()
            .pop_front()
            .expect("scripted reversal")
    }
    async fn delete_saved_bill(&self, _: &str) -> Result<(), ProviderError> {
        self.delete_calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(())
    }
}

fn setup() -> (Arc<Gateway>, Arc<Scripted>) {
    let provider = Arc::new(Scripted::default());
    let mut registry = Registry::new();
    registry.insert(ProviderId::OnePipe, provider.clone() as Arc<dyn Provider>);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gateway = Gateway::new(
        registry,
        store,
        PaymentSettings::default(),
        CatalogSettings::default(),
        false,
    );
    (gateway, provider)
}

async fn pay(gateway: &Arc<Gateway>, request_id: &str) -> PaymentRecord {
    let order = PaymentOrder::new(
        ProviderId::OnePipe,
        PaymentKind::Bill,
        "item",
        "meter",
        Money::new(Currency::Ngn, 50_000),
    );
    let record = gateway
        .create_payment(
            request_id.into(),
            order,
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(record.state, PaymentState::OtpRequired);
    record
}

fn otp(value: &str) -> PaymentSecrets {
    PaymentSecrets {
        otp: Some(SecretString::from(value.to_owned())),
        ..PaymentSecrets::default()
    }
}

async fn validate(
    gateway: &Arc<Gateway>,
    request_id: &str,
    payment_id: &str,
    code: &str,
) -> Result<PaymentRecord, GatewayError> {
    gateway
        .validate_payment(request_id.into(), payment_id.into(), otp(code), None)
        .await
}

fn answered(state: PaymentState, code: &str) -> Result<PaymentOutcome, ProviderError> {
    Ok(PaymentOutcome::answered(state, code, code))
}

#[tokio::test]
async fn a_wrong_otp_keeps_waiting_and_the_right_one_settles_once() {
    let (gateway, provider) = setup();
    let payment = pay(&gateway, "pay-1").await;
    provider.validations.lock().unwrap().extend([
        answered(PaymentState::OtpRequired, "WaitingForOTP"),
        answered(PaymentState::Succeeded, "Successful"),
    ]);

    let wrong = validate(&gateway, "otp-1", &payment.payment_id, "0000")
        .await
        .unwrap();
    assert_eq!(wrong.state, PaymentState::OtpRequired);
    let right = validate(&gateway, "otp-2", &payment.payment_id, "123456")
        .await
        .unwrap();
    assert_eq!(right.state, PaymentState::Succeeded);

    // Replays answer the payment as it stands, without calling the provider again.
    let replay = validate(&gateway, "otp-2", &payment.payment_id, "123456")
        .await
        .unwrap();
    assert_eq!(replay.state, PaymentState::Succeeded);
    assert_eq!(provider.validate_calls.load(Ordering::SeqCst), 2);
    assert_eq!(*provider.otps_seen.lock().unwrap(), ["0000", "123456"]);

    // A new validation of a settled payment is refused before any call.
    let late = validate(&gateway, "otp-3", &payment.payment_id, "123456").await;
    assert!(matches!(
        late,
        Err(GatewayError::PaymentStateConflict { .. })
    ));
    assert_eq!(provider.validate_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_id_used_for_another_payment_is_refused() {
    let (gateway, provider) = setup();
    let first = pay(&gateway, "pay-a").await;
    let second = pay(&gateway, "pay-b").await;
    provider
        .validations
        .lock()
        .unwrap()
        .push_back(answered(PaymentState::Succeeded, "Successful"));
    validate(&gateway, "otp-x", &first.payment_id, "1234")
        .await
        .unwrap();
    let reused = validate(&gateway, "otp-x", &second.payment_id, "1234").await;
    assert!(matches!(
        reused,
        Err(GatewayError::IdempotencyKeyReused { .. })
    ));
    assert_eq!(provider.validate_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_duplicates_make_one_provider_call() {
    let (gateway, provider) = setup();
    let payment = pay(&gateway, "pay-c").await;
    provider
        .validations
        .lock()
        .unwrap()
        .push_back(answered(PaymentState::Succeeded, "Successful"));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (gateway, id) = (gateway.clone(), payment.payment_id.clone());
        tasks.push(tokio::spawn(async move {
            validate(&gateway, "otp-dup", &id, "1234").await
        }));
    }
    let mut settled = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) if r.state == PaymentState::Succeeded => settled += 1,
            Ok(r) => assert_eq!(r.state, PaymentState::OtpRequired),
            // A duplicate of the running request: its own follow-up is in flight.
            Err(GatewayError::FollowUpInFlight {
                this_request: true, ..
            }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(settled >= 1);
    assert_eq!(provider.validate_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_otp_outcome_leaves_the_payment_pending_for_reconciliation() {
    let (gateway, provider) = setup();
    let payment = pay(&gateway, "pay-u").await;
    provider
        .validations
        .lock()
        .unwrap()
        .push_back(Err(ProviderError::Timeout));
    let record = validate(&gateway, "otp-u", &payment.payment_id, "1234")
        .await
        .unwrap();
    assert_eq!(record.state, PaymentState::Pending);
    let replay = validate(&gateway, "otp-u", &payment.payment_id, "1234")
        .await
        .unwrap();
    assert_eq!(replay.state, PaymentState::Pending);
    assert_eq!(provider.validate_calls.load(Ordering::SeqCst), 1);
    assert!(record.provider_message.contains("outcome unknown"));
}

#[tokio::test]
async fn a_reversal_is_made_once_and_a_refusal_changes_nothing() {
    let (gateway, provider) = setup();
    let payment = pay(&gateway, "pay-r").await;
    provider
        .validations
        .lock()
        .unwrap()
        .push_back(answered(PaymentState::Succeeded, "Successful"));
    validate(&gateway, "otp-r", &payment.payment_id, "1234")
        .await
        .unwrap();
    provider.reversals.lock().unwrap().extend([
        Ok(PaymentOutcome::answered(
            PaymentState::Failed,
            "Failed",
            "reversal window closed",
        )),
        answered(PaymentState::Reversed, "Successful"),
    ]);
    let reverse = |request_id: &'static str| {
        let (gateway, id) = (gateway.clone(), payment.payment_id.clone());
        async move {
            gateway
                .reverse_payment(request_id.into(), id, "customer asked".into(), None)
                .await
        }
    };

    let refused = reverse("rev-1").await;
    assert!(matches!(refused, Err(GatewayError::Provider { .. })));
    let state = gateway.load_payment(&payment.payment_id).await.unwrap();
    assert_eq!(state.unwrap().state, PaymentState::Succeeded);
    // The refusal replays without a second call.
    assert!(reverse("rev-1").await.is_err());
    assert_eq!(provider.reverse_calls.load(Ordering::SeqCst), 1);

    let reversed = reverse("rev-2").await.unwrap();
    assert_eq!(reversed.state, PaymentState::Reversed);
    assert_eq!(
        reverse("rev-2").await.unwrap().state,
        PaymentState::Reversed
    );
    assert_eq!(provider.reverse_calls.load(Ordering::SeqCst), 2);
    // Reversing a reversed payment is refused before any call.
    assert!(matches!(
        reverse("rev-3").await,
        Err(GatewayError::PaymentStateConflict { .. })
    ));
    assert_eq!(provider.reverse_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_saved_bill_is_deleted_once_per_request_id() {
    let (gateway, provider) = setup();
    for _ in 0..3 {
        gateway
            .delete_saved_bill_for(
                "del-1".into(),
                ProviderId::OnePipe,
                "bill-7".into(),
                &ObjectScope::Merchant,
            )
            .await
            .unwrap();
    }
    let other = gateway
        .delete_saved_bill_for(
            "del-1".into(),
            ProviderId::OnePipe,
            "bill-8".into(),
            &ObjectScope::Merchant,
        )
        .await;
    assert!(matches!(
        other,
        Err(GatewayError::IdempotencyKeyReused { .. })
    ));
    assert_eq!(provider.delete_calls.load(Ordering::SeqCst), 1);
}

// ---- One follow-up at a time, over HTTP (OnePipe played by wiremock) ----

mod one_at_a_time {
    use std::time::Duration;

    use billpay_gateway::{
        config::ProvidersConfig,
        pb,
        providers::onepipe::{MockMode, OnePipeConfig},
    };
    use serde_json::{json, Value};
    use tonic::Code;
    use tonic_types::StatusExt;
    use wiremock::{
        matchers::{method, path},
        Mock, MockServer, ResponseTemplate,
    };

    use super::common::*;

    fn config(server: &MockServer) -> OnePipeConfig {
        OnePipeConfig {
            base_url: format!("{}/v2", server.uri()),
            api_key: "wiremock-onepipe-api-key".to_owned().into(),
            client_secret: "wiremock-onepipe-secret".to_owned().into(),
            mock_mode: MockMode::Inspect,
            auth_provider: "Beeceptor".to_owned(),
            transaction_ref_prefix: "bp-once-".to_owned(),
            timeout_ms: 30_000,
            connect_timeout_ms: 1_000,
            limits: Default::default(),
        }
    }

    fn envelope(status: &str, provider_response: Value) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "status": status, "message": format!("{status} message"),
            "data": {"provider_response_code": "00", "provider": "Beeceptor",
                     "errors": null, "error": null, "provider_response": provider_response}
        }))
    }

    fn success(reference: &str) -> Value {
        json!({"reference": reference, "payment_status": "Successful",
               "fulfillment_status": "Succesful", "transaction_final_amount": 250_000,
               "transaction_fee": 0, "token": "1253-1167-5843-6580-4889"})
    }

    async fn mount(server: &MockServer, suffix: &str, response: ResponseTemplate, times: u64) {
        Mock::given(method("POST"))
            .and(path(format!("/v2{suffix}")))
            .respond_with(response)
            .expect(times)
            .mount(server)
            .await;
    }

    /// Waits (without a deadline of its own beyond a generous bound) until wiremock has
    /// received `n` requests to `suffix`.
    async fn received(server: &MockServer, suffix: &str, n: usize) {
        for _ in 0..2_000 {
            let count = server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.url.path() == format!("/v2{suffix}"))
                .count();
            if count >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{suffix} never received {n} requests");
    }

    fn in_flight_meta(status: &tonic::Status) -> String {
        assert_error(status, Code::Aborted, "REQUEST_IN_FLIGHT");
        assert!(retry_delay(status).is_some(), "RetryInfo: {status:?}");
        status
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .get("in_flight")
            .cloned()
            .unwrap_or_default()
    }

    fn validate(request_id: &str, payment_id: &str, otp: &str) -> pb::ValidatePaymentOtpRequest {
        pb::ValidatePaymentOtpRequest {
            request_id: request_id.into(),
            payment_id: payment_id.into(),
            otp: otp.into(),
            fields: Default::default(),
        }
    }

    /// A second OTP under another request_id while the first is at OnePipe is refused and
    /// never sent: its quick refusal could otherwise make FAILED what the slow first one made
    /// SUCCEEDED.
    #[tokio::test]
    async fn a_second_otp_while_the_first_is_at_the_provider_is_never_sent() {
        let server = MockServer::start().await;
        mount(
            &server,
            "/transact",
            envelope("WaitingForOTP", json!({})),
            1,
        )
        .await;
        // One validation only (`expect(1)`), answered slowly: success.
        mount(
            &server,
            "/transact/validate",
            envelope("Successful", success("OP-1")).set_delay(Duration::from_millis(1_500)),
            1,
        )
        .await;
        let gw = TestGateway::start(ProvidersConfig {
            onepipe: Some(config(&server)),
            ..Default::default()
        })
        .await;
        let p = gw.pay(onepipe_card_payment("once-otp")).await;
        assert_eq!(state(&p), pb::PaymentState::OtpRequired);

        let mut first_client = gw.payments();
        let first_request = validate("once-otp-v1", &p.payment_id, "123456");
        let first =
            tokio::spawn(async move { first_client.validate_payment_otp(first_request).await });
        received(&server, "/transact/validate", 1).await;

        let second = gw
            .payments()
            .validate_payment_otp(validate("once-otp-v2", &p.payment_id, "000000"))
            .await
            .unwrap_err();
        assert_eq!(in_flight_meta(&second), "another_request");

        let first = first.await.unwrap().unwrap().into_inner().payment.unwrap();
        assert_eq!(state(&first), pb::PaymentState::Succeeded);
        // The mark went with the outcome: the payment stays SUCCEEDED, and a later OTP is
        // refused by state, not sent.
        let late = gw
            .payments()
            .validate_payment_otp(validate("once-otp-v3", &p.payment_id, "000000"))
            .await
            .unwrap_err();
        assert_error(&late, Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT");
        let record = gw
            .gateway
            .load_payment(&p.payment_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            record.state,
            billpay_gateway::domain::PaymentState::Succeeded
        );
        assert!(record.follow_up.is_none(), "{:?}", record.follow_up);
        server.verify().await;
        gw.stop().await;
    }

    /// A caller deadline during its own OTP validation answers REQUEST_IN_FLIGHT with
    /// `in_flight=this_request`, not the unchanged OTP_REQUIRED payment a wrong OTP gives.
    #[tokio::test]
    async fn a_deadline_during_an_otp_validation_is_not_a_wrong_otp() {
        let server = MockServer::start().await;
        mount(
            &server,
            "/transact",
            envelope("WaitingForOTP", json!({})),
            1,
        )
        .await;
        mount(
            &server,
            "/transact/validate",
            envelope("Successful", success("OP-2")).set_delay(Duration::from_millis(2_500)),
            1,
        )
        .await;
        let gw = TestGateway::start(ProvidersConfig {
            onepipe: Some(config(&server)),
            ..Default::default()
        })
        .await;
        let p = gw.pay(onepipe_card_payment("deadline-otp")).await;
        let mut request = tonic::Request::new(validate("deadline-otp-v1", &p.payment_id, "123456"));
        // The gateway answers 250 ms before the deadline: 750 ms here, well before OnePipe.
        request.set_timeout(Duration::from_millis(1_000));
        let status = gw
            .payments()
            .validate_payment_otp(request)
            .await
            .unwrap_err();
        assert_eq!(in_flight_meta(&status), "this_request");
        // A retry of the same request answers the same until the call ends, then the outcome.
        let mut settled = None;
        for _ in 0..400 {
            match gw
                .payments()
                .validate_payment_otp(validate("deadline-otp-v1", &p.payment_id, "123456"))
                .await
            {
                Ok(answer) => {
                    settled = answer.into_inner().payment;
                    break;
                }
                Err(status) => {
                    assert_eq!(in_flight_meta(&status), "this_request");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        assert_eq!(
            state(&settled.expect("the validation ends")),
            pb::PaymentState::Succeeded
        );
        server.verify().await;
        gw.stop().await;
    }

    /// Reversal has the same window: a second reversal under another request_id while the
    /// first is at OnePipe is refused and never sent.
    #[tokio::test]
    async fn a_second_reversal_while_the_first_is_at_the_provider_is_never_sent() {
        let server = MockServer::start().await;
        mount(
            &server,
            "/transact",
            envelope("Successful", success("OP-3")),
            1,
        )
        .await;
        mount(
            &server,
            "/transact/reverse",
            envelope("Successful", json!({"reference": "OPR-3"}))
                .set_delay(Duration::from_millis(1_500)),
            1,
        )
        .await;
        let gw = TestGateway::start(ProvidersConfig {
            onepipe: Some(config(&server)),
            ..Default::default()
        })
        .await;
        let p = gw.pay(onepipe_card_payment("once-rev")).await;
        assert_eq!(state(&p), pb::PaymentState::Succeeded);
        let reverse = |request_id: &str| pb::ReversePaymentRequest {
            request_id: request_id.into(),
            payment_id: p.payment_id.clone(),
            reason: "customer changed their mind".into(),
        };
        let mut first_client = gw.payments();
        let first_request = reverse("once-rev-1");
        let first = tokio::spawn(async move { first_client.reverse_payment(first_request).await });
        received(&server, "/transact/reverse", 1).await;
        let second = gw
            .payments()
            .reverse_payment(reverse("once-rev-2"))
            .await
            .unwrap_err();
        assert_eq!(in_flight_meta(&second), "another_request");
        let first = first.await.unwrap().unwrap().into_inner().payment.unwrap();
        assert_eq!(state(&first), pb::PaymentState::Reversed);
        server.verify().await;
        gw.stop().await;
    }
}

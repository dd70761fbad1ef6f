//! The follow-up journal (OTP validation, reversal, saved-bill deletion) through the gateway
//! with a scripted provider: one provider call per `request_id` also under concurrent
//! duplicates, replays answer what the first call learned, a different request under the same
//! key is refused, the payment's state gates each operation, and an unknown OTP outcome leaves
//! the payment to reconciliation. The providers' own HTTP is covered by their `*_http.rs` tests.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use billpay_gateway::{
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
            Err(GatewayError::RequestInFlight { .. }) => {}
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
            .delete_saved_bill("del-1".into(), ProviderId::OnePipe, "bill-7".into())
            .await
            .unwrap();
    }
    let other = gateway
        .delete_saved_bill("del-1".into(), ProviderId::OnePipe, "bill-8".into())
        .await;
    assert!(matches!(
        other,
        Err(GatewayError::IdempotencyKeyReused { .. })
    ));
    assert_eq!(provider.delete_calls.load(Ordering::SeqCst), 1);
}

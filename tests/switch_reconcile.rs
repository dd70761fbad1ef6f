//! Reconciliation of payments at a provider without a status query (Switch), under paused tokio
//! time: a payment whose outcome is unknown is never sent again and ends with an operator
//! (NEEDS_ATTENTION) after its schedule; a payment the provider accepted to make later stays
//! SCHEDULED and is never reconciled. A scripted provider stands in for HTTP (real sockets and
//! paused time do not mix); the Switch HTTP path is in `switch_http.rs`.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use billpay_gateway::{
    domain::{
        payment::PaymentKind, Capability, Currency, Money, PaymentOrder, PaymentOutcome,
        PaymentRecord, PaymentSecrets, PaymentState, Provider, ProviderError, ProviderId,
    },
    gateway::{reconcile::ReconcileStats, CatalogSettings, Gateway, PaymentSettings, Registry},
    store::{memory::MemoryStore, Store},
};

/// Pays like Switch: no status query; the answer is lost, or the payment is scheduled.
struct NoQuery {
    scheduled: bool,
    pay_calls: AtomicU32,
}

#[async_trait]
impl Provider for NoQuery {
    fn id(&self) -> ProviderId {
        ProviderId::Switch
    }
    fn display_name(&self) -> &'static str {
        "no status query"
    }
    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ngn]
    }
    fn capabilities(&self) -> &'static [Capability] {
        &[Capability::CreatePayment]
    }
    fn payment_reference(&self, sequence: u64) -> Option<String> {
        Some(format!("SWI{sequence}"))
    }
    async fn pay(
        &self,
        _: &PaymentRecord,
        _: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        self.pay_calls.fetch_add(1, Ordering::SeqCst);
        if self.scheduled {
            Ok(PaymentOutcome::answered(
                PaymentState::Scheduled,
                "200",
                "Bill payment scheduled successfully",
            ))
        } else {
            Err(ProviderError::Upstream { status: 502 })
        }
    }
}

fn setup(scheduled: bool) -> (Arc<Gateway>, Arc<NoQuery>) {
    let provider = Arc::new(NoQuery {
        scheduled,
        pay_calls: AtomicU32::new(0),
    });
    let mut registry = Registry::new();
    registry.insert(ProviderId::Switch, provider.clone() as Arc<dyn Provider>);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let settings = PaymentSettings {
        reconcile_backoff_ms: vec![1_000, 2_000, 4_000],
        reconcile_poll_ms: 250,
        in_flight_expiry_ms: 30_000,
        ..PaymentSettings::default()
    };
    let gateway = Gateway::new(registry, store, settings, CatalogSettings::default(), false);
    (gateway, provider)
}

fn order() -> PaymentOrder {
    PaymentOrder::new(
        ProviderId::Switch,
        PaymentKind::Bill,
        "28",
        "7012345678",
        Money::new(Currency::Ngn, 180_000),
    )
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_ends_with_an_operator_and_is_never_sent_again() {
    let (gateway, provider) = setup(false);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let p = gateway
        .create_payment(
            "sw-lost".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(p.state, PaymentState::Pending);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let record = gateway.load_payment(&p.payment_id).await.unwrap().unwrap();
    assert_eq!(record.state, PaymentState::Pending, "still unknown");
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let record = gateway.load_payment(&p.payment_id).await.unwrap().unwrap();
    assert_eq!(record.state, PaymentState::NeedsAttention);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 1);
    assert_eq!(record.reconcile_checks, 3, "the whole schedule ran");
    assert_eq!(record.status_checks, 0, "no status query exists to make");
    assert_eq!(stats.checks.load(Ordering::Relaxed), 0);
    // The same request again replays the record; nothing was sent twice.
    let again = gateway
        .create_payment(
            "sw-lost".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.state, PaymentState::NeedsAttention);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_payment_stays_scheduled() {
    let (gateway, provider) = setup(true);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let p = gateway
        .create_payment(
            "sw-later".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(p.state, PaymentState::Scheduled);
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let record = gateway.load_payment(&p.payment_id).await.unwrap().unwrap();
    assert_eq!(record.state, PaymentState::Scheduled);
    assert_eq!(record.reconcile_checks, 0);
    assert_eq!(stats.checks.load(Ordering::Relaxed), 0);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 0);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
}

//! Reconciliation under paused tokio time: a payment whose outcome is unknown is asked about on
//! its backoff schedule until the provider answers, or handed to an operator
//! (NEEDS_ATTENTION) after the last step; a payment abandoned in flight by a dead replica is
//! picked up after the in-flight expiry. A scripted provider stands in for HTTP here because
//! real sockets and paused time do not mix; the HTTP path is covered in `redis_faults.rs`.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use billpay_gateway::{
    domain::{
        payment::{CallPhase, FollowUpKind, FollowUpMark, PaymentKind},
        Capability, Currency, Money, PaymentOrder, PaymentOutcome, PaymentRecord, PaymentSecrets,
        PaymentState, Provider, ProviderError, ProviderId,
    },
    gateway::{
        operator::{JournalFilter, Resolution},
        reconcile::ReconcileStats,
        CatalogSettings, Gateway, PaymentSettings, Registry,
    },
    store::{keys, memory::MemoryStore, GuardedWrite, Increment, Store, StoreError},
};

/// Pays with an unknown outcome, then answers status queries from a script; while `down`,
/// status queries time out (no answer at all).
struct Scripted {
    queries: Mutex<VecDeque<PaymentState>>,
    pay_calls: AtomicU32,
    query_calls: AtomicU32,
    down: AtomicBool,
    /// Status queries answer "no payment with this reference".
    knows_nothing: AtomicBool,
    /// Whether it offers status queries at all.
    queryable: bool,
}

impl Scripted {
    fn new(script: Vec<PaymentState>) -> Arc<Self> {
        Arc::new(Self {
            queries: Mutex::new(script.into()),
            pay_calls: AtomicU32::new(0),
            query_calls: AtomicU32::new(0),
            down: AtomicBool::new(false),
            knows_nothing: AtomicBool::new(false),
            queryable: true,
        })
    }
}

#[async_trait]
impl Provider for Scripted {
    fn id(&self) -> ProviderId {
        ProviderId::Interswitch
    }
    fn display_name(&self) -> &'static str {
        "scripted"
    }
    fn currencies(&self) -> &'static [Currency] {
        &[Currency::Ngn]
    }
    fn capabilities(&self) -> &'static [Capability] {
        if self.queryable {
            &[Capability::CreatePayment, Capability::QueryPayment]
        } else {
            &[Capability::CreatePayment]
        }
    }
    fn payment_reference(&self, sequence: u64) -> Option<String> {
        Some(format!("ref{sequence}"))
    }
    async fn pay(
        &self,
        _: &PaymentRecord,
        _: &PaymentSecrets,
    ) -> Result<PaymentOutcome, ProviderError> {
        self.pay_calls.fetch_add(1, Ordering::SeqCst);
        Err(ProviderError::Timeout)
    }
    async fn query_payment(&self, _: &PaymentRecord) -> Result<PaymentOutcome, ProviderError> {
        self.query_calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Timeout);
        }
        if self.knows_nothing.load(Ordering::SeqCst) {
            return Ok(PaymentOutcome::reference_not_found("no such reference"));
        }
        match self.queries.lock().unwrap().pop_front() {
            // The provider answers, but without news (as Interswitch's "not found" does).
            Some(PaymentState::Pending) | None => {
                Ok(PaymentOutcome::unknown("no transaction status yet"))
            }
            Some(state) => Ok(PaymentOutcome::answered(state, "90000", "done")),
        }
    }
}

/// The schedule the tests use: checks 1, 2 and 4 seconds apart.
fn test_settings() -> PaymentSettings {
    PaymentSettings {
        reconcile_backoff_ms: vec![1_000, 2_000, 4_000],
        reconcile_poll_ms: 250,
        in_flight_expiry_ms: 30_000,
        ..PaymentSettings::default()
    }
}

fn setup(script: Vec<PaymentState>) -> (Arc<Gateway>, Arc<Scripted>, Arc<dyn Store>) {
    setup_with(script, test_settings())
}

fn setup_with(
    script: Vec<PaymentState>,
    settings: PaymentSettings,
) -> (Arc<Gateway>, Arc<Scripted>, Arc<dyn Store>) {
    let provider = Scripted::new(script);
    let mut registry = Registry::new();
    registry.insert(
        ProviderId::Interswitch,
        provider.clone() as Arc<dyn Provider>,
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gateway = Gateway::new(
        registry,
        store.clone(),
        settings,
        CatalogSettings::default(),
        false,
    );
    (gateway, provider, store)
}

fn order() -> PaymentOrder {
    PaymentOrder::new(
        ProviderId::Interswitch,
        PaymentKind::Bill,
        "90101",
        "0000000000",
        Money::new(Currency::Ngn, 10_000),
    )
}

/// Leaves what a replica that died at `call` leaves behind: the record, due for reconciliation
/// 30 s (the in-flight expiry) after it was written. Returns the payment id.
async fn strand(store: &dyn Store, request_id: &str, call: impl Fn(i64) -> CallPhase) -> String {
    strand_under(store, request_id, call, String::new()).await
}

/// [`strand`], with the store identity the record was claimed under.
async fn strand_under(
    store: &dyn Store,
    request_id: &str,
    call: impl Fn(i64) -> CallPhase,
    claim_identity: String,
) -> String {
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let record = PaymentRecord {
        call: call(now),
        claim_identity,
        ..PaymentRecord::claimed(request_id.into(), order(), format!("ref-{request_id}"), now)
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
        .schedule(&keys::reconcile_schedule(), &payment_id, now + 30_000)
        .await
        .unwrap();
    payment_id
}

async fn state_of(gateway: &Gateway, payment_id: &str) -> PaymentRecord {
    gateway.load_payment(payment_id).await.unwrap().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_pending_payment_is_resolved_on_its_schedule() {
    let (gateway, provider, _) = setup(vec![PaymentState::Pending, PaymentState::Succeeded]);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));

    let p = gateway
        .create_payment("r-1".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    assert_eq!(p.state, PaymentState::Pending);
    // First check after 1 s: still unknown. Second after 2 s more: succeeded.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::Pending
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let done = state_of(&gateway, &p.payment_id).await;
    assert_eq!(done.state, PaymentState::Succeeded);
    assert_eq!(done.status_checks, 2);
    // Final: never asked again.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 2);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_payment_that_never_resolves_needs_an_operator() {
    let (gateway, provider, _) = setup(vec![]);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let p = gateway
        .create_payment("r-2".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    // 1 + 2 + 4 seconds of checks, then the operator state; never FAILED.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::Pending
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let record = state_of(&gateway, &p.payment_id).await;
    assert_eq!(record.state, PaymentState::NeedsAttention);
    assert_eq!(record.status_checks, 3);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 1);
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert_eq!(
        provider.query_calls.load(Ordering::SeqCst),
        3,
        "no more checks"
    );
}

#[tokio::test(start_paused = true)]
async fn a_payment_abandoned_in_flight_is_picked_up_after_expiry() {
    let (gateway, provider, store) = setup(vec![PaymentState::Succeeded]);
    // What a replica that died mid-call leaves behind: the record, in flight, on the schedule.
    let payment_id = strand(store.as_ref(), "r-3", |since_ms| CallPhase::InFlight {
        since_ms,
    })
    .await;
    // A retry of the same request is told to wait while the record is in flight.
    let err = gateway
        .create_payment("r-3".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in flight"), "{err}");

    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats));
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(
        provider.query_calls.load(Ordering::SeqCst),
        0,
        "not before expiry"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resolved = state_of(&gateway, &payment_id).await;
    assert_eq!(resolved.state, PaymentState::Succeeded);
    assert_eq!(resolved.call, CallPhase::Returned);
    // Now the retry replays the outcome, and the provider was never paid twice.
    let replay = gateway
        .create_payment("r-3".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    assert_eq!(replay.state, PaymentState::Succeeded);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn polling_get_payment_neither_hastens_nor_postpones_the_schedule() {
    let (gateway, provider, _) = setup(vec![]);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let p = gateway
        .create_payment("r-4".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    // A client polls every 500 ms. The schedule (1 + 2 + 4 s) still runs its course: the
    // payment reaches the operator after ~7 s, not sooner (20 polls are not 3 steps), and
    // not never (each poll does not push the next step back).
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        gateway.get_payment(&p.payment_id, None).await.unwrap();
    }
    let at_8s = state_of(&gateway, &p.payment_id).await;
    assert_eq!(at_8s.state, PaymentState::NeedsAttention);
    assert_eq!(at_8s.reconcile_checks, 3);
    assert!(at_8s.status_checks > 3, "polls were recorded too");
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 1);
    let polls_before = provider.query_calls.load(Ordering::SeqCst);
    // Polling an operator payment still asks (an answer could settle it) but never flips it.
    gateway.get_payment(&p.payment_id, None).await.unwrap();
    assert_eq!(
        provider.query_calls.load(Ordering::SeqCst),
        polls_before + 1
    );
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::NeedsAttention
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        stats.needs_attention.load(Ordering::Relaxed),
        1,
        "counted once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_payment_claimed_but_never_sent_fails_once_the_provider_does_not_know_it() {
    let (gateway, provider, store) = setup(vec![]);
    provider.knows_nothing.store(true, Ordering::SeqCst);
    // What a replica that died between writing the record and calling the provider leaves.
    let payment_id = strand(store.as_ref(), "r-5", |since_ms| CallPhase::Claimed {
        since_ms,
    })
    .await;
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats));
    tokio::time::sleep(Duration::from_secs(31)).await;
    let settled = state_of(&gateway, &payment_id).await;
    assert_eq!(settled.state, PaymentState::Failed);
    assert!(
        settled.provider_message.contains("never sent"),
        "{}",
        settled.provider_message
    );
    assert!(
        settled
            .provider_message
            .contains("does not know its reference"),
        "{}",
        settled.provider_message
    );
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        provider.query_calls.load(Ordering::SeqCst),
        1,
        "asked first"
    );
}

#[tokio::test(start_paused = true)]
async fn a_claimed_payment_the_provider_knows_is_reconciled_not_failed() {
    // The store says claimed, but the provider has the payment: the in-flight mark was lost.
    let (gateway, provider, store) = setup(vec![PaymentState::Succeeded]);
    let payment_id = strand(store.as_ref(), "r-7", |since_ms| CallPhase::Claimed {
        since_ms,
    })
    .await;
    tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    let settled = state_of(&gateway, &payment_id).await;
    assert_eq!(settled.state, PaymentState::Succeeded);
    assert_eq!(settled.call, CallPhase::Returned);
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn without_status_queries_a_claim_fails_only_if_the_store_kept_its_identity() {
    let provider = Arc::new(Scripted {
        queryable: false,
        ..Arc::try_unwrap(Scripted::new(vec![])).ok().unwrap()
    });
    let mut registry = Registry::new();
    registry.insert(
        ProviderId::Interswitch,
        provider.clone() as Arc<dyn Provider>,
    );
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let gateway = Gateway::new(
        registry,
        store.clone(),
        test_settings(),
        CatalogSettings::default(),
        false,
    );
    let identity = String::from_utf8(
        billpay_gateway::store::identity::read(store.as_ref())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let kept = strand_under(
        store.as_ref(),
        "r-8",
        |since_ms| CallPhase::Claimed { since_ms },
        identity,
    )
    .await;
    // Claimed under an identity the store no longer has: it may have lost the in-flight mark.
    let changed = strand_under(
        store.as_ref(),
        "r-9",
        |since_ms| CallPhase::Claimed { since_ms },
        "store-before-recovery".into(),
    )
    .await;
    tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    let failed = state_of(&gateway, &kept).await;
    assert_eq!(failed.state, PaymentState::Failed);
    assert!(
        failed.provider_message.contains("kept its identity"),
        "{}",
        failed.provider_message
    );
    let unsure = state_of(&gateway, &changed).await;
    assert_eq!(unsure.state, PaymentState::NeedsAttention);
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_lost_in_flight_write_ends_succeeded_never_failed() {
    let provider = Scripted::new(vec![PaymentState::Succeeded]);
    let mut registry = Registry::new();
    registry.insert(
        ProviderId::Interswitch,
        provider.clone() as Arc<dyn Provider>,
    );
    // Every swap of the payment record (the in-flight mark, then the outcome) is acknowledged
    // and lost, as on a failover to a replica that never got them.
    let store = Arc::new(LostClaimReply {
        inner: MemoryStore::default(),
        fail_next_claim: AtomicBool::new(false),
        lose_swaps: AtomicBool::new(true),
    });
    let gateway = Gateway::new(
        registry,
        store.clone(),
        test_settings(),
        CatalogSettings::default(),
        false,
    );
    let p = gateway
        .create_payment(
            "r-10".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        provider.pay_calls.load(Ordering::SeqCst),
        1,
        "the call went out"
    );
    store.lose_swaps.store(false, Ordering::SeqCst);
    let stored = state_of(&gateway, &p.payment_id).await;
    assert!(
        matches!(stored.call, CallPhase::Claimed { .. }),
        "{:?}",
        stored.call
    );

    tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    let settled = state_of(&gateway, &p.payment_id).await;
    assert_eq!(settled.state, PaymentState::Succeeded);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 1);
}

/// A store whose next claim (guarded `SET NX`) is applied but answers an error, as when Redis times out
/// after writing.
struct LostClaimReply {
    inner: MemoryStore,
    fail_next_claim: AtomicBool,
    /// Swaps answer "done" without being applied.
    lose_swaps: AtomicBool,
}

#[async_trait]
impl Store for LostClaimReply {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.inner.compare_and_swap(key, old, new).await
    }
    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        old: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        if self.lose_swaps.load(Ordering::SeqCst) {
            return Ok(true);
        }
        self.inner
            .compare_and_swap_with_ttl(key, old, new, ttl)
            .await
    }
    async fn set_if_absent_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<GuardedWrite, StoreError> {
        let written = self
            .inner
            .set_if_absent_guarded(guard_key, guard_value, key, value, ttl)
            .await?;
        if self.fail_next_claim.swap(false, Ordering::SeqCst) {
            return Err(StoreError("response timed out".into()));
        }
        Ok(written)
    }
    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        self.inner.raise_counter(key, floor).await
    }
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.keys_with_prefix(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        self.inner
            .increment_guarded(guard_key, guard_value, key, floor, ceiling)
            .await
    }
    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        self.inner.schedule(set, member, due_ms).await
    }
    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner.schedule_if_absent(set, member, due_ms).await
    }
    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.due(set, now_ms, limit).await
    }
    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.range(set, min_ms, max_ms, offset, limit).await
    }
    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner
            .range_newest_first(set, max_ms, min_ms, limit)
            .await
    }
    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.inner
            .claim_due(set, member, now_ms, lease_until_ms)
            .await
    }
    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.inner.unschedule(set, member).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_claim_whose_answer_was_lost_still_pays_once() {
    let provider = Scripted::new(vec![]);
    let mut registry = Registry::new();
    registry.insert(
        ProviderId::Interswitch,
        provider.clone() as Arc<dyn Provider>,
    );
    let store = Arc::new(LostClaimReply {
        inner: MemoryStore::default(),
        fail_next_claim: AtomicBool::new(true),
        lose_swaps: AtomicBool::new(false),
    });
    let gateway = Gateway::new(
        registry,
        store,
        PaymentSettings::default(),
        CatalogSettings::default(),
        false,
    );
    let p = gateway
        .create_payment("r-6".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    assert_eq!(p.call, CallPhase::Returned);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
    let again = gateway
        .create_payment("r-6".into(), order(), PaymentSecrets::default(), None, None)
        .await
        .unwrap();
    assert_eq!(again.payment_id, p.payment_id);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1);
}

/// The payment ids on the reconciliation schedule, due or not.
async fn scheduled(store: &dyn Store) -> Vec<String> {
    store
        .due(&keys::reconcile_schedule(), i64::MAX, 100)
        .await
        .unwrap()
}

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(24 * 3_600);

#[tokio::test(start_paused = true)]
async fn a_three_hour_provider_outage_leaves_payments_pending_and_scheduled() {
    let (gateway, provider, store) = setup(vec![PaymentState::Succeeded, PaymentState::Succeeded]);
    provider.down.store(true, Ordering::SeqCst);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let a = gateway
        .create_payment(
            "out-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    let b = gateway
        .create_payment(
            "out-2".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();

    // Three hours without one answer: far more checks than the schedule has steps, none of
    // them used up a step.
    tokio::time::sleep(3 * HOUR).await;
    for p in [&a, &b] {
        let record = state_of(&gateway, &p.payment_id).await;
        assert_eq!(record.state, PaymentState::Pending);
        assert_eq!(record.reconcile_checks, 0, "no answered check");
        assert!(record.unanswered_checks > 3, "{}", record.unanswered_checks);
    }
    assert!(provider.query_calls.load(Ordering::SeqCst) > 6);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 0);
    let mut on_schedule = scheduled(store.as_ref()).await;
    on_schedule.sort();
    let mut ids = vec![a.payment_id.clone(), b.payment_id.clone()];
    ids.sort();
    assert_eq!(on_schedule, ids, "both still scheduled");

    // The provider answers again: both settle within the longest step (4 s).
    provider.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for p in [&a, &b] {
        let record = state_of(&gateway, &p.payment_id).await;
        assert_eq!(record.state, PaymentState::Succeeded);
        assert_eq!(record.reconcile_checks, 1);
    }
    assert!(scheduled(store.as_ref()).await.is_empty());
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_payment_unknown_past_the_maximum_age_needs_an_operator() {
    let settings = PaymentSettings {
        max_pending_age_ms: 60_000,
        ..test_settings()
    };
    let (gateway, provider, store) = setup_with(vec![], settings);
    provider.down.store(true, Ordering::SeqCst);
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    let p = gateway
        .create_payment(
            "old-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(55)).await;
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::Pending
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let record = state_of(&gateway, &p.payment_id).await;
    assert_eq!(record.state, PaymentState::NeedsAttention);
    assert_eq!(record.reconcile_checks, 0, "steps were left");
    assert!(
        record.provider_message.contains("hours after"),
        "{}",
        record.provider_message
    );
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 1);
    assert!(scheduled(store.as_ref()).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_payment_needing_attention_outlives_the_record_ttl_and_never_pays_again() {
    let (gateway, provider, store) = setup(vec![]);
    let reconciler = tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    let p = gateway
        .create_payment(
            "kept-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::NeedsAttention
    );
    // Nothing is due any more; stop polling so 31 days pass quickly.
    reconciler.abort();
    assert!(scheduled(store.as_ref()).await.is_empty());

    tokio::time::sleep(31 * DAY).await;
    let found = gateway.get_payment(&p.payment_id, None).await.unwrap();
    assert_eq!(found.state, PaymentState::NeedsAttention);
    let replay = gateway
        .create_payment(
            "kept-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(replay.payment_id, p.payment_id);
    assert_eq!(replay.state, PaymentState::NeedsAttention);
    assert_eq!(provider.pay_calls.load(Ordering::SeqCst), 1, "paid once");

    // An operator lists it and resolves it with evidence; the audit entry is on the payment.
    let filter = JournalFilter {
        state: Some(PaymentState::NeedsAttention),
        ..JournalFilter::default()
    };
    let (listed, _) = gateway.list_journal(&filter, 0, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].payment_id, p.payment_id);
    let resolution = Resolution {
        request_id: "resolve-kept-1".into(),
        state: PaymentState::Failed,
        provider_transaction_id: String::new(),
        provider_code: "70120".into(),
        note: "provider report: declined".into(),
        operator: "ops".into(),
        caller: "ops-key".into(),
    };
    let resolved = gateway
        .resolve_payment(&p.payment_id, resolution.clone())
        .await
        .unwrap();
    assert_eq!(resolved.state, PaymentState::Failed);
    assert_eq!(resolved.audit.len(), 1);
    assert_eq!(resolved.audit[0].from_state, PaymentState::NeedsAttention);
    // Final now: another resolution is refused.
    let again = gateway
        .resolve_payment(
            &p.payment_id,
            Resolution {
                request_id: "resolve-kept-2".into(),
                state: PaymentState::Succeeded,
                ..resolution
            },
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("resolve"), "{again}");
}

#[tokio::test(start_paused = true)]
async fn a_final_payment_expires_record_ttl_after_it_became_final() {
    // Succeeds at its second check, 3 s after it was made.
    let (gateway, _, _) = setup(vec![PaymentState::Pending, PaymentState::Succeeded]);
    let reconciler = tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    let p = gateway
        .create_payment(
            "ttl-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let settled = state_of(&gateway, &p.payment_id).await;
    assert_eq!(settled.state, PaymentState::Succeeded);
    reconciler.abort();
    // Measured from the success (about 3 s after creation), not from the claim.
    let ttl = Duration::from_millis(PaymentSettings::default().record_ttl_ms);
    tokio::time::sleep(ttl - Duration::from_secs(2)).await;
    assert!(gateway.load_payment(&p.payment_id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(gateway.load_payment(&p.payment_id).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_recheck_that_contradicts_a_final_payment_changes_nothing_and_is_counted() {
    // Succeeded at the first scheduled check; the operator's recheck hears "failed".
    let (gateway, provider, _) = setup(vec![PaymentState::Succeeded, PaymentState::Failed]);
    let reconciler = tokio::spawn(
        gateway
            .clone()
            .run_reconciler(Arc::new(ReconcileStats::default())),
    );
    let p = gateway
        .create_payment(
            "contra-1".into(),
            order(),
            PaymentSecrets::default(),
            None,
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        state_of(&gateway, &p.payment_id).await.state,
        PaymentState::Succeeded
    );
    reconciler.abort();
    let counter = billpay_gateway::metrics::global()
        .contradictions
        .get_or_create(&billpay_gateway::metrics::ProviderName {
            provider: "interswitch".into(),
        })
        .clone();
    let before = counter.get();
    let rechecked = gateway.recheck_payment(&p.payment_id).await.unwrap();
    assert_eq!(rechecked.state, PaymentState::Succeeded, "final state kept");
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 2);
    assert_eq!(counter.get(), before + 1);
}

/// Writes `record` and puts it on the schedule, due a minute ago.
async fn put_due(store: &dyn Store, record: &PaymentRecord) {
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    store
        .set(
            &keys::payment(&record.payment_id),
            &serde_json::to_vec(record).unwrap(),
            None,
        )
        .await
        .unwrap();
    store
        .schedule(
            &keys::reconcile_schedule(),
            &record.payment_id,
            now - 60_000,
        )
        .await
        .unwrap();
}

/// A payment whose OTP validation (or reversal) is at the provider is neither asked about nor
/// handed to an operator while the follow-up's mark holds; once it expired, it is.
#[tokio::test(start_paused = true)]
async fn a_payment_with_a_follow_up_at_the_provider_is_left_alone() {
    let (gateway, provider, store) = setup(vec![]);
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let record = PaymentRecord {
        state: PaymentState::OtpRequired,
        call: CallPhase::Returned,
        // Out of steps: the next pass would hand it to an operator.
        reconcile_checks: 3,
        follow_up: Some(FollowUpMark {
            kind: FollowUpKind::OtpValidation,
            request_id: "otp-at-provider".into(),
            expires_at_ms: now + 20_000,
        }),
        ..PaymentRecord::claimed("fu-1".into(), order(), "ref-fu-1".into(), now)
    };
    put_due(store.as_ref(), &record).await;
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    let left = state_of(&gateway, &record.payment_id).await;
    assert_eq!(left.state, PaymentState::OtpRequired);
    assert_eq!(provider.query_calls.load(Ordering::SeqCst), 0);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 0);
    // The mark expired (its process stopped): reconciled as any payment.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = state_of(&gateway, &record.payment_id).await;
    assert_eq!(after.state, PaymentState::NeedsAttention);
}

/// An InterIntel-style scheduled send: SCHEDULED for a time an hour away. Its checks before
/// that time find nothing new; it is not handed to an operator for being out of steps or older
/// than the maximum age, and its schedule starts again at the scheduled time.
#[tokio::test(start_paused = true)]
async fn a_scheduled_payment_is_not_flagged_before_its_scheduled_time() {
    let settings = PaymentSettings {
        max_pending_age_ms: 60_000,
        ..test_settings()
    };
    let (gateway, provider, store) = setup_with(vec![], settings);
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let mut record = PaymentRecord {
        state: PaymentState::Scheduled,
        call: CallPhase::Returned,
        ..PaymentRecord::claimed("sched-1".into(), order(), "ref-sched-1".into(), now)
    };
    record.extras.scheduled_at_ms = Some(now + 3_600_000);
    put_due(store.as_ref(), &record).await;
    let stats = Arc::new(ReconcileStats::default());
    tokio::spawn(gateway.clone().run_reconciler(stats.clone()));
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    let waiting = state_of(&gateway, &record.payment_id).await;
    assert_eq!(waiting.state, PaymentState::Scheduled);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 0);
    let checks_before = provider.query_calls.load(Ordering::SeqCst);
    assert!(checks_before >= 3, "{checks_before}");
    // Made at its time: the next checks find it.
    provider
        .queries
        .lock()
        .unwrap()
        .push_back(PaymentState::Succeeded);
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    let made = state_of(&gateway, &record.payment_id).await;
    assert_eq!(made.state, PaymentState::Succeeded);
    assert_eq!(stats.needs_attention.load(Ordering::Relaxed), 0);
}

/// The backlog the reconcile alert watches: a pass first counts the checks more than a minute
/// late (`billpay_reconcile_overdue`), and a pass that works them off brings it back to 0.
#[tokio::test(start_paused = true)]
async fn a_pass_counts_the_checks_more_than_a_minute_late() {
    let (gateway, _, store) = setup(vec![]);
    let now = billpay_gateway::gateway::Clock::default().now_ms();
    let set = keys::reconcile_schedule();
    for (member, due) in [
        ("late-1", now - 120_000),
        ("late-2", now - 61_000),
        ("late-3", now - 3_600_000),
        ("just-due", now - 10_000),
        ("not-yet", now + 10_000),
    ] {
        store.schedule(&set, member, due).await.unwrap();
    }
    let stats = ReconcileStats::default();
    // Entries without a payment record are dropped from the schedule by the pass.
    assert_eq!(gateway.reconcile_due(&stats).await.unwrap(), 4);
    assert_eq!(stats.overdue.load(Ordering::Relaxed), 3);
    gateway.reconcile_due(&stats).await.unwrap();
    assert_eq!(stats.overdue.load(Ordering::Relaxed), 0);
}

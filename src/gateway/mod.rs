//! Dispatch between the API and the providers: the provider registry, capability checks, the
//! catalog cache, and the payment journal with idempotency and reconciliation. Everything shared
//! between replicas goes through the [`Store`].

pub mod catalog;
pub mod clock;
pub mod follow_up;
pub mod operator;
pub mod payments;
pub mod reads;
pub mod reconcile;
pub mod registry;

use std::{sync::Arc, time::Duration};

use serde::Deserialize;

use crate::domain::{Capability, Provider, ProviderId};
use crate::error::GatewayError;
use crate::store::Store;
pub use clock::Clock;
pub use registry::Registry;

/// `[payments]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentSettings {
    /// How long a final payment record (and so its idempotency key) is kept after it became
    /// final, milliseconds. 30 days. Records that are not final (PENDING, NEEDS_ATTENTION, ...)
    /// never expire: forgetting one would let its `request_id` pay again.
    pub record_ttl_ms: u64,
    /// Answer a mutating RPC this long before the caller's deadline, milliseconds; the provider
    /// call carries on detached and records its outcome.
    pub deadline_margin_ms: u64,
    /// Delay a retry of an in-flight request should wait, milliseconds (RetryInfo).
    pub in_flight_retry_ms: u64,
    /// Status-check schedule of a PENDING payment, milliseconds after the previous check. Only
    /// checks the provider answered count as steps; a check that got no answer (timeout,
    /// transport error, 5xx, open circuit) is retried without using up a step. After the last
    /// answered step the payment becomes NEEDS_ATTENTION.
    pub reconcile_backoff_ms: Vec<u64>,
    /// A payment whose outcome is still unknown this long after it was created becomes
    /// NEEDS_ATTENTION even with schedule steps left (a provider down for days), milliseconds.
    /// 72 hours.
    pub max_pending_age_ms: u64,
    /// How often the background reconciler looks for due payments, milliseconds.
    pub reconcile_poll_ms: u64,
    /// A record still in flight this long after its call started is treated as abandoned by a
    /// crashed replica and handed to reconciliation, milliseconds. Must exceed every provider
    /// timeout.
    pub in_flight_expiry_ms: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            record_ttl_ms: 30 * 24 * 3600 * 1000,
            deadline_margin_ms: 250,
            in_flight_retry_ms: 1000,
            reconcile_backoff_ms: vec![
                5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
            ],
            max_pending_age_ms: 72 * 3600 * 1000,
            reconcile_poll_ms: 1_000,
            in_flight_expiry_ms: 60_000,
        }
    }
}

impl PaymentSettings {
    /// Refuses settings that would forget a payment while it can still change: a final
    /// record's TTL must outlast the whole reconciliation schedule and the maximum pending age,
    /// so a `request_id` retried for as long as the payment was being resolved still replays.
    pub fn validate(&self) -> Result<(), String> {
        let schedule_ms: u64 = self.reconcile_backoff_ms.iter().sum();
        if self.record_ttl_ms < schedule_ms {
            return Err(format!(
                "payments.record_ttl_ms ({}) is shorter than the reconciliation schedule \
                 (payments.reconcile_backoff_ms sums to {schedule_ms})",
                self.record_ttl_ms
            ));
        }
        if self.record_ttl_ms < self.max_pending_age_ms {
            return Err(format!(
                "payments.record_ttl_ms ({}) is shorter than payments.max_pending_age_ms ({})",
                self.record_ttl_ms, self.max_pending_age_ms
            ));
        }
        if self.reconcile_backoff_ms.is_empty() {
            return Err("payments.reconcile_backoff_ms needs at least one step".into());
        }
        Ok(())
    }
}

/// `[catalog]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// A cached list younger than this is served without asking the provider, milliseconds.
    pub fresh_ms: u64,
    /// A cached list is kept this long to serve while refreshing or during an outage,
    /// milliseconds.
    pub keep_ms: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            fresh_ms: 5 * 60 * 1000,
            keep_ms: 24 * 3600 * 1000,
        }
    }
}

/// The gateway: shared by every handler and background task.
pub struct Gateway {
    providers: Registry,
    store: Arc<dyn Store>,
    payments: PaymentSettings,
    catalog: CatalogSettings,
    sandbox: bool,
    clock: Clock,
    /// Detached payment calls, waited for on shutdown.
    tasks: tokio_util::task::TaskTracker,
    /// The store identity last seen: every claim is guarded by it.
    identity: std::sync::Mutex<Option<Vec<u8>>>,
    /// True while the store is known to have lost data (reported once per loss).
    data_lost: std::sync::atomic::AtomicBool,
    /// The store's durability verdict and when it was reached; `None` until checked, and again
    /// after the store was unreachable (a reconnect may reach another server).
    posture: std::sync::Mutex<Option<(crate::store::Posture, tokio::time::Instant)>>,
    /// How much the gateway asks of the store's durability.
    store_policy: std::sync::RwLock<StorePolicy>,
    /// Whether the operator service answers (`[operator] enabled`).
    operator_enabled: std::sync::atomic::AtomicBool,
}

/// What the gateway asks of the store's durability (`[store]` settings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorePolicy {
    /// Refuse a store without persistence instead of warning.
    pub require_persistence: bool,
    /// Replicas that must acknowledge claim and in-flight writes; 0: no waiting.
    pub min_replica_acks: u32,
    /// How long to wait for them.
    pub replica_ack_timeout: Duration,
}

/// How often the store's durability settings are read again while it stays reachable.
const POSTURE_RECHECK_EVERY: Duration = Duration::from_secs(60);

/// What the store health check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    /// Reachable, with its identity.
    Up,
    /// Not reachable.
    Unreachable,
    /// Reachable, but its identity is missing: it lost data (or was never initialised).
    DataLost,
    /// Reachable, but its durability settings are unfit for payments (an evicting policy...).
    Refused,
}

impl Gateway {
    /// Builds a gateway over configured providers and a store.
    pub fn new(
        providers: Registry,
        store: Arc<dyn Store>,
        payments: PaymentSettings,
        catalog: CatalogSettings,
        sandbox: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            providers,
            store,
            payments,
            catalog,
            sandbox,
            clock: Clock::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            identity: std::sync::Mutex::new(None),
            data_lost: std::sync::atomic::AtomicBool::new(false),
            posture: std::sync::Mutex::new(None),
            store_policy: std::sync::RwLock::new(StorePolicy::default()),
            operator_enabled: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets what the gateway asks of the store's durability.
    pub fn set_store_policy(&self, policy: StorePolicy) {
        *self.store_policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn policy(&self) -> StorePolicy {
        *self.store_policy.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for `min_replica_acks` replicas to acknowledge the writes made so far; a store
    /// error when fewer do in time (nothing may be sent on a write a failover could lose).
    pub(crate) async fn replicate(&self) -> Result<(), GatewayError> {
        let policy = self.policy();
        if policy.min_replica_acks == 0 {
            return Ok(());
        }
        let acks = self
            .store
            .wait_for_replicas(policy.min_replica_acks, policy.replica_ack_timeout)
            .await?;
        if acks < policy.min_replica_acks {
            tracing::error!(
                acks,
                wanted = policy.min_replica_acks,
                "store write not acknowledged by enough replicas: not sent"
            );
            return Err(GatewayError::Store(crate::store::StoreError(format!(
                "write acknowledged by {acks} of {} replicas in time",
                policy.min_replica_acks
            ))));
        }
        Ok(())
    }

    /// Checks the store answers, still has its identity and is fit for payments; reports a
    /// data loss once.
    pub async fn store_health(&self) -> StoreHealth {
        match self.current_identity().await {
            Ok(_) => {}
            Err(GatewayError::StoreDataLost) => return StoreHealth::DataLost,
            Err(_) => {
                // A reconnect may reach another server: read its settings again.
                *self.posture.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return StoreHealth::Unreachable;
            }
        }
        match self.check_posture().await {
            Ok(()) => StoreHealth::Up,
            Err(GatewayError::StoreUnfit(_)) => StoreHealth::Refused,
            Err(_) => StoreHealth::Unreachable,
        }
    }

    /// Fails with [`GatewayError::StoreUnfit`] when the store's durability settings are unfit
    /// for payments (read at the first use, after a reconnect and every minute; logged when
    /// read: an error when refused, warnings when merely weak).
    pub(crate) async fn check_posture(&self) -> Result<(), GatewayError> {
        use crate::store::Posture;
        let cached = self
            .posture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(_, at)| at.elapsed() < POSTURE_RECHECK_EVERY)
            .map(|(posture, _)| posture);
        let posture = match cached {
            Some(posture) => posture,
            None => {
                let require = self.policy().require_persistence;
                let posture = match self.store.durability().await? {
                    Some(durability) => durability.posture(require),
                    None => Posture::Fit(Vec::new()),
                };
                let mut slot = self.posture.lock().unwrap_or_else(|p| p.into_inner());
                let changed = slot.as_ref().map(|(p, _)| p) != Some(&posture);
                if changed {
                    match &posture {
                        Posture::Refused(why) => tracing::error!(
                            why,
                            "store refused for payments: payments NOT_SERVING until it is fixed"
                        ),
                        Posture::Fit(warnings) => {
                            for why in warnings {
                                tracing::warn!(why, "store durability is weak");
                            }
                        }
                    }
                }
                *slot = Some((posture.clone(), tokio::time::Instant::now()));
                posture
            }
        };
        match posture {
            Posture::Fit(_) => Ok(()),
            Posture::Refused(why) => Err(GatewayError::StoreUnfit(why)),
        }
    }

    /// Reads the store identity. A missing one is a data loss: reported (error log, metric)
    /// once, and answered [`GatewayError::StoreDataLost`]. A new identity (written by `store
    /// recover`) is adopted.
    pub(crate) async fn current_identity(&self) -> Result<Vec<u8>, GatewayError> {
        use std::sync::atomic::Ordering;
        match crate::store::identity::read(self.store.as_ref()).await? {
            Some(identity) => {
                let mut known = self.identity.lock().unwrap_or_else(|p| p.into_inner());
                if known.as_ref().is_some_and(|k| *k != identity) {
                    tracing::warn!("the store has a new identity (store recover ran): adopted");
                }
                *known = Some(identity.clone());
                if self.data_lost.swap(false, Ordering::SeqCst) {
                    tracing::warn!("store identity present again: payments resume");
                }
                Ok(identity)
            }
            None => {
                if !self.data_lost.swap(true, Ordering::SeqCst) {
                    crate::metrics::global().store_data_lost.inc();
                    tracing::error!(
                        "the store has no identity: it lost data (restart without persistence, \
                         failover, eviction) or was never initialised. Payments and other \
                         mutating RPCs are refused (STORE_DATA_LOST) until an operator runs \
                         `billpay-gateway store recover` (or `store init` for a new store)"
                    );
                }
                Err(GatewayError::StoreDataLost)
            }
        }
    }

    /// The store identity this process last saw, without asking the store.
    pub(crate) fn known_identity(&self) -> Option<Vec<u8>> {
        self.identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The claim of a payment or follow-up record: writes `value` at `key` if absent, guarded
    /// atomically by the store identity. `true` when this call wrote it, `false` when the key
    /// was taken; [`GatewayError::StoreDataLost`] when the store lost its identity.
    pub(crate) async fn guarded_claim(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, GatewayError> {
        use crate::store::GuardedWrite;
        self.check_posture().await?;
        let mut identity = match self.known_identity() {
            Some(identity) => identity,
            None => self.current_identity().await?,
        };
        // Twice at most: the second time with an identity `store recover` wrote meanwhile.
        for _ in 0..2 {
            let written = self
                .store
                .set_if_absent_guarded(&crate::store::keys::identity(), &identity, key, value, ttl)
                .await;
            match written {
                Ok(GuardedWrite::Written) => {
                    self.replicate().await?;
                    return Ok(true);
                }
                Ok(GuardedWrite::Exists) => return Ok(false),
                Ok(GuardedWrite::GuardFailed) => identity = self.current_identity().await?,
                // The write may have landed with its answer lost: look before giving up.
                Err(e) => {
                    return match self.store.get(key).await {
                        Ok(Some(stored)) if stored == value => Ok(true),
                        Ok(Some(_)) => Ok(false),
                        _ => Err(e.into()),
                    }
                }
            }
        }
        Err(GatewayError::StoreDataLost)
    }

    /// The configured providers, in contract order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// True when providers point at simulators.
    pub fn sandbox(&self) -> bool {
        self.sandbox
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Waits up to `limit` for detached payment calls to finish and record their outcomes, so a
    /// shutdown does not cut a call the journal says is in flight (reconciliation would resolve
    /// it, but later). New payments must have stopped arriving.
    pub async fn finish_payments(&self, limit: Duration) {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.tasks.len(),
                "payment calls still running at shutdown; reconciliation will resolve them"
            );
        }
    }

    /// The provider `id` if it is configured and supports `capability`.
    pub fn provider(
        &self,
        id: ProviderId,
        capability: Capability,
    ) -> Result<&Arc<dyn Provider>, GatewayError> {
        // The RPC's caller must be allowed this provider (background work always is).
        crate::auth::check_provider(id)?;
        let provider = self
            .providers
            .get(&id)
            .ok_or(GatewayError::ProviderNotConfigured(id))?;
        if provider.capabilities().contains(&capability) {
            Ok(provider)
        } else {
            Err(GatewayError::CapabilityNotSupported {
                provider: id,
                capability,
            })
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_ttl_shorter_than_the_schedule_or_the_maximum_age_is_refused() {
        assert!(PaymentSettings::default().validate().is_ok());
        let short_of_schedule = PaymentSettings {
            record_ttl_ms: 1_000,
            reconcile_backoff_ms: vec![600, 600],
            max_pending_age_ms: 500,
            ..PaymentSettings::default()
        };
        let e = short_of_schedule.validate().unwrap_err();
        assert!(e.contains("reconciliation schedule"), "{e}");
        let short_of_age = PaymentSettings {
            record_ttl_ms: 24 * 3600 * 1000,
            ..PaymentSettings::default()
        };
        let e = short_of_age.validate().unwrap_err();
        assert!(e.contains("max_pending_age_ms"), "{e}");
    }
}

//! Dispatch between the API and the providers: the provider registry, capability checks, the
//! catalog cache, and the payment journal with idempotency and reconciliation. Everything shared
//! between replicas goes through the [`Store`].

pub mod catalog;
pub mod clock;
pub mod directory;
pub mod events;
pub mod flight;
pub mod follow_up;
pub mod journal;
pub mod lease;
pub mod operator;
pub mod own_payments;
pub mod ownership;
pub mod payments;
pub mod reads;
pub mod reconcile;
pub mod registry;
pub mod routing;
pub mod store_guard;

use std::{sync::Arc, time::Duration};

use serde::Deserialize;

use crate::domain::{Capability, Provider, ProviderId};
use crate::error::GatewayError;
use crate::store::Store;
pub use clock::Clock;
pub use registry::Registry;
pub use store_guard::{StoreHealth, StorePolicy};

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
    /// crashed replica and handed to reconciliation, milliseconds; a follow-up's mark (OTP
    /// validation, reversal) expires after as long. 180 s. The gateway refuses to start when it
    /// is shorter than some configured provider's longest payment call (token lock, token
    /// request, call, retry after a 401; see `providers::call_time`).
    pub in_flight_expiry_ms: u64,
    /// How long payment events are kept (WatchPaymentEvents resumes within it), milliseconds.
    /// 7 days. Trimmed every minute.
    pub events_retention_ms: u64,
    /// Changes one WatchPayment stream may have waiting to be sent, messages; a watcher that
    /// falls further behind is ended (RESOURCE_EXHAUSTED, WATCHER_TOO_SLOW). 64.
    pub watcher_buffer: usize,
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
            in_flight_expiry_ms: 180_000,
            events_retention_ms: 7 * 24 * 3600 * 1000,
            watcher_buffer: 64,
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
        if self.events_retention_ms == 0 {
            return Err("payments.events_retention_ms must be above 0".into());
        }
        if self.watcher_buffer == 0 {
            return Err("payments.watcher_buffer must be above 0".into());
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
    /// Catalog lists each process keeps in memory in front of the store, entries (a bound on
    /// memory; each entry is served only while it is younger than `fresh_ms`). 0 keeps none.
    pub local_entries: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self {
            fresh_ms: 5 * 60 * 1000,
            keep_ms: 24 * 3600 * 1000,
            local_entries: 10_000,
        }
    }
}

/// The gateway: shared by every handler and background task.
pub struct Gateway {
    providers: Registry,
    store: Arc<dyn Store>,
    payments: PaymentSettings,
    catalog: CatalogSettings,
    /// Catalog lists held in this process in front of the store (see `catalog.rs`).
    local_catalog: catalog::LocalCatalog,
    sandbox: bool,
    clock: Clock,
    /// Detached payment calls, waited for on shutdown.
    tasks: tokio_util::task::TaskTracker,
    /// The store identity last seen: every claim is guarded by it.
    identity: std::sync::Mutex<Option<Vec<u8>>>,
    /// True while the store is known to have lost data (reported once per loss).
    data_lost: std::sync::atomic::AtomicBool,
    /// The store's durability verdict and when it was read; read again after the recheck
    /// interval and after the store was unreachable (a reconnect may reach another server).
    posture: std::sync::Mutex<crate::store::posture::PostureCache>,
    /// How much the gateway asks of the store's durability.
    store_policy: std::sync::RwLock<StorePolicy>,
    /// Whether the operator service answers (`[operator] enabled`).
    operator_enabled: std::sync::atomic::AtomicBool,
    /// The NATS relay of payment events (`[events] nats_url`), when configured.
    event_relay: std::sync::OnceLock<crate::relay::NatsRelayConfig>,
    /// Customer validations in progress, shared by concurrent duplicates (see `lease.rs`).
    validations: flight::Flights<lease::SharedValidation>,
    /// Product lists being read again after a product miss, shared by concurrent misses.
    product_refreshes: flight::Flights<catalog::Refreshed>,
    /// Each provider's reference clock, from its configured reference format.
    reference_clocks: crate::store::identity::ReferenceClocks,
    /// The largest reference sequence number this process drew, per provider: a counter
    /// answering below it lost writes.
    watermarks: std::sync::Mutex<std::collections::HashMap<ProviderId, u64>>,
    /// The store's recovery point (unix ms; 0: never recovered), read with each new identity.
    recovered_at: std::sync::atomic::AtomicI64,
    /// What this process last wrote for the payments it claimed recently (bounded), to notice
    /// and repair a record the store lost (see `payments.rs`).
    claimed: payments::ClaimedPayments,
    /// Where the next journal index trim pass starts (see `journal.rs`).
    journal_trim: journal::TrimCursor,
    /// The biller directory routed payments name (see `directory.rs`).
    directory: std::sync::RwLock<Arc<crate::domain::directory::Directory>>,
    /// `[directory]`: the routing policy and route health settings.
    directory_settings: std::sync::RwLock<directory::DirectorySettings>,
    /// Each provider's recent payment calls, for route health.
    route_stats: directory::RouteStats,
    /// This process's WatchPayment streams, fed by its one event reader (see `events.rs`).
    event_hub: Arc<events::EventHub>,
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
        let reference_clocks = providers.values().fold(
            crate::store::identity::ReferenceClocks::default(),
            |clocks, p| match p.reference_capacity() {
                Some(capacity) => clocks.with(p.id(), Some(capacity)),
                None => clocks,
            },
        );
        let watcher_buffer = payments.watcher_buffer;
        Arc::new(Self {
            providers,
            store,
            payments,
            local_catalog: catalog::local_catalog(&catalog),
            catalog,
            sandbox,
            clock: Clock::default(),
            tasks: tokio_util::task::TaskTracker::new(),
            identity: std::sync::Mutex::new(None),
            data_lost: std::sync::atomic::AtomicBool::new(false),
            posture: std::sync::Mutex::default(),
            store_policy: std::sync::RwLock::new(StorePolicy::default()),
            operator_enabled: std::sync::atomic::AtomicBool::new(false),
            event_relay: std::sync::OnceLock::new(),
            validations: flight::Flights::default(),
            product_refreshes: flight::Flights::default(),
            reference_clocks,
            watermarks: Default::default(),
            recovered_at: std::sync::atomic::AtomicI64::new(0),
            claimed: payments::ClaimedPayments::new(),
            journal_trim: Default::default(),
            directory: std::sync::RwLock::new(Arc::new(
                crate::domain::directory::Directory::built_in(),
            )),
            directory_settings: Default::default(),
            route_stats: Default::default(),
            event_hub: Arc::new(events::EventHub::new(watcher_buffer)),
        })
    }

    /// The configured providers, in contract order.
    pub fn providers(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.providers.values()
    }

    /// True when providers point at simulators.
    pub fn sandbox(&self) -> bool {
        self.sandbox
    }

    /// Each provider's reference clock (for `store recover`, which must use the same).
    pub fn reference_clocks(&self) -> &crate::store::identity::ReferenceClocks {
        &self.reference_clocks
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Relays payment events to NATS with `config` (set once, at build time).
    pub fn set_event_relay(&self, config: crate::relay::NatsRelayConfig) {
        let _ = self.event_relay.set(config);
    }

    /// The NATS relay's settings, when one is configured.
    pub fn event_relay(&self) -> Option<&crate::relay::NatsRelayConfig> {
        self.event_relay.get()
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

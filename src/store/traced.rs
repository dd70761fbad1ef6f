//! Store spans for tracing: [`TracedStore`] wraps any [`Store`] and gives each operation a
//! client span (DEBUG level, exported only while [`crate::telemetry::exporting`]) named after
//! the operation, with the store kind and the kind of key touched (`payment`, `token`,
//! `catalog`, ...). Never a key itself (keys hold payment, request and credential ids) nor a
//! value. [`wrap`] adds it only while spans are exported, so without an OTLP endpoint the
//! store is called directly.

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{
    keys, Durability, EventRead, EventWrite, Guard, GuardCopies, GuardedWrite, Increment, NewEvent,
    RecordWrite, Store, StoreError,
};

/// `store` in spans, when spans are exported; else `store` itself. `system` names the backend
/// (`memory`, `redis`, `redis-cluster`, `postgres`; a mixed deployment: `postgres+redis`).
pub fn wrap(store: Arc<dyn Store>, system: &'static str) -> Arc<dyn Store> {
    if crate::telemetry::exporting() {
        Arc::new(TracedStore {
            inner: store,
            system,
        })
    } else {
        store
    }
}

/// A store whose operations each run in a span.
pub struct TracedStore {
    inner: Arc<dyn Store>,
    system: &'static str,
}

/// The kind of a key (`billpay:v1:<kind>:...`), or `other`: never its ids.
fn key_kind(key: &str) -> &'static str {
    const KINDS: &[&str] = &[
        "payment",
        "op",
        "token",
        "catalog",
        "seq",
        "reconcile",
        "store",
        "journal",
        "lease",
        "owner",
        "audit",
        "tokens",
        "events",
    ];
    let kind = key
        .strip_prefix(keys::PREFIX)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(|rest| rest.split(':').next().unwrap_or(""));
    kind.and_then(|k| KINDS.iter().find(|known| **known == k).copied())
        .unwrap_or("other")
}

impl TracedStore {
    async fn traced<T>(
        &self,
        operation: &'static str,
        key: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::debug_span!(
            "store",
            otel.name = operation,
            otel.kind = "client",
            db.system.name = self.system,
            db.operation.name = operation,
            billpay.key_kind = key_kind(key),
        );
        let result = call.instrument(span.clone()).await;
        if result.is_err() {
            // The error's text stays out: the status says the store failed, logs say why.
            span.set_status(opentelemetry::trace::Status::error("store unavailable"));
        }
        result
    }
}

#[async_trait]
impl Store for TracedStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.traced("get", key, self.inner.get(key)).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.traced("set", key, self.inner.set(key, value, ttl))
            .await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.traced(
            "set_if_absent",
            key,
            self.inner.set_if_absent(key, value, ttl),
        )
        .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.traced(
            "compare_and_swap",
            key,
            self.inner.compare_and_swap(key, expected, new),
        )
        .await
    }

    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.traced(
            "compare_and_swap_with_ttl",
            key,
            self.inner
                .compare_and_swap_with_ttl(key, expected, new, ttl),
        )
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
        self.traced(
            "set_if_absent_guarded",
            key,
            self.inner
                .set_if_absent_guarded(guard_key, guard_value, key, value, ttl),
        )
        .await
    }

    async fn read_guard(&self, key: &str, copies: GuardCopies) -> Result<Guard, StoreError> {
        self.traced("read_guard", key, self.inner.read_guard(key, copies))
            .await
    }

    async fn init_guard(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.traced("init_guard", key, self.inner.init_guard(key, value))
            .await
    }

    async fn replace_guard(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.traced("replace_guard", key, self.inner.replace_guard(key, value))
            .await
    }

    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        self.traced("raise_counter", key, self.inner.raise_counter(key, floor))
            .await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.traced(
            "keys_with_prefix",
            prefix,
            self.inner.keys_with_prefix(prefix),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.traced("delete", key, self.inner.delete(key)).await
    }

    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        self.traced(
            "increment_guarded",
            key,
            self.inner
                .increment_guarded(guard_key, guard_value, key, floor, ceiling),
        )
        .await
    }

    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        self.traced("schedule", set, self.inner.schedule(set, member, due_ms))
            .await
    }

    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        self.traced(
            "schedule_if_absent",
            set,
            self.inner.schedule_if_absent(set, member, due_ms),
        )
        .await
    }

    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        let first = entries.first().map_or("", |(set, _)| *set);
        self.traced(
            "schedule_all_if_absent",
            first,
            self.inner.schedule_all_if_absent(entries, member),
        )
        .await
    }

    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.traced("due", set, self.inner.due(set, now_ms, limit))
            .await
    }

    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.traced(
            "range",
            set,
            self.inner.range(set, min_ms, max_ms, offset, limit),
        )
        .await
    }

    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.traced(
            "range_newest_first",
            set,
            self.inner.range_newest_first(set, max_ms, min_ms, limit),
        )
        .await
    }

    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.traced(
            "claim_due",
            set,
            self.inner.claim_due(set, member, now_ms, lease_until_ms),
        )
        .await
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.traced("unschedule", set, self.inner.unschedule(set, member))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.traced("ping", "", self.inner.ping()).await
    }

    async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
        self.traced("durability", "", self.inner.durability()).await
    }

    async fn wait_for_replicas(&self, replicas: u32, timeout: Duration) -> Result<u32, StoreError> {
        self.traced(
            "wait_for_replicas",
            "",
            self.inner.wait_for_replicas(replicas, timeout),
        )
        .await
    }

    async fn wait_for_fsync(&self, timeout: Duration) -> Result<bool, StoreError> {
        self.traced("wait_for_fsync", "", self.inner.wait_for_fsync(timeout))
            .await
    }

    // The payment events outbox: every method delegates, or a traced store would keep no
    // events (the trait's defaults) and WatchPayment, WatchPaymentEvents and the NATS relay
    // would stop whenever traces are exported.

    fn keeps_events(&self) -> Result<(), String> {
        self.inner.keeps_events()
    }

    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        let key = match write {
            RecordWrite::Swap { key, .. }
            | RecordWrite::GuardedClaim { key, .. }
            | RecordWrite::IfAbsent { key, .. } => key,
        };
        self.traced(
            "write_with_event",
            key,
            self.inner.write_with_event(write, event),
        )
        .await
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        self.traced(
            "read_events",
            &keys::events(),
            self.inner.read_events(after, limit),
        )
        .await
    }

    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        self.traced("last_event_id", &keys::events(), self.inner.last_event_id())
            .await
    }

    /// Not in a span: it blocks for up to `timeout` waiting for news, which is not a round
    /// trip worth a span every poll.
    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        self.inner.wait_for_events(after, timeout).await
    }

    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        self.traced(
            "trim_events",
            &keys::events(),
            self.inner.trim_events(before_ms),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kinds_name_no_ids() {
        assert_eq!(key_kind(&keys::payment("pay_0123")), "payment");
        assert_eq!(key_kind(&keys::token("client-id")), "token");
        assert_eq!(key_kind(&keys::reconcile_schedule()), "reconcile");
        assert_eq!(key_kind("billpay:v1:secret-looking-thing"), "other");
        assert_eq!(key_kind("elsewhere"), "other");
        assert_eq!(key_kind(&keys::events()), "events");
    }

    /// A traced store is the store it wraps, every operation included (the payment events
    /// outbox too): the whole store contract suite, over a traced memory store.
    #[tokio::test]
    async fn a_traced_store_passes_the_store_contract() {
        let traced = TracedStore {
            inner: Arc::new(crate::store::memory::MemoryStore::default()),
            system: "memory",
        };
        assert!(traced.keeps_events().is_ok());
        crate::store::contract::run(&traced).await;
    }
}

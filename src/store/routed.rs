//! A mixed deployment's store: one [`Store`] over two backends, each key sent by its kind. The
//! journal store (PostgreSQL) holds everything whose loss could let a payment happen twice or
//! be forgotten: payment and operation records, provider reference counters, the
//! reconciliation schedule and journal index, the store identity and recovery point, owner
//! records. The cache store (Redis, a Redis Cluster or memory) holds the
//! [`keys::CACHE_KINDS`]: provider tokens and their locks, catalog copies and their refresh
//! locks, validation leases. Losing any of those costs a provider call (a new token, a catalog
//! read, one more customer validation), never a payment: the claim that admits a payment is in
//! the journal store.
//!
//! Every operation that reads or writes several keys (the guarded claim: identity and payment;
//! the guarded increment: identity and counter; the claim's schedule-and-index write) touches
//! journal keys only, so it runs whole on the journal store. The durability posture, replica
//! acknowledgements and fsync waits are the journal store's: a cache store that could lose
//! writes (a Redis without persistence, an evicting one) is not read for them, and does not
//! hold payments back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    keys, Durability, EventRead, EventWrite, Guard, GuardCopies, GuardedWrite, Increment, NewEvent,
    RecordWrite, Store, StoreError,
};

/// Sends [`keys::CACHE_KINDS`] keys to `cache` and every other key to `journal`.
pub struct RoutedStore {
    journal: Arc<dyn Store>,
    cache: Arc<dyn Store>,
}

impl RoutedStore {
    /// A store keeping the journal in `journal` and tokens, catalog copies and leases in
    /// `cache`.
    pub fn new(journal: Arc<dyn Store>, cache: Arc<dyn Store>) -> Self {
        Self { journal, cache }
    }

    /// The backend that holds `key`.
    fn of(&self, key: &str) -> &dyn Store {
        if keys::is_cache(key) {
            self.cache.as_ref()
        } else {
            self.journal.as_ref()
        }
    }
}

/// Whether some cache key starts with `prefix` while `prefix` itself names no cache kind (it is
/// broader: `billpay:v1:` or empty), so a prefix search must ask both backends.
fn spans_cache(prefix: &str) -> bool {
    !keys::is_cache(prefix)
        && keys::CACHE_KINDS
            .iter()
            .any(|kind| format!("{}:{kind}:", keys::PREFIX).starts_with(prefix))
}

#[async_trait]
impl Store for RoutedStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.of(key).get(key).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.of(key).set(key, value, ttl).await
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.of(key).set_if_absent(key, value, ttl).await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.of(key).compare_and_swap(key, expected, new).await
    }

    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        self.of(key)
            .compare_and_swap_with_ttl(key, expected, new, ttl)
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
        if keys::is_cache(guard_key) || keys::is_cache(key) {
            return Err(StoreError(format!(
                "a guarded write of {key} under {guard_key} would span two stores"
            )));
        }
        self.journal
            .set_if_absent_guarded(guard_key, guard_value, key, value, ttl)
            .await
    }

    async fn read_guard(&self, key: &str, copies: GuardCopies) -> Result<Guard, StoreError> {
        self.of(key).read_guard(key, copies).await
    }

    async fn init_guard(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.of(key).init_guard(key, value).await
    }

    async fn replace_guard(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.of(key).replace_guard(key, value).await
    }

    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        self.of(key).raise_counter(key, floor).await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut found = self.of(prefix).keys_with_prefix(prefix).await?;
        if spans_cache(prefix) {
            // Only the cache store's own kinds: a memory store carries an identity too.
            let cached = self.cache.keys_with_prefix(prefix).await?;
            found.extend(cached.into_iter().filter(|k| keys::is_cache(k)));
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.of(key).delete(key).await
    }

    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        if keys::is_cache(guard_key) || keys::is_cache(key) {
            return Err(StoreError(format!(
                "a guarded increment of {key} under {guard_key} would span two stores"
            )));
        }
        self.journal
            .increment_guarded(guard_key, guard_value, key, floor, ceiling)
            .await
    }

    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        self.of(set).schedule(set, member, due_ms).await
    }

    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        self.of(set).schedule_if_absent(set, member, due_ms).await
    }

    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        let (cache, journal): (Vec<(&str, i64)>, Vec<(&str, i64)>) =
            entries.iter().partition(|(set, _)| keys::is_cache(set));
        if !journal.is_empty() {
            self.journal
                .schedule_all_if_absent(&journal, member)
                .await?;
        }
        if !cache.is_empty() {
            self.cache.schedule_all_if_absent(&cache, member).await?;
        }
        Ok(())
    }

    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.of(set).due(set, now_ms, limit).await
    }

    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.of(set).range(set, min_ms, max_ms, offset, limit).await
    }

    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.of(set)
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
        self.of(set)
            .claim_due(set, member, now_ms, lease_until_ms)
            .await
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.of(set).unschedule(set, member).await
    }

    /// Both backends answer: a payment needs the journal store for its claim and the cache
    /// store for its validation lease (and a provider's token).
    async fn ping(&self) -> Result<(), StoreError> {
        self.journal.ping().await?;
        self.cache.ping().await
    }

    /// Payment events live beside the payment records, in the journal store.
    fn keeps_events(&self) -> Result<(), String> {
        self.journal.keeps_events()
    }

    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        self.journal.write_with_event(write, event).await
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        self.journal.read_events(after, limit).await
    }

    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        self.journal.last_event_id().await
    }

    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        self.journal.wait_for_events(after, timeout).await
    }

    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        self.journal.trim_events(before_ms).await
    }

    /// The journal store's: only its writes decide whether a payment can happen twice.
    async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
        self.journal.durability().await
    }

    async fn wait_for_replicas(&self, replicas: u32, timeout: Duration) -> Result<u32, StoreError> {
        self.journal.wait_for_replicas(replicas, timeout).await
    }

    async fn wait_for_fsync(&self, timeout: Duration) -> Result<bool, StoreError> {
        self.journal.wait_for_fsync(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn routed() -> (RoutedStore, Arc<MemoryStore>, Arc<MemoryStore>) {
        let journal = Arc::new(MemoryStore::default());
        let cache = Arc::new(MemoryStore::default());
        (
            RoutedStore::new(journal.clone(), cache.clone()),
            journal,
            cache,
        )
    }

    #[test]
    fn tokens_catalogs_and_leases_are_cache_keys_and_nothing_else_is() {
        for key in [
            keys::token("interintel:c1"),
            format!("{}:lock", keys::token("interintel:c1")),
            keys::catalog("switch", "products", "all"),
            keys::validation_lease("p1", "f1"),
        ] {
            assert!(keys::is_cache(&key), "{key}");
        }
        for key in [
            keys::payment("p1"),
            keys::operation("o1"),
            keys::reference_sequence("interswitch"),
            keys::reconcile_schedule(),
            keys::journal_index(),
            keys::identity(),
            keys::recovered_at(),
            format!("{}:owner:switch:bill:1", keys::PREFIX),
            // A payment id that looks like a cache kind stays in the journal.
            keys::payment("token:x"),
            format!("{}:tokens", keys::PREFIX),
            "token:x".to_owned(),
        ] {
            assert!(!keys::is_cache(&key), "{key}");
        }
    }

    #[tokio::test]
    async fn each_key_lands_in_its_backend_and_prefix_searches_cover_both() {
        let (store, journal, cache) = routed();
        store.set(&keys::token("c"), b"t", None).await.unwrap();
        store
            .set(&keys::catalog("switch", "products", "all"), b"[]", None)
            .await
            .unwrap();
        // A memory store carries its identity from the start.
        let Guard::Held(identity) = store
            .read_guard(&keys::identity(), GuardCopies::Every)
            .await
            .unwrap()
        else {
            panic!("no identity")
        };
        let claim = store
            .set_if_absent_guarded(
                &keys::identity(),
                &identity,
                &keys::payment("p1"),
                b"{}",
                None,
            )
            .await
            .unwrap();
        assert_eq!(claim, GuardedWrite::Written);
        store
            .schedule_all_if_absent(
                &[
                    (&keys::reconcile_schedule(), 5),
                    (&keys::journal_index(), 1),
                ],
                "p1",
            )
            .await
            .unwrap();

        assert!(journal.get(&keys::payment("p1")).await.unwrap().is_some());
        assert!(journal.get(&keys::identity()).await.unwrap().is_some());
        assert!(cache.get(&keys::payment("p1")).await.unwrap().is_none());
        assert!(cache.get(&keys::token("c")).await.unwrap().is_some());
        assert!(journal.get(&keys::token("c")).await.unwrap().is_none());
        assert_eq!(
            journal
                .due(&keys::reconcile_schedule(), 10, 10)
                .await
                .unwrap(),
            vec!["p1".to_owned()]
        );
        assert!(cache
            .due(&keys::reconcile_schedule(), 10, 10)
            .await
            .unwrap()
            .is_empty());

        let mut everything = store.keys_with_prefix(keys::PREFIX).await.unwrap();
        everything.sort();
        assert_eq!(
            everything,
            vec![
                keys::catalog("switch", "products", "all"),
                keys::payment("p1"),
                keys::identity(),
                keys::token("c"),
            ]
        );
        assert_eq!(
            store.keys_with_prefix(&keys::payment("")).await.unwrap(),
            vec![keys::payment("p1")]
        );
        assert_eq!(
            store.keys_with_prefix(&keys::token("")).await.unwrap(),
            vec![keys::token("c")]
        );
    }

    #[tokio::test]
    async fn a_guarded_write_never_spans_the_two_backends() {
        let (store, _, _) = routed();
        store.init_guard(&keys::identity(), b"e").await.unwrap();
        assert!(store
            .set_if_absent_guarded(&keys::identity(), b"e", &keys::token("c"), b"t", None)
            .await
            .is_err());
        assert!(store
            .increment_guarded(&keys::identity(), b"e", &keys::token("c"), 0, 10)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_contract_suite_passes_over_two_memory_stores() {
        let (store, _, _) = routed();
        crate::store::contract::run(&store).await;
    }
}

//! The store identity (epoch) and the two operator steps around it: `store init` (a new store's
//! first run) and `store recover` (after the store lost data). How the identity guards every
//! claim is described in the [`super`] module docs.
//!
//! Provider references come from per-provider counters in the store. A store that lost data
//! may also have lost (or rolled back) those counters, and a reference the provider already saw
//! must never be sent again: it would be refused (Interswitch `10001`) and, worse, its status
//! query would return the old transaction. So both steps first raise every provider's counter
//! above anything used, then write the identity: an operator-given floor, or the clock.

use crate::domain::{PaymentRecord, ProviderId};

use super::{keys, Guard, GuardCopies, Store, StoreError};

/// Start of the reference clock: 2026-11-01T00:00:00Z, unix seconds.
pub const REFERENCE_EPOCH_SECS: i64 = 1_793_491_200;

/// Added to the clock-derived floor on `init` and `recover`: the counters stay above every
/// earlier reference as long as, since [`REFERENCE_EPOCH_SECS`], payments averaged under one per
/// second plus this many in bursts (a missing counter starts from the clock, see
/// [`reference_seed`]). When that may not hold, give `--reference-floor`.
pub const RECOVERY_CLOCK_MARGIN: u64 = 1_000_000;

/// Where a provider's reference sequence starts when the store has no counter: the seconds
/// since [`REFERENCE_EPOCH_SECS`].
pub fn reference_seed(now_ms: i64) -> u64 {
    (now_ms / 1000 - REFERENCE_EPOCH_SECS).max(0) as u64
}

/// The reference floor `init` and `recover` use without an operator-given one.
pub fn clock_floor(now_ms: i64) -> u64 {
    reference_seed(now_ms) + RECOVERY_CLOCK_MARGIN
}

/// A fresh identity value.
pub fn new_identity() -> String {
    format!("store-{}", uuid::Uuid::new_v4().simple())
}

/// The store's identity; `None` when it has none (a new store, or one that lost data; on a
/// cluster also when a shard lost its copies or they disagree). Reads what the periodic check
/// needs: on a cluster one copy per slot range, every primary (see the [`super`] module docs).
pub async fn read(store: &dyn Store) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        match store
            .read_guard(&keys::identity(), GuardCopies::OnePerRange)
            .await?
        {
            Guard::Held(identity) => Some(identity),
            Guard::Absent | Guard::Broken => None,
        },
    )
}

/// What `init` or `recover` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// The identity written.
    pub identity: String,
    /// Every provider's reference counter afterwards.
    pub counters: Vec<(ProviderId, u64)>,
}

async fn raise_counters(
    store: &dyn Store,
    floor: u64,
) -> Result<Vec<(ProviderId, u64)>, StoreError> {
    let mut counters = Vec::new();
    for id in ProviderId::ALL {
        let value = store
            .raise_counter(&keys::reference_sequence(id.name()), floor)
            .await?;
        counters.push((id, value));
    }
    Ok(counters)
}

/// Brings payment records written before the identity existed (an upgrade) under today's
/// rules: a record that is not final loses its TTL (it must never expire), and every record
/// joins the operators' journal index. Returns how many records were made permanent.
pub async fn adopt_existing_records(store: &dyn Store) -> Result<usize, StoreError> {
    let prefix = keys::payment("");
    let mut persisted = 0;
    for key in store.keys_with_prefix(&prefix).await? {
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<PaymentRecord>(&bytes) else {
            tracing::warn!(key, "payment record unreadable; left as it is");
            continue;
        };
        store
            .schedule_if_absent(
                &keys::journal_index(),
                &record.payment_id,
                record.created_at_ms,
            )
            .await?;
        if !record.state.is_final()
            && store
                .compare_and_swap_with_ttl(&key, &bytes, &bytes, None)
                .await?
        {
            persisted += 1;
        }
    }
    Ok(persisted)
}

/// First run of a new store (or of a store written by a version without the identity):
/// makes existing records that are not final permanent ([`adopt_existing_records`]), raises
/// the reference counters to the clock floor and writes an identity. `None` (nothing changed)
/// when the store already has one (on a cluster: every copy). A cluster where only some
/// copies exist or they disagree lost data on a shard, or a run was interrupted: an error that
/// sends the operator to `store recover`.
pub async fn init(store: &dyn Store, now_ms: i64) -> Result<Option<Seeded>, StoreError> {
    match store
        .read_guard(&keys::identity(), GuardCopies::Every)
        .await?
    {
        Guard::Held(_) => return Ok(None),
        Guard::Broken => {
            return Err(StoreError(
                "the store identity is missing on part of the cluster (a shard lost data, or \
                 an earlier init/recover was interrupted): run `billpay-gateway store recover`"
                    .into(),
            ))
        }
        Guard::Absent => {}
    }
    let adopted = adopt_existing_records(store).await?;
    if adopted > 0 {
        tracing::info!(
            adopted,
            "payment records that are not final no longer expire"
        );
    }
    let counters = raise_counters(store, clock_floor(now_ms)).await?;
    let identity = new_identity();
    if !store
        .init_guard(&keys::identity(), identity.as_bytes())
        .await?
    {
        // Another replica initialised it meanwhile.
        return Ok(None);
    }
    Ok(Some(Seeded { identity, counters }))
}

/// Recovery after data loss: raises every provider's reference counter to `floor` (default:
/// the clock floor, [`clock_floor`]), then writes a new identity, which running gateways adopt
/// on their next claim. Counters first: no claim is accepted before they are safe.
pub async fn recover(
    store: &dyn Store,
    floor: Option<u64>,
    now_ms: i64,
) -> Result<Seeded, StoreError> {
    let floor = floor.unwrap_or_else(|| clock_floor(now_ms));
    let counters = raise_counters(store, floor).await?;
    let identity = new_identity();
    store
        .replace_guard(&keys::identity(), identity.as_bytes())
        .await?;
    Ok(Seeded { identity, counters })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test(start_paused = true)]
    async fn init_makes_earlier_pending_records_permanent_and_indexes_them() {
        use crate::domain::{payment::PaymentKind, Currency, Money, PaymentOrder, PaymentState};
        use std::time::Duration;
        let store = MemoryStore::default();
        store.delete(&keys::identity()).await.unwrap();
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "p",
            "c",
            Money::new(Currency::Ngn, 1),
        );
        let ttl = Some(Duration::from_secs(60));
        for (request_id, state) in [("a", PaymentState::Pending), ("b", PaymentState::Succeeded)] {
            let record = PaymentRecord {
                state,
                ..PaymentRecord::claimed(request_id.into(), order.clone(), "1".into(), 7)
            };
            store
                .set(
                    &keys::payment(&record.payment_id),
                    &serde_json::to_vec(&record).unwrap(),
                    ttl,
                )
                .await
                .unwrap();
        }
        assert!(init(&store, 0).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_secs(61)).await;
        let pending = keys::payment(&PaymentRecord::id_for_request("a"));
        let done = keys::payment(&PaymentRecord::id_for_request("b"));
        assert!(store.get(&pending).await.unwrap().is_some(), "kept");
        assert!(store.get(&done).await.unwrap().is_none(), "final: expired");
        let indexed = store
            .range(&keys::journal_index(), 0, 100, 0, 10)
            .await
            .unwrap();
        assert_eq!(indexed.len(), 2);
    }

    #[tokio::test]
    async fn init_once_then_recover_raises_counters_and_changes_identity() {
        let store = MemoryStore::default();
        // The memory store has its identity from the start.
        let first = read(&store).await.unwrap().expect("memory store identity");
        assert_eq!(init(&store, 0).await.unwrap(), None);
        let key = keys::reference_sequence(ProviderId::Interswitch.name());
        store.raise_counter(&key, 5_000_000).await.unwrap();
        let recovered = recover(&store, Some(7_000_000), 0).await.unwrap();
        assert_ne!(recovered.identity.as_bytes(), first.as_slice());
        assert_eq!(
            read(&store).await.unwrap().unwrap(),
            recovered.identity.as_bytes()
        );
        assert!(recovered
            .counters
            .contains(&(ProviderId::Interswitch, 7_000_000)));
        // Never lowered by a smaller floor.
        let again = recover(&store, Some(1), 0).await.unwrap();
        assert!(again
            .counters
            .contains(&(ProviderId::Interswitch, 7_000_000)));
        assert_eq!(again.counters.len(), ProviderId::ALL.len());
        // Without a floor: the clock, with its margin.
        store.delete(&keys::identity()).await.unwrap();
        let now_ms = (REFERENCE_EPOCH_SECS + 10_000_000) * 1000;
        let seeded = init(&store, now_ms).await.unwrap().expect("initialised");
        assert!(seeded
            .counters
            .contains(&(ProviderId::OnePipe, 10_000_000 + RECOVERY_CLOCK_MARGIN)));
    }
}

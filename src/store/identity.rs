//! The store identity (epoch) and the two operator steps around it: `store init` (a new store's
//! first run) and `store recover` (after the store lost data). How the identity guards every
//! claim is described in the [`super`] module docs.
//!
//! Provider references come from per-provider counters in the store. A store that lost data
//! may also have lost (or rolled back) those counters, and a reference the provider already saw
//! must never be sent again: it would be refused (Interswitch `10001`) and, worse, its status
//! query would return the old transaction. So both steps first raise every provider's counter
//! above anything used, then write the identity: an operator-given floor, or the clock. Both
//! also put every payment record back in the operators' journal index and every unfinished one
//! back on the reconciliation schedule ([`repair_records`]).

use crate::domain::{PaymentRecord, PaymentState, ProviderId};

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
    /// What [`repair_records`] did.
    pub records: Repaired,
}

/// Raises each provider's counter to `floor`, and above the largest sequence number in use.
async fn raise_counters(
    store: &dyn Store,
    floor: u64,
    in_use: &std::collections::BTreeMap<ProviderId, u64>,
) -> Result<Vec<(ProviderId, u64)>, StoreError> {
    let mut counters = Vec::new();
    for id in ProviderId::ALL {
        let above_used = in_use.get(&id).map_or(0, |n| n.saturating_add(1));
        let value = store
            .raise_counter(&keys::reference_sequence(id.name()), floor.max(above_used))
            .await?;
        counters.push((id, value));
    }
    Ok(counters)
}

/// Payment records repaired at once.
const REPAIR_CONCURRENCY: usize = 32;

/// What [`repair_records`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Payment records found.
    pub records: usize,
    /// Records that were missing from the journal index and were added back.
    pub reindexed: usize,
    /// Unsettled records that were missing from the reconciliation schedule and were put back,
    /// due at once.
    pub rescheduled: usize,
    /// The largest reference sequence number found, per provider (records that keep it).
    pub largest_sequence: std::collections::BTreeMap<ProviderId, u64>,
}

impl std::ops::Add for Repaired {
    type Output = Self;

    fn add(mut self, other: Self) -> Self {
        for (provider, sequence) in other.largest_sequence {
            let largest = self.largest_sequence.entry(provider).or_default();
            *largest = (*largest).max(sequence);
        }
        Self {
            records: self.records + other.records,
            reindexed: self.reindexed + other.reindexed,
            rescheduled: self.rescheduled + other.rescheduled,
            largest_sequence: self.largest_sequence,
        }
    }
}

/// Puts every payment record (found by a SCAN of every primary) back where the gateway looks
/// for it: in the operators' journal index at its creation time, and, when its outcome is still
/// open (not final, not NEEDS_ATTENTION), on the reconciliation schedule due at `now_ms`. Both
/// only where it is missing (`ZADD NX`): entries that exist keep their time. A record that is
/// not final also loses any TTL (records written before the identity existed had one; it must
/// never expire).
///
/// Why: the schedule and the index are one sorted set each, so on a cluster one shard holds
/// each. Should that shard lose its data while the records on the others survive, unfinished
/// payments would never be reconciled (nor failed as never sent, nor handed to an operator)
/// and operators would not see them listed. On a single Redis it brings an upgraded store's
/// records under today's rules.
pub async fn repair_records(store: &dyn Store, now_ms: i64) -> Result<Repaired, StoreError> {
    use futures_util::{StreamExt, TryStreamExt};
    let keys = store.keys_with_prefix(&keys::payment("")).await?;
    futures_util::stream::iter(keys)
        .map(|key| repair_record(store, key, now_ms))
        .buffer_unordered(REPAIR_CONCURRENCY)
        .try_fold(
            Repaired::default(),
            |total, one| async move { Ok(total + one) },
        )
        .await
}

async fn repair_record(
    store: &dyn Store,
    key: String,
    now_ms: i64,
) -> Result<Repaired, StoreError> {
    let Some(bytes) = store.get(&key).await? else {
        // Expired since the scan.
        return Ok(Repaired::default());
    };
    let Ok(record) = serde_json::from_slice::<PaymentRecord>(&bytes) else {
        tracing::warn!(key, "payment record unreadable; left as it is");
        return Ok(Repaired::default());
    };
    let mut repaired = Repaired {
        records: 1,
        ..Repaired::default()
    };
    if record.reference_sequence > 0 {
        repaired
            .largest_sequence
            .insert(record.order.provider, record.reference_sequence);
    }
    let indexed = store
        .schedule_if_absent(
            &keys::journal_index(),
            &record.payment_id,
            record.created_at_ms,
        )
        .await?;
    repaired.reindexed = usize::from(indexed);
    if record.state.is_final() {
        return Ok(repaired);
    }
    // Unchanged bytes, no TTL; a record that changed meanwhile is left to its writer.
    store
        .compare_and_swap_with_ttl(&key, &bytes, &bytes, None)
        .await?;
    if record.state != PaymentState::NeedsAttention {
        let scheduled = store
            .schedule_if_absent(&keys::reconcile_schedule(), &record.payment_id, now_ms)
            .await?;
        repaired.rescheduled = usize::from(scheduled);
    }
    Ok(repaired)
}

/// First run of a new store (or of a store written by a version without the identity):
/// brings existing records under today's rules ([`repair_records`]), raises the reference
/// counters to the clock floor and writes an identity. `None` (nothing changed)
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
    let records = repair_records(store, now_ms).await?;
    let counters = raise_counters(store, clock_floor(now_ms), &records.largest_sequence).await?;
    let identity = new_identity();
    if !store
        .init_guard(&keys::identity(), identity.as_bytes())
        .await?
    {
        // Another replica initialised it meanwhile.
        return Ok(None);
    }
    Ok(Some(Seeded {
        identity,
        counters,
        records,
    }))
}

/// Recovery after data loss: puts every payment record back in the journal index and every
/// unfinished one back on the reconciliation schedule ([`repair_records`]: a lost shard may
/// have held either sorted set), raises every provider's reference counter to `floor` (default:
/// the clock floor, [`clock_floor`]) and above the largest sequence number a surviving record
/// holds, then writes a new identity, which running gateways adopt on their next claim. No
/// reference is handed out before the counters are safe: a counter that was lost lost its
/// identity copy with it, and increments are guarded by the identity.
pub async fn recover(
    store: &dyn Store,
    floor: Option<u64>,
    now_ms: i64,
) -> Result<Seeded, StoreError> {
    let floor = floor.unwrap_or_else(|| clock_floor(now_ms));
    let records = repair_records(store, now_ms).await?;
    let counters = raise_counters(store, floor, &records.largest_sequence).await?;
    let identity = new_identity();
    store
        .replace_guard(&keys::identity(), identity.as_bytes())
        .await?;
    Ok(Seeded {
        identity,
        counters,
        records,
    })
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
    async fn recover_puts_every_record_back_in_the_index_and_unfinished_ones_on_the_schedule() {
        use crate::domain::{
            payment::{CallPhase, PaymentKind},
            Currency, Money, PaymentOrder,
        };
        let store = MemoryStore::default();
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "p",
            "c",
            Money::new(Currency::Ngn, 1),
        );
        // Records whose index and schedule entries were lost with another shard.
        let records = [
            (
                "claimed",
                PaymentState::Pending,
                CallPhase::Claimed { since_ms: 10 },
            ),
            (
                "in-flight",
                PaymentState::Pending,
                CallPhase::InFlight { since_ms: 20 },
            ),
            ("pending", PaymentState::Pending, CallPhase::Returned),
            ("otp", PaymentState::OtpRequired, CallPhase::Returned),
            (
                "attention",
                PaymentState::NeedsAttention,
                CallPhase::Returned,
            ),
            ("done", PaymentState::Succeeded, CallPhase::Returned),
            ("kept", PaymentState::Pending, CallPhase::Returned),
        ];
        let mut ids = std::collections::HashMap::new();
        for (at, (request_id, state, call)) in records.into_iter().enumerate() {
            let record = PaymentRecord {
                state,
                call,
                // The counter itself was lost: only the records know what was used.
                reference_sequence: 100 + at as u64,
                ..PaymentRecord::claimed(request_id.into(), order.clone(), "1".into(), at as i64)
            };
            let key = keys::payment(&record.payment_id);
            store
                .set(&key, &serde_json::to_vec(&record).unwrap(), None)
                .await
                .unwrap();
            ids.insert(request_id, record.payment_id);
        }
        store
            .set(&keys::payment("garbled"), b"{", None)
            .await
            .unwrap();
        // One record kept its entries: they keep their times.
        store
            .schedule(&keys::reconcile_schedule(), &ids["kept"], 5_000)
            .await
            .unwrap();
        store
            .schedule(&keys::journal_index(), &ids["kept"], 6)
            .await
            .unwrap();

        let now = 1_000;
        let recovered = recover(&store, Some(1), now).await.unwrap();
        assert_eq!(
            recovered.records,
            Repaired {
                records: 7,
                reindexed: 6,
                rescheduled: 4,
                largest_sequence: [(ProviderId::Interswitch, 106)].into(),
            }
        );
        // Above every reference a surviving record holds, though the floor given was 1.
        assert!(recovered.counters.contains(&(ProviderId::Interswitch, 107)));
        assert!(recovered.counters.contains(&(ProviderId::OnePipe, 1)));
        let index = store
            .range(&keys::journal_index(), 0, 100, 0, 100)
            .await
            .unwrap();
        let in_order: Vec<&str> = [
            "claimed",
            "in-flight",
            "pending",
            "otp",
            "attention",
            "done",
            "kept",
        ]
        .iter()
        .map(|r| ids[r].as_str())
        .collect();
        assert_eq!(index, in_order, "each at its creation time");
        let mut due = store
            .due(&keys::reconcile_schedule(), now, 100)
            .await
            .unwrap();
        due.sort();
        let mut open: Vec<String> = ["claimed", "in-flight", "pending", "otp"]
            .iter()
            .map(|r| ids[r].clone())
            .collect();
        open.sort();
        assert_eq!(due, open, "unfinished: due now; settled ones not scheduled");
        assert_eq!(
            store
                .due(&keys::reconcile_schedule(), 5_000, 100)
                .await
                .unwrap()
                .len(),
            5,
            "the entry that was there kept its time"
        );
        // Run again: nothing is missing any more.
        let again = recover(&store, Some(1), now).await.unwrap();
        assert_eq!(again.records.reindexed + again.records.rescheduled, 0);
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

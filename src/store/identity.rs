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

/// Numbers a provider's references against time, so that `store recover` can start above
/// every reference ever sent even when every counter (and every record) was lost.
///
/// With `rate` references per second and `t` the milliseconds since
/// [`REFERENCE_EPOCH_SECS`], a reference `n` may be issued at `t` only when
/// `floor(t) <= n <= ceiling(t)`:
///
/// - `floor(t) = rate * t / 1000`: a counter behind the clock jumps to it, so references
///   are used up at least at `rate` per second;
/// - `ceiling(t) = floor(t) + rate * RESERVE_SECS`: a burst may run ahead of the clock by
///   `rate * RESERVE_SECS` references (2,000,000 s of the rate); beyond that a payment waits
///   for the clock (at most [`ReferenceClock::MAX_WAIT`]) or is refused
///   (`REFERENCE_RATE_EXCEEDED`).
///
/// The ceiling only grows with time, so every reference issued up to `T` is at most
/// `ceiling(T)`, and `store recover` at `T` raises every counter to
/// [`ReferenceClock::recovery_floor`]: `ceiling(T + CLOCK_SKEW_SECS)`, so the next reference is
/// above anything a
/// replica whose clock ran up to 2 seconds ahead may have sent (replicas keep NTP time). No rate the reference format
/// allows can overtake it: the rate is the format's capacity spread over
/// [`ReferenceClock::LIFETIME_SECS`] (about 3.2 years), at most 1,000 per second:
///
/// | provider | reference | capacity | rate | lasts |
/// |---|---|---:|---:|---|
/// | Interswitch, `request_reference_length` 12 (default) | prefix + 8 digits | 10^8 | 1/s | to 2029-12 |
/// | Interswitch, length 13 / 14 / 15+ | prefix + 9 / 10 / 11+ digits | 10^9 ... | 10/s, 100/s, 1,000/s | to 2029-12 or later |
/// | InterIntel, IP2 | prefix + 12 digits | 10^12 | 1,000/s | 31 years |
/// | OnePipe, Switch | prefix + decimal digits, no length limit | unbounded | 1,000/s | unbounded |
///
/// A sustained rate above the clock's (say 1M Interswitch payments a day with 12-digit
/// references: 11.6/s against 1/s) uses up the reserve and then waits: configure longer
/// references (`request_reference_length = 14` gives 100/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceClock {
    per_second: u64,
}

impl ReferenceClock {
    /// How far (in seconds of the rate) references may run ahead of the clock.
    pub const RESERVE_SECS: u64 = 2_000_000;
    /// The fastest clock: 1,000 references per second.
    pub const MAX_RATE: u64 = 1_000;
    /// A reference format's capacity is spread over this many seconds (about 3.2 years).
    pub const LIFETIME_SECS: u64 = 100_000_000;
    /// How far ahead of the host running `store recover` a replica's clock may run, seconds.
    /// Kept short on purpose: a recovered counter starts this far above the clock's ceiling,
    /// so the first payments after a recovery wait about this long (within
    /// [`Self::MAX_WAIT`]).
    pub const CLOCK_SKEW_SECS: u64 = 2;
    /// How long a payment waits for the clock when references ran a full reserve ahead.
    pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

    /// The clock of a reference format that numbers `capacity` references (`None`: no limit).
    pub fn for_capacity(capacity: Option<u64>) -> Self {
        let per_second = capacity.map_or(Self::MAX_RATE, |c| {
            (c / Self::LIFETIME_SECS).clamp(1, Self::MAX_RATE)
        });
        Self { per_second }
    }

    /// References per second.
    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    fn elapsed_ms(now_ms: i64) -> u128 {
        (now_ms - REFERENCE_EPOCH_SECS * 1000).max(0) as u128
    }

    fn reserve(&self) -> u64 {
        self.per_second.saturating_mul(Self::RESERVE_SECS)
    }

    /// The lowest reference issued at `now_ms`.
    pub fn floor(&self, now_ms: i64) -> u64 {
        let n = Self::elapsed_ms(now_ms) * u128::from(self.per_second) / 1000;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// The highest reference that may be issued at `now_ms`.
    pub fn ceiling(&self, now_ms: i64) -> u64 {
        self.floor(now_ms).saturating_add(self.reserve())
    }

    /// The value `store recover` (and `store init`) at `now_ms` raises the counter to: the
    /// highest reference any replica with a clock at most [`Self::CLOCK_SKEW_SECS`] ahead may
    /// have issued so far, so the next one drawn is above every reference sent. Payments
    /// resume once the ceiling passes it (about [`Self::CLOCK_SKEW_SECS`] later).
    pub fn recovery_floor(&self, now_ms: i64) -> u64 {
        let later = now_ms.saturating_add(Self::CLOCK_SKEW_SECS as i64 * 1000);
        self.ceiling(later)
    }

    /// The unix time (ms) from which reference `n` is below the ceiling.
    pub fn allows_at(&self, n: u64) -> i64 {
        let ahead = u128::from(n.saturating_sub(self.reserve()));
        let ms = (ahead * 1000).div_ceil(u128::from(self.per_second));
        i64::try_from(ms)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(REFERENCE_EPOCH_SECS * 1000)
    }
}

/// Every provider's [`ReferenceClock`]: from the configured reference formats, the others'
/// defaults (a provider configured later gets the clock of its default format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceClocks(std::collections::BTreeMap<ProviderId, ReferenceClock>);

impl Default for ReferenceClocks {
    fn default() -> Self {
        Self(
            ProviderId::ALL
                .into_iter()
                .map(|id| {
                    let capacity = match id {
                        // request_reference_length 12: prefix + 8 digits.
                        ProviderId::Interswitch => Some(10u64.pow(8)),
                        ProviderId::InterIntel | ProviderId::IntelworldIp2 => Some(10u64.pow(12)),
                        _ => None,
                    };
                    (id, ReferenceClock::for_capacity(capacity))
                })
                .collect(),
        )
    }
}

impl ReferenceClocks {
    /// With `id`'s format numbering `capacity` references (`None`: no limit).
    pub fn with(mut self, id: ProviderId, capacity: Option<u64>) -> Self {
        self.0.insert(id, ReferenceClock::for_capacity(capacity));
        self
    }

    /// `id`'s clock.
    pub fn get(&self, id: ProviderId) -> ReferenceClock {
        self.0
            .get(&id)
            .copied()
            .unwrap_or_else(|| ReferenceClock::for_capacity(None))
    }
}

/// Marks an identity that a gateway found lost under it (a record or counter older than what
/// the gateway had written, see `gateway::store_guard`): written in place of the identity, so
/// every replica's next claim fails and reads it as no identity until `store recover`.
pub const LOST_MARK: &str = "lost:";

/// Whether an identity value is a [`LOST_MARK`].
pub fn is_lost_mark(identity: &[u8]) -> bool {
    identity.starts_with(LOST_MARK.as_bytes())
}

/// Reads the recovery point `store recover` wrote (unix ms); `None` when the store was never
/// recovered.
pub async fn recovered_at(store: &dyn Store) -> Result<Option<i64>, StoreError> {
    Ok(store
        .get(&keys::recovered_at())
        .await?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
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
            Guard::Held(identity) if !is_lost_mark(&identity) => Some(identity),
            Guard::Held(_) | Guard::Absent | Guard::Broken => None,
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

/// Raises each provider's counter to its clock's recovery floor (and at least `floor` when
/// an operator gave one), and above the largest sequence number in use.
async fn raise_counters(
    store: &dyn Store,
    floor: Option<u64>,
    clocks: &ReferenceClocks,
    now_ms: i64,
    in_use: &std::collections::BTreeMap<ProviderId, u64>,
) -> Result<Vec<(ProviderId, u64)>, StoreError> {
    let mut counters = Vec::new();
    for id in ProviderId::ALL {
        let above_used = in_use.get(&id).map_or(0, |n| n.saturating_add(1));
        let floor = clocks
            .get(id)
            .recovery_floor(now_ms)
            .max(floor.unwrap_or(0))
            .max(above_used);
        let value = store
            .raise_counter(&keys::reference_sequence(id.name()), floor)
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
/// counters to the clocks' recovery floors when the store holds any payment record or counter
/// (a store that was used before; a new one's counters start from the clock at first use),
/// and writes an identity. `None` (nothing changed) when the store already has one (on a
/// cluster: every copy). A cluster where only some copies exist or they disagree lost data on
/// a shard, or a run was interrupted: an error that sends the operator to `store recover`;
/// so does an identity a gateway marked lost.
pub async fn init(
    store: &dyn Store,
    now_ms: i64,
    clocks: &ReferenceClocks,
) -> Result<Option<Seeded>, StoreError> {
    match store
        .read_guard(&keys::identity(), GuardCopies::Every)
        .await?
    {
        Guard::Held(identity) if is_lost_mark(&identity) => {
            return Err(StoreError(
                "a gateway found this store lost acknowledged writes (the identity is marked \
                 lost): run `billpay-gateway store recover`"
                    .into(),
            ))
        }
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
    let used = records.records > 0
        || !store
            .keys_with_prefix(&keys::reference_sequence(""))
            .await?
            .is_empty();
    let counters = if used {
        raise_counters(store, None, clocks, now_ms, &records.largest_sequence).await?
    } else {
        Vec::new()
    };
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
/// have held either sorted set), raises every provider's reference counter to its clock's
/// [`ReferenceClock::recovery_floor`] (above every reference any replica may have sent, see
/// there), to `floor` when an operator gives a higher one, and above the largest sequence
/// number a surviving record holds, records the recovery point (`now_ms`, see
/// [`recovered_at`]), then writes a new identity, which running gateways adopt on their next
/// claim. No reference is handed out before the counters are safe: a counter that was lost
/// lost its identity copy with it, and increments are guarded by the identity.
pub async fn recover(
    store: &dyn Store,
    floor: Option<u64>,
    now_ms: i64,
    clocks: &ReferenceClocks,
) -> Result<Seeded, StoreError> {
    let records = repair_records(store, now_ms).await?;
    let counters = raise_counters(store, floor, clocks, now_ms, &records.largest_sequence).await?;
    // Before the identity: a gateway that adopts the new identity reads the point with it.
    // Never moved back (a second recovery moves it on).
    let point = recovered_at(store).await?.unwrap_or(0).max(now_ms);
    store
        .set(&keys::recovered_at(), point.to_string().as_bytes(), None)
        .await?;
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
        assert!(init(&store, 0, &ReferenceClocks::default())
            .await
            .unwrap()
            .is_some());
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
                reference_sequence: 10_000_000_000 + at as u64,
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
        let recovered = recover(&store, Some(1), now, &ReferenceClocks::default())
            .await
            .unwrap();
        assert_eq!(
            recovered.records,
            Repaired {
                records: 7,
                reindexed: 6,
                rescheduled: 4,
                largest_sequence: [(ProviderId::Interswitch, 10_000_000_006)].into(),
            }
        );
        // Above every reference a surviving record holds, though the floor given was 1.
        assert!(recovered
            .counters
            .contains(&(ProviderId::Interswitch, 10_000_000_007)));
        let onepipe = ReferenceClocks::default().get(ProviderId::OnePipe);
        assert!(recovered
            .counters
            .contains(&(ProviderId::OnePipe, onepipe.recovery_floor(now))));
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
        let again = recover(&store, Some(1), now, &ReferenceClocks::default())
            .await
            .unwrap();
        assert_eq!(again.records.reindexed + again.records.rescheduled, 0);
    }

    #[tokio::test]
    async fn init_once_then_recover_raises_counters_and_changes_identity() {
        let clocks = ReferenceClocks::default();
        let store = MemoryStore::default();
        // The memory store has its identity from the start.
        let first = read(&store).await.unwrap().expect("memory store identity");
        assert_eq!(init(&store, 0, &clocks).await.unwrap(), None);
        let key = keys::reference_sequence(ProviderId::Interswitch.name());
        store.raise_counter(&key, 5_000_000).await.unwrap();
        let recovered = recover(&store, Some(7_000_000), 0, &clocks).await.unwrap();
        assert_ne!(recovered.identity.as_bytes(), first.as_slice());
        assert_eq!(
            read(&store).await.unwrap().unwrap(),
            recovered.identity.as_bytes()
        );
        assert!(recovered
            .counters
            .contains(&(ProviderId::Interswitch, 7_000_000)));
        assert_eq!(recovered_at(&store).await.unwrap(), Some(0));
        // Never lowered by a smaller floor.
        let again = recover(&store, Some(1), 0, &clocks).await.unwrap();
        assert!(again
            .counters
            .contains(&(ProviderId::Interswitch, 7_000_000)));
        assert_eq!(again.counters.len(), ProviderId::ALL.len());
        // Without a floor: the clock's recovery floor, above its ceiling.
        let now_ms = (REFERENCE_EPOCH_SECS + 10_000_000) * 1000;
        let later = recover(&store, None, now_ms, &clocks).await.unwrap();
        let onepipe = clocks.get(ProviderId::OnePipe);
        assert!(later
            .counters
            .contains(&(ProviderId::OnePipe, onepipe.recovery_floor(now_ms))));
        assert!(onepipe.recovery_floor(now_ms) > onepipe.ceiling(now_ms));
        assert!(onepipe.recovery_floor(now_ms) < onepipe.ceiling(now_ms + 3_000));
        assert_eq!(recovered_at(&store).await.unwrap(), Some(now_ms));
        // A new, empty store: init leaves the counters to the clock.
        let fresh = MemoryStore::default();
        fresh.delete(&keys::identity()).await.unwrap();
        let seeded = init(&fresh, now_ms, &clocks)
            .await
            .unwrap()
            .expect("initialised");
        assert!(seeded.counters.is_empty());
        // A used one without identity: raised like a recovery.
        let used = MemoryStore::default();
        used.delete(&keys::identity()).await.unwrap();
        used.raise_counter(&key, 5).await.unwrap();
        let seeded = init(&used, now_ms, &clocks)
            .await
            .unwrap()
            .expect("initialised");
        let isw = clocks.get(ProviderId::Interswitch);
        assert!(seeded
            .counters
            .contains(&(ProviderId::Interswitch, isw.recovery_floor(now_ms))));
        // A store a gateway marked lost sends the operator to recover.
        used.set(&keys::identity(), b"lost:x", None).await.unwrap();
        assert_eq!(read(&used).await.unwrap(), None);
        let e = init(&used, now_ms, &clocks).await.unwrap_err();
        assert!(e.0.contains("store recover"), "{e}");
    }

    #[test]
    fn reference_clock_rates_follow_the_reference_formats() {
        let clocks = ReferenceClocks::default();
        assert_eq!(clocks.get(ProviderId::Interswitch).per_second(), 1);
        assert_eq!(clocks.get(ProviderId::InterIntel).per_second(), 1_000);
        assert_eq!(clocks.get(ProviderId::OnePipe).per_second(), 1_000);
        for (digits, rate) in [(8, 1), (9, 10), (10, 100), (11, 1_000), (16, 1_000)] {
            assert_eq!(
                ReferenceClock::for_capacity(Some(10u64.pow(digits))).per_second(),
                rate
            );
        }
        // Interswitch's 8 digits last until the ceiling reaches 10^8: 2029-12-09.
        let isw = clocks.get(ProviderId::Interswitch);
        let full = isw.allows_at(10u64.pow(8));
        assert_eq!(full, 1_891_491_200_000);
        // allows_at is exactly where the ceiling reaches n.
        let n = isw.ceiling(1_800_000_000_000) + 7;
        let at = isw.allows_at(n);
        assert!(isw.ceiling(at) >= n && isw.ceiling(at - 1) < n);
    }

    /// The proof the recovery floor rests on, run: 10,000 references drawn as fast as the
    /// store answers (a burst far above any rate), the counter lost with everything else, and
    /// `recover` at the same instant starts above every one of them.
    #[tokio::test]
    async fn recover_after_ten_thousand_references_starts_above_every_one() {
        let clocks = ReferenceClocks::default();
        let store = MemoryStore::default();
        let identity = read(&store).await.unwrap().unwrap();
        let now_ms = (REFERENCE_EPOCH_SECS + 1_234_567) * 1000;
        let mut largest = BTreeMapMax::default();
        for provider in ProviderId::ALL {
            let clock = clocks.get(provider);
            let key = keys::reference_sequence(provider.name());
            for _ in 0..2_000 {
                match store
                    .increment_guarded(
                        &keys::identity(),
                        &identity,
                        &key,
                        clock.floor(now_ms),
                        clock.ceiling(now_ms),
                    )
                    .await
                    .unwrap()
                {
                    crate::store::Increment::Issued { value, .. } => largest.note(provider, value),
                    other => panic!("{other:?}"),
                }
            }
        }
        // Everything lost.
        for key in store.keys_with_prefix(keys::PREFIX).await.unwrap() {
            store.delete(&key).await.unwrap();
        }
        let recovered = recover(&store, None, now_ms, &clocks).await.unwrap();
        for (provider, counter) in recovered.counters {
            assert!(counter > largest.0[&provider], "{provider:?}");
        }
    }

    #[derive(Default)]
    struct BTreeMapMax(std::collections::BTreeMap<ProviderId, u64>);

    impl BTreeMapMax {
        fn note(&mut self, provider: ProviderId, value: u64) {
            let v = self.0.entry(provider).or_default();
            *v = (*v).max(value);
        }
    }
}

//! Shared state behind one small [`Store`] trait: idempotency records and the payment journal,
//! catalog caches, sequence numbers and the reconciliation schedule. Three backends pass the
//! same test suite: [`memory::MemoryStore`] (one process, the default), [`redis::RedisStore`]
//! (shared by every replica, chosen by `REDIS_URL`, or on a Redis Cluster by
//! `REDIS_CLUSTER_URLS`) and [`postgres::PostgresStore`] (shared by every replica, chosen by
//! `DATABASE_URL`; the keys below are rows of its `billpay_kv` table and the sorted sets rows
//! of `billpay_schedule`, each operation one SQL statement). A mixed deployment
//! ([`routed::RoutedStore`], `DATABASE_URL` beside `REDIS_URL`) keeps the journal in
//! PostgreSQL and the tokens, catalog copies and leases ([`keys::CACHE_KINDS`]) in Redis.
//!
//! Keys are namespaced and versioned: `billpay:v1:<kind>:<id>` (see [`keys`]), so a change of
//! record format gets a new prefix instead of misreading old values. Lifetimes:
//!
//! | key | holds | TTL |
//! |---|---|---|
//! | `billpay:v1:payment:<payment_id>` | journal entry = idempotency record | none while not final (PENDING, NEEDS_ATTENTION, ...); `payments.record_ttl_ms` (30 days) from when it became final |
//! | `billpay:v1:op:<operation_id>` | idempotency record of an OTP validation, reversal or saved-bill deletion | `payments.record_ttl_ms` |
//! | `billpay:v1:token:<credential>` (+ `:lock`) | a provider's bearer and refresh token; one-request-at-a-time lock | token lifetime + margin; lock 15 s |
//! | `billpay:v1:catalog:<provider>:<list>:<scope>` | cached catalog list | `catalog.keep_ms` (24 h) |
//! | `billpay:v1:catalog:...:refreshing` | one-refresh-at-a-time lock | 30 s |
//! | `billpay:v1:seq:reference:<provider>` | provider reference sequence | none |
//! | `billpay:v1:reconcile` | sorted set: payment id -> next check (unix ms) | none; members removed when final |
//! | `billpay:v1:store:identity` | the store identity (epoch), see below | none |
//! | `billpay:v1:store:recovered_at` | when `store recover` last ran (unix ms): the recovery point | none |
//! | `billpay:v1:store:identity:{<tag>}` | Redis Cluster only: the identity's copy in one hash slot, 16,384 of them | none |
//! | `billpay:v1:events` | Redis stream of payment events (see below) | entries older than `payments.events_retention_ms` (7 days) trimmed every minute |
//! | `billpay:v1:events:trimmed` | id of the newest event retention deleted | none |
//! | `billpay:v1:journal` | sorted set: payment id -> creation time (unix ms), the journal index (operators' and callers' listings) | none; members whose records expired removed by a trim pass every 10 s (`gateway::journal`) and when listed |
//!
//! ## Payment events (the outbox)
//!
//! Every change of a payment record that a caller can see writes a `billpay.v1.PaymentEvent`
//! with it, in one atomic step: [`Store::write_with_event`] does the record's write (the swap,
//! the guarded claim or the put-back) and appends the event, both or neither. A crash between
//! a change and its event is impossible by construction: there is no "between", the two are
//! one Lua script on Redis (which Redis runs alone and never half-applies past its first
//! write), one transaction in PostgreSQL, one critical section in memory. Events are read in
//! order from a resume point ([`Store::read_events`]: the id of the last event read); a read
//! never passes over an event that becomes visible later:
//!
//! - Redis: one stream, `billpay:v1:events`, ids given by `XADD *` inside the script, so in
//!   the order the writes happened. Entry fields: `payment_id`, `caller`, `event` (the
//!   PaymentEvent, protobuf binary, `event_id` empty: the entry id is it). Consumer groups
//!   can read it directly (`XREADGROUP GROUP g c STREAMS billpay:v1:events >`).
//! - PostgreSQL: table `billpay_events`, positions drawn from a one-row counter whose row lock
//!   is held to commit, so they are gapless and commit in order (see
//!   migrations/postgres/0003_events.sql).
//! - Redis Cluster: no events ([`Store::keeps_events`] says why): one stream cannot be written
//!   atomically with payment records spread over every slot, and a stream per slot would leave
//!   readers 16,384 streams to merge. The gateway logs it at startup and the watch RPCs answer
//!   FAILED_PRECONDITION.
//!
//! Retention ([`Store::trim_events`], every minute by each gateway): events older than
//! `payments.events_retention_ms` are deleted, oldest first; the store remembers up to where, and a
//! reader resuming from a deleted event gets [`EventRead::Expired`] rather than a silent gap.
//!
//! ## Detecting data loss
//!
//! Redis can forget what it acknowledged (a restart without persistence, a failover to a
//! lagging replica, a snapshot reload, eviction). A forgotten payment record would let its
//! `request_id` pay twice, so the store carries an identity key, written once by an explicit
//! first-run step (`billpay-gateway store init`; the memory store and `serve --sandbox` write
//! it themselves) and never expiring. Every payment and follow-up claim is
//! [`Store::set_if_absent_guarded`] with the identity as guard: in Redis one Lua script reads
//! the identity and does the `SET NX` atomically, so no claim lands in a store that lost its
//! identity, however the loss and the claim interleave. A missing identity stops every mutating
//! RPC (`UNAVAILABLE`, reason `STORE_DATA_LOST`) and turns PaymentService health NOT_SERVING;
//! reads go on. Every provider reference is drawn the same way, by
//! [`Store::increment_guarded`] with the identity as guard. `billpay-gateway store recover`
//! raises every provider's reference counter above anything used, puts every payment record
//! back in the journal index and every unfinished one back on the reconciliation schedule
//! (either sorted set may have been lost), records the recovery point
//! (`billpay:v1:store:recovered_at`) and writes a new identity; running gateways adopt it on
//! their next claim.
//!
//! A store can also lose a tail of writes while keeping its identity (a cut AOF, a lagging
//! replica promoted). Gateways notice it where it shows: a reference counter below one they
//! already drew, a payment record missing (or still "claimed") when its call's outcome comes
//! back, a retry whose record this process wrote minutes ago is gone. They then put the
//! record back from their own copy and replace the identity with a lost mark
//! ([`identity::LOST_MARK`]), which every replica reads as no identity. Provider references
//! are drawn between a per-provider clock's floor and ceiling ([`identity::ReferenceClock`]),
//! so `store recover` starts above every reference sent even with every counter lost.
//!
//! ## Redis Cluster: which keys share a slot, and why
//!
//! A cluster spreads keys over 16,384 hash slots; a Lua script or transaction may only touch
//! keys of one slot (else CROSSSLOT). Every script here touches one key, except the claim,
//! which reads the identity and writes the claimed key, and the reference counter's guarded
//! increment, which reads the identity and increments the counter. So on a cluster the
//! identity is kept once per slot: `billpay:v1:store:identity:{<tag>}`, where `<tag>` is a
//! short string chosen to hash to that slot ([`slots`]), and the claim of
//! `billpay:v1:payment:<id>` or `billpay:v1:op:<id>` (or the increment of
//! `billpay:v1:seq:reference:<provider>`) uses the copy in that key's own slot: **each guarded
//! key shares a slot with exactly one identity copy, and nothing else shares a slot on
//! purpose**. No other key
//! name changes, and none carries a hash tag: a single Redis keeps its one identity key and
//! its data as before, and cluster slots spread payments evenly.
//!
//! Per-slot copies are also what a cluster needs to detect data loss: a shard that restarts
//! empty (or fails over to an empty replica, or is flushed) loses the copies of its slots,
//! so claims there are refused (`STORE_DATA_LOST`), and so are new provider references when
//! the shard held a provider's counter (restarted from its seed it would reuse references a
//! provider already saw), while the other shards' data and copies stay valid. `store init` writes every copy (the plain identity key decides between racing
//! runs; each run fills the copies still missing with the decided value), `store recover`
//! overwrites every copy (MSET split per slot by the cluster client, 512 per command). The
//! periodic check ([`identity::read`]) reads one copy per range of the slot map (`CLUSTER
//! SLOTS`), so every primary is asked: a shard loses its data whole, never one key (eviction
//! is refused: `maxmemory-policy` must be `noeviction`), and a claim checks its own slot's copy
//! atomically anyway, so safety never rests on the sample. Copies that are missing somewhere
//! or disagree (an interrupted `store recover`) count as no identity until `store recover`
//! completes.
//!
//! The other multi-key operations: the schedule-and-index write at a payment's claim (two
//! sorted sets, different slots) is a pipeline on a single Redis and two concurrent commands
//! on a cluster; `keys_with_prefix` SCANs every primary; the durability check reads `CONFIG`
//! and `ROLE` on every primary and the worst node decides; `WAIT` (`min_replica_acks`) goes
//! to every primary (the cluster client routes it so) and the smallest count is taken, each
//! primary counting the writes this process sent it. The reconciliation schedule
//! (`billpay:v1:reconcile`) and the journal index (`billpay:v1:journal`) stay one key each (so
//! one slot each): measured in BENCHMARKS.md ("Redis Cluster"), a few commands per payment
//! plus one poll per replica per `reconcile_poll_ms` are far from making either a hot key.
//! A shard that loses one of them leaves the payment records on the other shards orphaned;
//! `store recover` rebuilds both from the records ([`identity::repair_records`], `ZADD NX`).

pub mod identity;
pub mod memory;
pub mod postgres;
pub mod postgres_tls;
pub mod posture;
pub mod redis;
pub mod routed;
pub mod slots;
pub mod traced;

pub use posture::{Durability, PostgresDurability, Posture};

use std::time::Duration;

use async_trait::async_trait;

/// The store could not be reached or answered an error. Callers treat it as "unknown": mutating
/// RPCs refuse to run without it.
#[derive(Debug, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

/// What [`Store::set_if_absent_guarded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardedWrite {
    /// The value was written.
    Written,
    /// The key already had a value; nothing was written.
    Exists,
    /// The guard key did not hold the expected value; nothing was written.
    GuardFailed,
}

/// What [`Store::increment_guarded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Increment {
    /// The counter moved from `previous` (0 when it was missing) to `value`.
    Issued { value: u64, previous: u64 },
    /// The guard key did not hold the expected value; nothing changed.
    GuardFailed,
    /// The next value would pass the ceiling; nothing changed. The counter's value.
    AboveCeiling(u64),
}

/// What [`Store::read_guard`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// No copy of the guard exists: a new store (or one that lost everything).
    Absent,
    /// Every copy read holds this value.
    Held(Vec<u8>),
    /// On a cluster: some copies are missing or disagree (a shard lost data, or `store init` /
    /// `store recover` was interrupted or is running). Claims in the slots concerned fail.
    Broken,
}

/// Which copies of a guard [`Store::read_guard`] reads (they differ on a cluster only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardCopies {
    /// One copy per slot range of the cluster's current map: every primary is asked. Enough
    /// for the periodic check, see the module docs.
    OnePerRange,
    /// All 16,384 copies (operator steps).
    Every,
}

/// A record write that carries a payment event ([`Store::write_with_event`]): each kind is
/// one of the plain writes above, done together with the event's append.
#[derive(Debug, Clone, Copy)]
pub enum RecordWrite<'a> {
    /// As [`Store::compare_and_swap_with_ttl`].
    Swap {
        key: &'a str,
        expected: &'a [u8],
        new: &'a [u8],
        ttl: Option<Duration>,
    },
    /// As [`Store::set_if_absent_guarded`].
    GuardedClaim {
        guard_key: &'a str,
        guard_value: &'a [u8],
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    },
    /// As [`Store::set_if_absent`].
    IfAbsent {
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    },
}

/// A payment event to append with a record write.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// The payment it is about.
    pub payment_id: &'a str,
    /// Who may read it (the payment's caller), so readers filter without decoding it.
    pub caller: &'a str,
    /// The encoded `billpay.v1.PaymentEvent` (its event_id empty: the store gives it).
    pub body: &'a [u8],
    /// When it happened (unix ms): what retention counts from.
    pub at_ms: i64,
}

/// A payment event as kept, in the store's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The store's position of the event: a Redis stream entry id (`<ms>-<seq>`), a
    /// PostgreSQL or memory position (decimal). Ordered within one store.
    pub id: String,
    pub payment_id: String,
    pub caller: String,
    pub body: Vec<u8>,
}

/// What [`Store::write_with_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventWrite {
    /// The record and its event were both written; the event's id.
    Written(String),
    /// The swap found another value, or the key exists: nothing written.
    Refused,
    /// A guarded claim's guard did not hold: nothing written.
    GuardFailed,
}

/// What [`Store::read_events`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRead {
    /// The events after the resume point, oldest first (none: nothing new yet).
    Events(Vec<StoredEvent>),
    /// Events after the resume point were trimmed (retention) or lost: reading on would skip
    /// them.
    Expired,
    /// The resume point is not an event id of this store's form.
    Malformed,
}

/// A key-value store with the few atomic operations the gateway needs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value` at `key`, with an optional time to live.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError>;
    /// Writes only when `key` is absent; `true` when this call wrote it (Redis `SET NX`).
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;
    /// Replaces the value only when it still equals `expected`; `true` when replaced. Keeps the
    /// key's time to live.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;
    /// Like [`Store::compare_and_swap`], but also sets the key's time to live: `Some(ttl)`
    /// expires it `ttl` from now, `None` makes it permanent. The journal uses it so that a
    /// payment record expires only once it is final, counted from when it became final.
    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError>;
    /// The payment claim: writes `value` at `key` only when `key` is absent AND the guard
    /// `guard_key` holds `guard_value`, both checked and done in one atomic step (a Lua script
    /// in Redis; on a cluster with the guard's copy in `key`'s slot).
    /// The journal guards every claim with the store identity (see [`identity`]), so a store
    /// that lost its data (identity gone) can never accept a claim for a `request_id` it no
    /// longer remembers.
    async fn set_if_absent_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<GuardedWrite, StoreError>;
    /// Reads the guard `key` (the store identity) that [`Store::set_if_absent_guarded`] checks.
    /// A single node keeps it in `key` itself; a cluster keeps one copy per hash slot (see the
    /// module docs) and `copies` says which of them to read.
    async fn read_guard(&self, key: &str, copies: GuardCopies) -> Result<Guard, StoreError> {
        let _ = copies;
        Ok(match self.get(key).await? {
            Some(value) => Guard::Held(value),
            None => Guard::Absent,
        })
    }
    /// Writes the guard `key` where it is absent (every copy on a cluster); `true` when this
    /// call's `value` is the one kept. Of several racing callers one wins, and the others fill
    /// any copy still missing with the winner's value.
    async fn init_guard(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.set_if_absent(key, value, None).await
    }
    /// Writes `value` as the guard `key`, replacing any (every copy on a cluster).
    async fn replace_guard(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set(key, value, None).await
    }
    /// Raises the counter at `key` to at least `floor` (a missing counter becomes `floor`) and
    /// returns its value; never lowers it. Atomic.
    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError>;
    /// Every key that starts with `prefix` (Redis `SCAN MATCH`; not atomic, for operator
    /// steps only).
    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Moves the counter at `key` to `max(counter + 1, floor)` (a missing counter counts as 0)
    /// and answers the value before and after, only while the guard `guard_key` holds
    /// `guard_value` and the new value stays at or below `ceiling`; checked and done in one
    /// atomic step (a Lua script in Redis; on a cluster with the guard's copy in `key`'s slot,
    /// as [`Store::set_if_absent_guarded`]). The provider reference counters are guarded by
    /// the store identity: on a cluster the shard holding a counter can lose it while the
    /// payment's own shard is healthy, and a counter restarted from nothing would hand out
    /// references a provider already saw. `floor` and `ceiling` come from the reference clock
    /// (see [`identity::ReferenceClock`]): the floor keeps a lost counter from going back
    /// below what the clock (and this process) already used, the ceiling keeps every reference
    /// below what `store recover` will start above.
    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError>;
    /// Adds or moves `member` in the schedule `set`, due at `due_ms` (unix ms).
    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError>;
    /// Adds `member` to `set` at `due_ms` only if it is not there yet (Redis `ZADD NX`);
    /// `true` when this call added it.
    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Adds `member` to each `(set, due_ms)` where it is not there yet, in one round trip
    /// where the store can (a Redis pipeline: not atomic, each entry stands alone; on an error
    /// some may be written). The default adds them one by one.
    async fn schedule_all_if_absent(
        &self,
        entries: &[(&str, i64)],
        member: &str,
    ) -> Result<(), StoreError> {
        for (set, due_ms) in entries {
            self.schedule_if_absent(set, member, *due_ms).await?;
        }
        Ok(())
    }
    /// Up to `limit` members of `set` due at or before `now_ms`, earliest first.
    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` members of `set` with `min_ms <= due < max_ms`, in order, skipping the
    /// first `offset` of them (the journal index is read this way).
    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` members of `set` with `min_ms <= due <= max_ms` (both ends included), each
    /// with its due time, newest first: the highest due first, and of equal ones the greatest
    /// member first (Redis `ZREVRANGEBYSCORE set max min WITHSCORES LIMIT 0 limit`). A caller's
    /// listing of its own payments reads the journal index this way, resuming after the last
    /// entry it read by its (due, member) rather than by a position that moves as entries come
    /// and go.
    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Claims a due member: if `member` is in `set` and due at or before `now_ms`, moves it to
    /// `lease_until_ms` and returns `true`. Of several replicas racing for one entry, exactly
    /// one gets `true`.
    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Removes `member` from the schedule `set`.
    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError>;
    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// What the servers allow about keeping acknowledged writes (Redis `CONFIG GET`, `ROLE`,
    /// `INFO`):
    /// one entry per server that takes writes (every primary of a cluster); empty for a store
    /// where it does not apply (memory).
    async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
        Ok(Vec::new())
    }
    /// Waits until the writes made so far reached `replicas` replicas, at most `timeout`;
    /// returns how many acknowledged them (Redis `WAIT`). A store without replicas answers 0.
    async fn wait_for_replicas(&self, replicas: u32, timeout: Duration) -> Result<u32, StoreError> {
        let _ = (replicas, timeout);
        Ok(0)
    }
    /// Waits until the writes made so far on this connection are fsynced to the server's
    /// append-only file, at most `timeout`; `true` when they are (Redis >= 7.2 `WAITAOF 1 0`,
    /// used with `appendfsync everysec`, see [`posture`]). A store without one answers `false`:
    /// nothing is confirmed on disk.
    async fn wait_for_fsync(&self, timeout: Duration) -> Result<bool, StoreError> {
        let _ = timeout;
        Ok(false)
    }

    // The payment events outbox (see the module docs, "Payment events"). A store that keeps
    // no events answers `Err` to `keeps_events` and the gateway writes records without events.

    /// `Ok` when this store keeps payment events; else why not (said at startup).
    fn keeps_events(&self) -> Result<(), String> {
        Err("this store keeps no payment events".into())
    }
    /// Does `write` and appends `event` in one atomic step: both or neither (a Lua script in
    /// Redis, one transaction in PostgreSQL, one lock in memory).
    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        let _ = (write, event);
        Err(StoreError(
            self.keeps_events()
                .err()
                .unwrap_or_else(|| "payment events not implemented".into()),
        ))
    }
    /// Up to `limit` events recorded after the event `after` (from the oldest kept when
    /// `None`), in order. Never skips one: an event appended later always comes after every
    /// event already readable.
    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        let _ = (after, limit);
        Ok(EventRead::Expired)
    }
    /// The id of the newest event, `None` when there is none.
    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// Returns once an event after `after` may be readable, or after `timeout` (Redis
    /// `XREAD BLOCK` on one connection of its own; PostgreSQL polls; memory is told).
    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let _ = after;
        tokio::time::sleep(timeout).await;
        Ok(())
    }
    /// Deletes the events recorded before `before_ms` (unix ms; Redis: by entry id time,
    /// `XTRIM MINID`). A reader resuming from one of them gets [`EventRead::Expired`].
    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        let _ = before_ms;
        Ok(())
    }
}

/// Key layout, in one place.
pub mod keys {
    /// Prefix of every key; bump the version when a stored format changes.
    pub const PREFIX: &str = "billpay:v1";

    /// The payment journal entry, which is also the idempotency record of its `request_id`.
    pub fn payment(payment_id: &str) -> String {
        format!("{PREFIX}:payment:{payment_id}")
    }

    /// The idempotency record of a follow-up operation (OTP validation, reversal, saved-bill
    /// deletion), keyed by a hash of its own `request_id`.
    pub fn operation(operation_id: &str) -> String {
        format!("{PREFIX}:op:{operation_id}")
    }
    /// A provider's bearer token for one credential (with its refresh token).
    pub fn token(credential: &str) -> String {
        format!("{PREFIX}:token:{credential}")
    }
    /// A cached catalog list.
    pub fn catalog(provider: &str, what: &str, scope: &str) -> String {
        format!("{PREFIX}:catalog:{provider}:{what}:{scope}")
    }

    /// The lease (and shared result) of one customer validation before a payment's claim,
    /// by payment id and order fingerprint (see `gateway::lease`).
    pub fn validation_lease(payment_id: &str, fingerprint: &str) -> String {
        format!("{PREFIX}:lease:validate:{payment_id}:{fingerprint}")
    }

    /// The kinds of key whose loss can never let a payment happen twice: provider tokens (and
    /// their locks), catalog copies (and their refresh locks) and validation leases. A mixed
    /// deployment ([`super::routed::RoutedStore`]) keeps these in Redis or memory and every
    /// other key (the journal) in PostgreSQL.
    pub const CACHE_KINDS: [&str; 3] = ["token", "catalog", "lease"];

    /// Whether `key` (or, for a prefix search, every key starting with it) is of one of the
    /// [`CACHE_KINDS`].
    pub fn is_cache(key: &str) -> bool {
        let Some(rest) = key.strip_prefix(PREFIX).and_then(|r| r.strip_prefix(':')) else {
            return false;
        };
        CACHE_KINDS.iter().any(|kind| {
            rest.strip_prefix(kind)
                .is_some_and(|after| after.starts_with(':'))
        })
    }

    /// The sequence that numbers a provider's payment references.
    pub fn reference_sequence(provider: &str) -> String {
        format!("{PREFIX}:seq:reference:{provider}")
    }

    /// The schedule of payments waiting for a status check.
    pub fn reconcile_schedule() -> String {
        format!("{PREFIX}:reconcile")
    }

    /// The journal index: sorted set of payment id -> creation time (unix ms), read by the
    /// operators' listing and by each caller's listing of its own payments.
    pub fn journal_index() -> String {
        format!("{PREFIX}:journal")
    }

    /// The NATS relay's last published event id for `stream` (used only when the stream has
    /// no message left to resume from; see `crate::relay`).
    pub fn relay_checkpoint(stream: &str) -> String {
        format!("{PREFIX}:events:relay:{stream}:checkpoint")
    }

    /// The lease that lets one replica at a time relay events to `stream`.
    pub fn relay_lease(stream: &str) -> String {
        format!("{PREFIX}:events:relay:{stream}:lease")
    }

    /// When `store recover` last ran (unix ms): requests created before it are refused.
    pub fn recovered_at() -> String {
        format!("{PREFIX}:store:recovered_at")
    }

    /// The store identity (epoch): written once per store, never expires. Its absence means
    /// the store lost data (see [`super::identity`]).
    pub fn identity() -> String {
        format!("{PREFIX}:store:identity")
    }

    /// The payment events stream (Redis; PostgreSQL keeps them in `billpay_events`).
    pub fn events() -> String {
        format!("{PREFIX}:events")
    }

    /// Redis: the id of the newest event retention deleted (the trim mark).
    pub fn events_trimmed() -> String {
        format!("{PREFIX}:events:trimmed")
    }
}

#[doc(hidden)]
pub mod contract;

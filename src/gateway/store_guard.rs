//! The gateway's guard over its store: before money moves, the store must answer, still hold
//! its identity (else it lost data: STORE_DATA_LOST until `store recover`), have a durability
//! posture that loses no acknowledged write, or one an operator accepted by name (see
//! [`crate::store::posture`]; else STORE_POSTURE_REFUSED), read again at least every
//! `posture_recheck_ms` and after a reconnect, and, with `min_replica_acks` or `WAITAOF`, have
//! replicated or fsynced the claim and in-flight writes. Every claim of a payment or follow-up
//! goes through [`Gateway::guarded_claim`], every provider reference through
//! `Gateway::next_reference` (the reference clock and the per-process watermark), every
//! provider call through [`Gateway::before_send`]; a write the store lost raises the store-loss
//! alarm (`Gateway::store_loss_detected`); the server's health watch asks
//! [`Gateway::store_health`].

use std::time::Duration;

use super::Gateway;
use crate::domain::ProviderId;
use crate::error::GatewayError;
use crate::store::posture::{self, LossWindow, Posture, PosturePolicy};

/// What the gateway asks of the store's durability (`[store]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorePolicy {
    /// Replicas that must acknowledge claim and in-flight writes; 0: no waiting.
    pub min_replica_acks: u32,
    /// How long to wait for them (and for `WAITAOF`).
    pub replica_ack_timeout: Duration,
    /// The loss window an operator accepted by name (`[store] accept_loss_window`).
    pub accept_loss_window: Option<LossWindow>,
    /// How often the posture is read again; no payment is sent on an older read.
    pub posture_recheck: Duration,
}

impl Default for StorePolicy {
    fn default() -> Self {
        Self {
            min_replica_acks: 0,
            replica_ack_timeout: Duration::from_millis(500),
            accept_loss_window: None,
            posture_recheck: Duration::from_secs(10),
        }
    }
}

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
    /// Sets what the gateway asks of the store's durability; the posture is judged again at
    /// its next use.
    pub fn set_store_policy(&self, policy: StorePolicy) {
        *self.store_policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
        self.posture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reread = true;
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
                self.posture
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .reread = true;
                return StoreHealth::Unreachable;
            }
        }
        match self.check_posture().await {
            Ok(_) => StoreHealth::Up,
            Err(GatewayError::StoreUnfit { .. }) => StoreHealth::Refused,
            Err(_) => StoreHealth::Unreachable,
        }
    }

    /// The store's posture, read again when the last read is older than `posture_recheck` or a
    /// reconnect happened; [`GatewayError::StoreUnfit`] when it is refused for payments (logged
    /// when it changes: an error when refused, a warning for an accepted loss window; exported
    /// as `billpay_store_posture`). A store that cannot be read is a store error: nothing is
    /// sent on a posture read longer ago than the recheck.
    pub(crate) async fn check_posture(&self) -> Result<Posture, GatewayError> {
        let policy = self.policy();
        let cached = self
            .posture
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fresh(policy.posture_recheck);
        let posture = match cached {
            Some(posture) => posture,
            None => {
                // Every server that takes writes (each primary of a cluster): the worst decides.
                let durability = self.store.durability().await?;
                let posture = posture::assess(
                    &durability,
                    &PosturePolicy {
                        min_replica_acks: policy.min_replica_acks,
                        accept_loss_window: policy.accept_loss_window,
                        simulated: self.sandbox,
                    },
                );
                let mut cache = self.posture.lock().unwrap_or_else(|p| p.into_inner());
                let before = cache.last.as_ref().map(|(p, _)| p.clone());
                if before.as_ref() != Some(&posture) {
                    report(&posture);
                    posture::export(before.as_ref(), &posture);
                }
                cache.last = Some((posture.clone(), tokio::time::Instant::now()));
                cache.reread = false;
                posture
            }
        };
        if posture.accepted() {
            return Ok(posture);
        }
        Err(GatewayError::StoreUnfit {
            posture: posture.name.clone(),
            why: posture.why.clone(),
            last_read_ago_ms: self
                .posture
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_read_ago_ms()
                .unwrap_or_default(),
        })
    }

    /// The store posture as last read, if it was.
    pub fn last_store_posture(&self) -> Option<Posture> {
        let cache = self.posture.lock().unwrap_or_else(|p| p.into_inner());
        cache.last.as_ref().map(|(p, _)| p.clone())
    }

    /// Right before a provider is called, after the claim and in-flight mark were written: the
    /// posture must still be accepted (read again if the last read is older than the recheck),
    /// and the writes must be on the replicas (`min_replica_acks`) or on disk (`WAITAOF`, when
    /// the posture relies on it). Any failure: nothing is sent.
    pub(crate) async fn before_send(&self) -> Result<(), GatewayError> {
        let posture = match self.check_posture().await {
            Ok(posture) => posture,
            Err(e) => {
                if matches!(e, GatewayError::StoreUnfit { .. }) {
                    crate::metrics::global().store_posture_refusals.inc();
                    tracing::warn!(error = %e, "payment not sent: store posture refused");
                }
                return Err(e);
            }
        };
        self.replicate().await?;
        if posture.wait_aof {
            let timeout = self.policy().replica_ack_timeout;
            if !self.store.wait_for_fsync(timeout).await? {
                tracing::error!("store write not fsynced in time (WAITAOF): not sent");
                return Err(GatewayError::Store(crate::store::StoreError(format!(
                    "write not fsynced to the append-only file within {} ms",
                    timeout.as_millis()
                ))));
            }
        }
        Ok(())
    }

    /// Reads the store identity. A missing one is a data loss: reported (error log, metric)
    /// once, and answered [`GatewayError::StoreDataLost`]. A new identity (written by `store
    /// recover`) is adopted.
    pub(crate) async fn current_identity(&self) -> Result<Vec<u8>, GatewayError> {
        use std::sync::atomic::Ordering;
        match crate::store::identity::read(self.store.as_ref()).await? {
            Some(identity) => {
                let adopted = self.known_identity().as_ref() != Some(&identity);
                if adopted {
                    // The recovery point goes with the identity (`store recover` writes it
                    // first): read before the identity is known, so whoever claims under
                    // this identity checks against its point.
                    let point = crate::store::identity::recovered_at(self.store.as_ref())
                        .await?
                        .unwrap_or(0);
                    self.recovered_at
                        .fetch_max(point, std::sync::atomic::Ordering::SeqCst);
                }
                let mut known = self.identity.lock().unwrap_or_else(|p| p.into_inner());
                if adopted && known.is_some() {
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

    /// Refuses a request created (`created_at_ms`, unix ms) before the store's recovery point:
    /// it may have been paid before the store lost its record. `what`: the request, named in
    /// the error.
    pub(crate) fn check_created_after_recovery(
        &self,
        what: &str,
        created_at_ms: Option<i64>,
    ) -> Result<(), GatewayError> {
        let recovered_at_ms = self.recovered_at.load(std::sync::atomic::Ordering::SeqCst);
        match created_at_ms {
            Some(created_at_ms) if recovered_at_ms > 0 && created_at_ms < recovered_at_ms => {
                tracing::warn!(
                    what,
                    created_at_ms,
                    recovered_at_ms,
                    "request created before the store's recovery refused: it may have been paid before the loss"
                );
                Err(GatewayError::RequestPredatesRecovery {
                    request_id: what.to_owned(),
                    created_at_ms,
                    recovered_at_ms,
                })
            }
            _ => Ok(()),
        }
    }

    /// The store identity as last checked: the known one while no data loss was found (no
    /// round trip), else read from the store.
    pub(crate) async fn checked_identity(&self) -> Result<Vec<u8>, GatewayError> {
        let lost = self.data_lost.load(std::sync::atomic::Ordering::SeqCst);
        match self.known_identity() {
            Some(identity) if !lost => Ok(identity),
            _ => self.current_identity().await,
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
        self.guarded_claim_since(key, value, ttl, None, None).await
    }

    /// [`Self::guarded_claim`] of a request (`created`: its request_id and creation time, unix
    /// ms, when the request says): refused with [`GatewayError::RequestPredatesRecovery`] when that is
    /// before the recovery point of the identity the claim is guarded by. Checked before each
    /// attempt against the identity it uses, so a recovery that lands between the caller's
    /// first look and the claim is never missed.
    pub(crate) async fn guarded_claim_since(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        created: Option<(&str, i64)>,
        event: Option<crate::store::NewEvent<'_>>,
    ) -> Result<bool, GatewayError> {
        use crate::store::GuardedWrite;
        self.check_posture().await?;
        let mut identity = match self.known_identity() {
            Some(identity) => identity,
            None => self.current_identity().await?,
        };
        // Twice at most: the second time with an identity `store recover` wrote meanwhile.
        for _ in 0..2 {
            if let Some((request_id, created_at_ms)) = created {
                self.check_created_after_recovery(request_id, Some(created_at_ms))?;
            }
            let guard_key = crate::store::keys::identity();
            let written = match event {
                // The claim and its event (the payment's creation), in one atomic step.
                Some(event) => self
                    .store
                    .write_with_event(
                        crate::store::RecordWrite::GuardedClaim {
                            guard_key: &guard_key,
                            guard_value: &identity,
                            key,
                            value,
                            ttl,
                        },
                        event,
                    )
                    .await
                    .map(|written| match written {
                        crate::store::EventWrite::Written(_) => GuardedWrite::Written,
                        crate::store::EventWrite::Refused => GuardedWrite::Exists,
                        crate::store::EventWrite::GuardFailed => GuardedWrite::GuardFailed,
                    }),
                None => {
                    self.store
                        .set_if_absent_guarded(&guard_key, &identity, key, value, ttl)
                        .await
                }
            };
            match written {
                Ok(GuardedWrite::Written) => {
                    self.replicate().await?;
                    return Ok(true);
                }
                // "Exists" may be this claim's own write: a client that resends a command
                // after a broken connection (the cluster client does) gets "exists" for a
                // write that landed the first time.
                Ok(GuardedWrite::Exists) => return self.claimed_by_this(key, value, None).await,
                Ok(GuardedWrite::GuardFailed) => identity = self.current_identity().await?,
                // The write may have landed with its answer lost: look before giving up.
                Err(e) => return self.claimed_by_this(key, value, Some(e)).await,
            }
        }
        Err(GatewayError::StoreDataLost)
    }

    /// After a claim that did not plainly say "written": whether the record at `key` is this
    /// claim's own. Only this claimer wrote these bytes (a payment's fresh provider reference,
    /// a follow-up's claim token), so finding them means the claim won; it then waits for the
    /// replicas like a plain win. `error`: the claim's own error, answered when the key cannot
    /// be read.
    async fn claimed_by_this(
        &self,
        key: &str,
        value: &[u8],
        error: Option<crate::store::StoreError>,
    ) -> Result<bool, GatewayError> {
        match self.store.get(key).await {
            Ok(Some(stored)) if stored == value => {
                self.replicate().await?;
                Ok(true)
            }
            Ok(Some(_)) => Ok(false),
            Ok(None) => match error {
                Some(e) => Err(e.into()),
                // "Exists" and then gone: an expired or deleted record; not this claim's.
                None => Ok(false),
            },
            Err(read) => Err(error.unwrap_or(read).into()),
        }
    }

    /// The next sequence number of `provider`'s references, drawn from its counter in the
    /// store, guarded atomically by the store identity like a claim (on a cluster the
    /// counter's shard can lose it while the payment's own shard is healthy), and held between
    /// its reference clock's floor and ceiling (see [`ReferenceClock`]). Beyond the ceiling it
    /// waits for the clock, at most [`ReferenceClock::MAX_WAIT`], then answers
    /// [`GatewayError::ReferenceRateExceeded`].
    ///
    /// A counter never goes back in a store that keeps its writes, so one that answers below a
    /// number this process already drew lost writes (a restart that replayed a cut AOF, a
    /// failover to a lagging replica): the store-loss alarm is raised and
    /// [`GatewayError::StoreDataLost`] answered. The floor given to the store is above that
    /// number anyway, so even then no reference this process used comes out twice.
    ///
    /// [`ReferenceClock`]: crate::store::identity::ReferenceClock
    /// [`ReferenceClock::MAX_WAIT`]: crate::store::identity::ReferenceClock::MAX_WAIT
    pub(crate) async fn next_reference(&self, provider: ProviderId) -> Result<u64, GatewayError> {
        use crate::store::{identity::ReferenceClock, Increment};
        let key = crate::store::keys::reference_sequence(provider.name());
        let clock = self.reference_clocks.get(provider);
        let give_up = tokio::time::Instant::now() + ReferenceClock::MAX_WAIT;
        let mut identity = match self.known_identity() {
            Some(identity) => identity,
            None => self.current_identity().await?,
        };
        let mut guard_failures = 0;
        loop {
            let now = self.clock.now_ms();
            let drawn = self.watermark(provider);
            let floor = clock.floor(now).max(drawn.saturating_add(1));
            let guard = crate::store::keys::identity();
            match self
                .store
                .increment_guarded(&guard, &identity, &key, floor, clock.ceiling(now))
                .await?
            {
                Increment::Issued { value, previous } => {
                    if previous < drawn {
                        self.store_loss_detected(
                            "reference_counter_behind",
                            &identity,
                            &format!(
                                "{provider} reference counter answered {previous}, below {drawn} \
                                 this gateway already used"
                            ),
                        )
                        .await;
                        return Err(GatewayError::StoreDataLost);
                    }
                    self.note_watermark(provider, value);
                    return Ok(value);
                }
                Increment::GuardFailed => {
                    // Twice at most: the second time with an identity `store recover` wrote
                    // meanwhile.
                    guard_failures += 1;
                    if guard_failures == 2 {
                        return Err(GatewayError::StoreDataLost);
                    }
                    identity = self.current_identity().await?;
                }
                Increment::AboveCeiling(current) => {
                    let wait_ms = clock.allows_at(current.saturating_add(1)) - now;
                    let wait = Duration::from_millis(wait_ms.max(1) as u64);
                    if tokio::time::Instant::now() + wait > give_up {
                        tracing::warn!(
                            %provider,
                            counter = current,
                            per_second = clock.per_second(),
                            wait_ms,
                            "payment refused: references ran a full reserve ahead of the reference clock"
                        );
                        return Err(GatewayError::ReferenceRateExceeded {
                            provider,
                            retry_after: wait,
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The largest reference sequence number this process drew for `provider` (0: none).
    fn watermark(&self, provider: ProviderId) -> u64 {
        self.watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&provider)
            .copied()
            .unwrap_or(0)
    }

    fn note_watermark(&self, provider: ProviderId, value: u64) {
        let mut marks = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
        let mark = marks.entry(provider).or_default();
        *mark = (*mark).max(value);
    }

    /// The store-loss alarm for writes the store acknowledged and then lost while its identity
    /// stayed (`how`: what showed it; `what`: details for the log). Logged at error level and
    /// counted (`billpay_store_losses_detected_total{how}`). When the store still holds the
    /// identity the lost write was made under (`under`), that identity is replaced by a lost
    /// mark ([`LOST_MARK`]), so every replica stops taking payments (STORE_DATA_LOST, health
    /// NOT_SERVING) until an operator runs `store recover`. An identity that changed since (a
    /// recovery ran, or the store lost it too) means the loss is already known: nothing more.
    ///
    /// [`LOST_MARK`]: crate::store::identity::LOST_MARK
    pub(crate) async fn store_loss_detected(&self, how: &'static str, under: &[u8], what: &str) {
        crate::metrics::global()
            .store_losses_detected
            .get_or_create(&crate::metrics::LossHow {
                how: how.to_owned(),
            })
            .inc();
        let current = crate::store::identity::read(self.store.as_ref()).await;
        let same = matches!(&current, Ok(Some(identity)) if identity.as_slice() == under);
        tracing::error!(
            how,
            what,
            alarm = same,
            "the store lost writes it had acknowledged: payments stop (STORE_DATA_LOST) until \
             an operator runs `billpay-gateway store recover`"
        );
        if !same {
            return;
        }
        let mark = format!(
            "{}{}",
            crate::store::identity::LOST_MARK,
            String::from_utf8_lossy(under)
        );
        if let Err(e) = self
            .store
            .replace_guard(&crate::store::keys::identity(), mark.as_bytes())
            .await
        {
            tracing::error!(error = %e, "could not mark the store identity lost");
        }
        // Every mutating RPC of this process now reads the identity, and finds none.
        let _ = self.current_identity().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{
        identity::{ReferenceClock, ReferenceClocks},
        keys,
        memory::MemoryStore,
        Store,
    };

    fn gateway(store: Arc<dyn Store>) -> Arc<Gateway> {
        Gateway::new(
            Default::default(),
            store,
            Default::default(),
            Default::default(),
            false,
        )
    }

    /// References a full reserve ahead of the clock wait for it (paused time: the wait is
    /// the clock's, not the test's), and are refused when the wait would be too long.
    #[tokio::test(start_paused = true)]
    async fn references_past_the_ceiling_wait_for_the_clock_or_are_refused() {
        let store = Arc::new(MemoryStore::default());
        let gw = gateway(store.clone());
        let clock = ReferenceClocks::default().get(ProviderId::Interswitch);
        let key = keys::reference_sequence(ProviderId::Interswitch.name());
        let now = gw.clock.now_ms();
        // Two references past the ceiling: about 2 s of the 1-a-second clock.
        let at = clock.ceiling(now) + 1;
        store
            .set(&key, at.to_string().as_bytes(), None)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let drawn = gw.next_reference(ProviderId::Interswitch).await.unwrap();
        assert_eq!(drawn, at + 1);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(1) && waited <= ReferenceClock::MAX_WAIT);
        // Far past it: refused at once, with when to retry.
        let far = clock.ceiling(gw.clock.now_ms()) + 1_000;
        store
            .set(&key, far.to_string().as_bytes(), None)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        match gw.next_reference(ProviderId::Interswitch).await {
            Err(GatewayError::ReferenceRateExceeded {
                provider,
                retry_after,
            }) => {
                assert_eq!(provider, ProviderId::Interswitch);
                assert!(retry_after > Duration::from_secs(900), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(far.to_string().into_bytes()),
            "nothing drawn"
        );
    }

    /// A counter that answers below what this process drew is a store loss: no reference,
    /// STORE_DATA_LOST, the identity marked lost for every replica.
    #[tokio::test]
    async fn a_counter_behind_this_process_raises_the_alarm() {
        let store = Arc::new(MemoryStore::default());
        let gw = gateway(store.clone());
        let first = gw.next_reference(ProviderId::OnePipe).await.unwrap();
        let second = gw.next_reference(ProviderId::OnePipe).await.unwrap();
        assert!(second > first);
        let key = keys::reference_sequence(ProviderId::OnePipe.name());
        store
            .set(&key, (first - 1).to_string().as_bytes(), None)
            .await
            .unwrap();
        assert!(matches!(
            gw.next_reference(ProviderId::OnePipe).await,
            Err(GatewayError::StoreDataLost)
        ));
        let identity = store.get(&keys::identity()).await.unwrap().unwrap();
        assert!(crate::store::identity::is_lost_mark(&identity));
        assert_eq!(gw.store_health().await, StoreHealth::DataLost);
    }
}

/// Logs a posture just read that differs from the last one.
fn report(posture: &Posture) {
    use crate::store::posture::Verdict;
    match posture.verdict {
        Verdict::Refused => tracing::error!(
            posture = %posture.name,
            why = %posture.why,
            "store refused for payments: payments NOT_SERVING until it is fixed"
        ),
        Verdict::OptIn | Verdict::Sandbox => tracing::warn!(
            posture = %posture.name,
            why = %posture.why,
            "store has a loss window: accepted"
        ),
        Verdict::Accepted => {
            tracing::info!(posture = %posture.name, "store durability posture accepted")
        }
    }
    if !posture.summary.is_empty() {
        tracing::info!(settings = %posture.summary, "store durability settings");
    }
    for why in &posture.warnings {
        tracing::warn!(why, "store durability is weak");
    }
}

#[cfg(test)]
mod waitaof_tests {
    //! The WAITAOF path (Redis >= 7.2 with `appendfsync everysec`) cannot run against this
    //! machine's Redis 7.0: a store that reports 7.2 settings and answers `WAITAOF` as told
    //! checks that the gateway waits before every send and sends nothing when the wait fails.

    use std::sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc,
    };

    use super::*;
    use crate::store::{memory::MemoryStore, Durability, GuardedWrite, Store, StoreError};

    /// The memory store, reporting the durability settings `version` with `appendfsync
    /// everysec`, and answering `WAITAOF` with `fsynced`.
    struct EverysecRedis {
        inner: MemoryStore,
        version: std::sync::Mutex<&'static str>,
        fsynced: AtomicBool,
        waits: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Store for EverysecRedis {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key).await
        }
        async fn set(&self, k: &str, v: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
            self.inner.set(k, v, ttl).await
        }
        async fn set_if_absent(
            &self,
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
        ) -> Result<bool, StoreError> {
            self.inner.set_if_absent(k, v, ttl).await
        }
        async fn compare_and_swap(&self, k: &str, e: &[u8], n: &[u8]) -> Result<bool, StoreError> {
            self.inner.compare_and_swap(k, e, n).await
        }
        async fn compare_and_swap_with_ttl(
            &self,
            k: &str,
            e: &[u8],
            n: &[u8],
            ttl: Option<Duration>,
        ) -> Result<bool, StoreError> {
            self.inner.compare_and_swap_with_ttl(k, e, n, ttl).await
        }
        async fn set_if_absent_guarded(
            &self,
            gk: &str,
            gv: &[u8],
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
        ) -> Result<GuardedWrite, StoreError> {
            self.inner.set_if_absent_guarded(gk, gv, k, v, ttl).await
        }
        async fn raise_counter(&self, k: &str, floor: u64) -> Result<u64, StoreError> {
            self.inner.raise_counter(k, floor).await
        }
        async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.inner.keys_with_prefix(prefix).await
        }
        async fn delete(&self, k: &str) -> Result<(), StoreError> {
            self.inner.delete(k).await
        }
        async fn increment_guarded(
            &self,
            gk: &str,
            gv: &[u8],
            k: &str,
            floor: u64,
            ceiling: u64,
        ) -> Result<crate::store::Increment, StoreError> {
            self.inner
                .increment_guarded(gk, gv, k, floor, ceiling)
                .await
        }
        async fn schedule(&self, set: &str, m: &str, due: i64) -> Result<(), StoreError> {
            self.inner.schedule(set, m, due).await
        }
        async fn schedule_if_absent(
            &self,
            set: &str,
            m: &str,
            due: i64,
        ) -> Result<bool, StoreError> {
            self.inner.schedule_if_absent(set, m, due).await
        }
        async fn due(&self, set: &str, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
            self.inner.due(set, now, limit).await
        }
        async fn range(
            &self,
            set: &str,
            min: i64,
            max: i64,
            offset: usize,
            limit: usize,
        ) -> Result<Vec<String>, StoreError> {
            self.inner.range(set, min, max, offset, limit).await
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
            m: &str,
            now: i64,
            lease: i64,
        ) -> Result<bool, StoreError> {
            self.inner.claim_due(set, m, now, lease).await
        }
        async fn unschedule(&self, set: &str, m: &str) -> Result<(), StoreError> {
            self.inner.unschedule(set, m).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }
        async fn durability(&self) -> Result<Vec<Durability>, StoreError> {
            Ok(vec![Durability {
                appendonly: Some("yes".into()),
                appendfsync: Some("everysec".into()),
                save: Some(String::new()),
                maxmemory_policy: Some("noeviction".into()),
                role: Some("master".into()),
                node: None,
                redis_version: Some((*self.version.lock().unwrap()).into()),
                connected_replicas: Some(0),
                min_replicas_to_write: Some(0),
                postgres: None,
            }])
        }
        async fn wait_for_fsync(&self, _timeout: Duration) -> Result<bool, StoreError> {
            self.waits.fetch_add(1, Ordering::SeqCst);
            Ok(self.fsynced.load(Ordering::SeqCst))
        }
    }

    fn over(version: &'static str) -> (Arc<Gateway>, Arc<EverysecRedis>) {
        let store = Arc::new(EverysecRedis {
            inner: MemoryStore::default(),
            version: std::sync::Mutex::new(version),
            fsynced: AtomicBool::new(true),
            waits: AtomicU32::new(0),
        });
        let gateway = Gateway::new(
            Default::default(),
            store.clone(),
            Default::default(),
            Default::default(),
            false,
        );
        (gateway, store)
    }

    #[tokio::test]
    async fn everysec_on_redis_7_2_waits_for_the_fsync_before_every_send() {
        let (gateway, store) = over("7.2.4");
        assert_eq!(gateway.check_posture().await.unwrap().name, "waitaof");
        gateway.before_send().await.unwrap();
        gateway.before_send().await.unwrap();
        assert_eq!(store.waits.load(Ordering::SeqCst), 2);
        // Not fsynced in time: nothing may be sent.
        store.fsynced.store(false, Ordering::SeqCst);
        let refused = gateway.before_send().await.unwrap_err();
        assert!(matches!(refused, GatewayError::Store(_)), "{refused:?}");
        assert_eq!(store.waits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn everysec_before_redis_7_2_is_refused_without_waiting() {
        let (gateway, store) = over("7.0.15");
        let refused = gateway.before_send().await.unwrap_err();
        assert!(
            matches!(&refused, GatewayError::StoreUnfit { posture, .. } if posture == "everysec"),
            "{refused:?}"
        );
        assert_eq!(store.waits.load(Ordering::SeqCst), 0);
        // Opted in: sent without waiting (the window is accepted, not closed).
        gateway.set_store_policy(StorePolicy {
            accept_loss_window: Some(LossWindow::Everysec),
            ..StorePolicy::default()
        });
        gateway.before_send().await.unwrap();
        assert_eq!(store.waits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_posture_older_than_the_recheck_is_read_again_before_a_send() {
        let (gateway, store) = over("7.2.4");
        gateway.before_send().await.unwrap();
        // A failover to an older Redis: the cached posture holds until the recheck (10 s).
        *store.version.lock().unwrap() = "7.0.15";
        tokio::time::advance(Duration::from_millis(9_999)).await;
        gateway.before_send().await.unwrap();
        tokio::time::advance(Duration::from_millis(1)).await;
        let refused = gateway.before_send().await.unwrap_err();
        assert!(
            matches!(
                &refused,
                GatewayError::StoreUnfit { posture, last_read_ago_ms: 0, .. } if posture == "everysec"
            ),
            "{refused:?}"
        );
    }
}

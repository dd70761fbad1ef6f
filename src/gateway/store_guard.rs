//! The gateway's guard over its store: before money moves, the store must answer, still hold
//! its identity (else it lost data: STORE_DATA_LOST until `store recover`), have durability
//! settings fit for payments (no evicting `maxmemory-policy`, not a replica; persistence warned
//! about or required), and, with `min_replica_acks`, have replicated the claim and in-flight
//! writes. Every claim of a payment or follow-up goes through [`Gateway::guarded_claim`], every
//! provider reference through `Gateway::next_reference` (the reference clock and the
//! per-process watermark); a write the store lost raises the store-loss alarm
//! (`Gateway::store_loss_detected`); the server's health watch asks [`Gateway::store_health`].

use std::time::Duration;

use super::Gateway;
use crate::domain::ProviderId;
use crate::error::GatewayError;

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
                // Every server that takes writes (each primary of a cluster): the worst decides.
                let durability = self.store.durability().await?;
                let posture = Posture::worst(durability.iter().map(|d| d.posture(require)));
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
        self.guarded_claim_since(key, value, ttl, None).await
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
            let written = self
                .store
                .set_if_absent_guarded(&crate::store::keys::identity(), &identity, key, value, ttl)
                .await;
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

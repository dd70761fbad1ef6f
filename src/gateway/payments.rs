//! The payment journal and idempotency.
//!
//! One store key per payment holds both the idempotency record and the journal entry: the
//! payment id is derived from `request_id`, and the record is claimed with `SET NX` before the
//! provider is called, with the provider reference already in it. Exactly one caller wins the
//! claim and makes the one provider call; the others replay the record, or are told the request
//! is in flight, or that the key was used for a different request.
//!
//! A record's call moves Claimed -> InFlight -> Returned, each step a compare-and-swap. The
//! provider is called only after the InFlight write is confirmed, so a record a dead replica
//! left Claimed was never sent, unless the store lost the InFlight write: reconciliation fails
//! it ("never sent, no money moved") only once the provider does not know its reference (or,
//! for a provider without status queries, the store kept the identity it was claimed under),
//! and reconciles it otherwise. One left InFlight is asked about. Claim and call run in a detached task: when the caller's deadline is
//! near, the RPC answers with the PENDING record and the call carries on and records its
//! outcome.

use std::{sync::Arc, time::Duration};
use tracing::Instrument;

use tokio::sync::oneshot;

use super::events::Cause;
use super::{ms, Gateway};
use crate::domain::{
    directory::RouteAttempt,
    payment::{CallPhase, PaymentKind},
    Capability, PaymentOrder, PaymentOutcome, PaymentRecord, PaymentSecrets, PaymentState, Product,
    Provider, ProviderError, Resource,
};
use crate::error::{FieldViolation, GatewayError};
use crate::store::{keys, EventWrite, NewEvent, RecordWrite, StoreError};

/// Where an outcome comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The one payment call.
    Payment,
    /// A status query made for GetPayment.
    Query,
    /// A status query made by reconciliation: a step of the schedule.
    ScheduledQuery,
}

/// The result of claiming a payment id.
pub(super) enum Claim {
    /// This call wrote the record (these bytes) and makes the provider call.
    Won(PaymentRecord, Vec<u8>),
    /// Another call had claimed it: its record, replayed for this request.
    Replay(Result<PaymentRecord, GatewayError>),
}

/// How a payment call ended.
pub(super) enum CallEnd {
    /// Its outcome is recorded (`None`: not recorded, or not called; the journal says).
    Recorded(Option<Box<PaymentRecord>>),
    /// A routed call refused before anything was sent, not recorded yet: `known` are the bytes
    /// of the in-flight record, `why` the refusal.
    NotSent { known: Option<Vec<u8>>, why: String },
}

/// What a routed payment's claim records besides the order: its directory biller and the
/// routes refused before it.
pub(super) struct RouteClaim {
    pub(super) directory_biller_id: String,
    pub(super) attempts: Vec<RouteAttempt>,
}

/// Awaits `f`, giving up at `deadline` (never, when `None`).
pub(super) async fn within<F: std::future::Future>(
    deadline: Option<tokio::time::Instant>,
    f: F,
) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, f).await.ok(),
        None => Some(f.await),
    }
}

/// What an update does to a payment's place on the reconciliation schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Move it to its next backoff step (or off the schedule when settled).
    Step,
    /// Leave its due time alone unless it is settled: a GetPayment poll or the start of the
    /// call must not postpone the next scheduled check.
    Keep,
}

/// Counts a recorded payment state.
fn count_outcome(record: &PaymentRecord) {
    crate::metrics::global()
        .payment_outcomes
        .get_or_create(&crate::metrics::PaymentLabels {
            provider: record.order.provider.name().to_owned(),
            state: record.state.name().to_owned(),
        })
        .inc();
}

/// Logs and counts a provider answer that contradicts a final payment (which keeps its
/// state): money may have moved differently from what the journal says.
fn report_contradiction(
    payment_id: &str,
    provider: &str,
    recorded: PaymentState,
    answered: PaymentState,
    outcome: &PaymentOutcome,
) {
    crate::metrics::global()
        .contradictions
        .get_or_create(&crate::metrics::ProviderName {
            provider: provider.to_owned(),
        })
        .inc();
    tracing::error!(
        payment_id,
        provider,
        recorded = recorded.name(),
        answered = answered.name(),
        code = outcome.provider_code,
        mismatch = outcome.mismatch.as_deref().unwrap_or(""),
        "provider answer contradicts the payment's final state; the journal keeps it: check with the provider"
    );
}

/// How long the detached task keeps trying to record an outcome when the store is down.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(120);

/// How long a process remembers what it wrote for a payment it claimed.
const CLAIMED_KEEP: Duration = Duration::from_secs(600);

/// At most this many bytes of remembered payment records per process.
const CLAIMED_MAX_BYTES: u64 = 64 << 20;

/// What this process last wrote for each payment it claimed in the last [`CLAIMED_KEEP`]
/// (at most [`CLAIMED_MAX_BYTES`]): the copy a record the store lost is put back from, when a
/// retry of its request_id (on this replica) finds it gone.
pub(crate) struct ClaimedPayments(moka::future::Cache<String, Arc<Vec<u8>>>);

impl ClaimedPayments {
    pub(crate) fn new() -> Self {
        Self(
            moka::future::Cache::builder()
                .time_to_live(CLAIMED_KEEP)
                .max_capacity(CLAIMED_MAX_BYTES)
                .weigher(|id: &String, bytes: &Arc<Vec<u8>>| {
                    u32::try_from(id.len() + bytes.len()).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }

    pub(super) async fn note(&self, payment_id: &str, bytes: &[u8]) {
        self.0
            .insert(payment_id.to_owned(), Arc::new(bytes.to_vec()))
            .await;
    }

    async fn get(&self, payment_id: &str) -> Option<Arc<Vec<u8>>> {
        self.0.get(payment_id).await
    }
}

impl Gateway {
    /// Pays (or collects, per `order.kind`) once per `request_id`. `secrets` are used for the one
    /// provider call and dropped. `answer_within` is how long the caller can wait; `None` waits
    /// for the provider. `created_at_ms`: when the client created the request (unix ms), when
    /// it says: a request created before the store's last recovery is refused
    /// ([`GatewayError::RequestPredatesRecovery`]) unless its record survived.
    pub async fn create_payment(
        self: &Arc<Self>,
        request_id: String,
        order: PaymentOrder,
        secrets: PaymentSecrets,
        answer_within: Option<Duration>,
        created_at_ms: Option<i64>,
    ) -> Result<PaymentRecord, GatewayError> {
        let deadline = answer_within.map(|d| tokio::time::Instant::now() + d);
        let capability = match order.kind {
            PaymentKind::Bill => Capability::CreatePayment,
            PaymentKind::Collection => Capability::CreateCollection,
        };
        let provider = self.provider(order.provider, capability)?.clone();
        if !provider.currencies().contains(&order.amount.currency) {
            return Err(GatewayError::invalid(
                "amount.currency_code",
                format!(
                    "{} does not pay in {}",
                    provider.id().proto_name(),
                    order.amount.currency.code()
                ),
            ));
        }
        // A store that lost data may have forgotten this very request_id: nothing is asked of
        // it (or of the provider) until an operator recovers it. The identity known from the
        // health watch (every second) spares a round trip; the claim re-checks it atomically.
        self.check_posture().await?;
        self.checked_identity().await?;
        let payment_id = crate::auth::scoped_payment_id(&request_id)
            .unwrap_or_else(|| PaymentRecord::id_for_request(&request_id));
        let fingerprint = order.fingerprint();
        if let Some(answer) = self
            .earlier_answer(&request_id, &payment_id, &fingerprint)
            .await?
        {
            return answer;
        }
        // Created before the store's recovery: it may have been paid before the loss (checked
        // again at the claim, against the identity the claim is guarded by).
        self.check_created_after_recovery(&request_id, created_at_ms)?;
        // A product the provider does not list is refused here (NOT_FOUND), nothing recorded
        // or sent: checked against the cached catalog, read again once on a miss.
        let listed = self
            .listed_product(order.provider, &order.biller_id, &order.product_id)
            .await?;
        if provider
            .capabilities()
            .contains(&Capability::ValidateCustomer)
        {
            // Once for all concurrent duplicates of this request, across replicas.
            let customer = self
                .validate_once(
                    provider.clone(),
                    &request_id,
                    &payment_id,
                    &fingerprint,
                    &order,
                )
                .await?;
            customer
                .amount_rule
                .check(order.amount)
                .map_err(|(field, why)| GatewayError::AmountRuleViolated {
                    provider: order.provider,
                    violation: FieldViolation::new(field, why),
                })?;
        }

        // The provider's own rules, with the cached catalog entry where it pays from one:
        // refused here, nothing is recorded or sent.
        let product = if provider.pays_from_catalog() {
            Some(listed.ok_or_else(|| {
                GatewayError::invalid(
                    "product_id",
                    format!("required for {}", order.provider.proto_name()),
                )
            })?)
        } else {
            None
        };
        provider
            .check_order(&order, product.as_ref(), &secrets)
            .map_err(|e| GatewayError::provider(order.provider, "pay", e))?;

        // No payment is started into an outage: an open circuit refuses it unrecorded.
        provider
            .accepting_calls()
            .map_err(|e| GatewayError::provider(order.provider, "pay", e))?;

        // From the claim on, everything runs detached: a caller that goes away (deadline,
        // reset) cannot separate the claim from the call.
        let (claimed_tx, claimed_rx) = oneshot::channel();
        let this = self.clone();
        let request_id_copy = request_id.clone();
        // The caller is known here, in the RPC's task; the claim runs detached.
        let owner = Owner {
            payment_id: payment_id.clone(),
            caller: crate::auth::current_caller().unwrap_or_default(),
            created_at_ms,
            routing: None,
        };
        let mut task = self.tasks.spawn(
            async move {
                let claim = this
                    .claim(
                        provider.as_ref(),
                        request_id,
                        order,
                        product,
                        fingerprint,
                        owner,
                    )
                    .await;
                let (record, written) = match claim {
                    Ok(Claim::Won(record, written)) => (record, written),
                    Ok(Claim::Replay(answer)) => {
                        let _ = claimed_tx.send(answer);
                        return None;
                    }
                    Err(e) => {
                        let _ = claimed_tx.send(Err(e));
                        return None;
                    }
                };
                let _ = claimed_tx.send(Ok(record.clone()));
                match this
                    .call_provider(provider.as_ref(), record, written, &secrets, false)
                    .await
                {
                    CallEnd::Recorded(record) => record.map(|r| *r),
                    // Only a routed call ends so.
                    CallEnd::NotSent { .. } => None,
                }
            }
            // The RPC's span follows the detached task: its store and provider spans and log
            // lines belong to this call.
            .in_current_span(),
        );

        let pending = match within(deadline, claimed_rx).await {
            Some(Ok(answer)) => answer?,
            Some(Err(_)) => {
                return Err(GatewayError::Internal("payment task ended early".into()));
            }
            // The claim itself outlasted the caller: the request may or may not be recorded.
            None => {
                return Err(GatewayError::RequestInFlight {
                    request_id: request_id_copy,
                    retry_after: ms(self.payments.in_flight_retry_ms),
                });
            }
        };
        match within(deadline, &mut task).await {
            Some(Ok(Some(record))) => Ok(record),
            // Not recorded yet (store trouble), or not called: the journal says PENDING.
            Some(Ok(None)) | None => Ok(pending),
            Some(Err(e)) => Err(GatewayError::Internal(format!("payment task failed: {e}"))),
        }
    }

    /// Writes the payment record, with its provider reference, before anything is sent. Exactly
    /// one caller per payment id wins; the others get the winner's record replayed.
    pub(super) async fn claim(
        &self,
        provider: &dyn Provider,
        request_id: String,
        order: PaymentOrder,
        product: Option<Product>,
        fingerprint: String,
        owner: Owner,
    ) -> Result<Claim, GatewayError> {
        let Owner {
            payment_id,
            caller,
            created_at_ms,
            routing,
        } = owner;
        let key = keys::payment(&payment_id);
        let sequence = self.next_reference(provider.id()).await?;
        let now = self.clock.now_ms();
        let Some(provider_reference) = provider.payment_reference(sequence) else {
            tracing::error!(provider = %provider.id(), sequence, "payment reference space exhausted");
            return Err(GatewayError::Internal(format!(
                "{} payment references are exhausted: configure longer references or a new prefix",
                provider.id()
            )));
        };
        let claim_identity = self
            .known_identity()
            .map(|i| String::from_utf8_lossy(&i).into_owned())
            .unwrap_or_default();
        // Whoever lists what this payment leaves at the provider (a saved bill, a
        // transaction) must be able to tell it is this caller's: recorded before the claim, so
        // before anything can be sent.
        self.record_created_objects(provider, &order, &provider_reference, &caller)
            .await?;
        let mut record = PaymentRecord {
            product,
            claim_identity,
            payment_id: payment_id.clone(),
            caller,
            reference_sequence: sequence,
            ..PaymentRecord::claimed(request_id, order, provider_reference, now)
        };
        if let Some(routing) = routing {
            // A routed payment is matched with its routed request, whichever route it took.
            record.fingerprint = fingerprint.clone();
            record.directory_biller_id = routing.directory_biller_id;
            record.route_attempts = routing.attempts;
            record.route_attempts.push(RouteAttempt {
                provider: record.order.provider,
                biller_id: record.order.biller_id.clone(),
                product_id: record.order.product_id.clone(),
                sent: true,
                reason: String::new(),
                provider_reference: record.provider_reference.clone(),
                at_ms: now,
            });
        }
        let bytes = encode(&record);
        // Scheduled before the claim: should this process die between claim and call (or the
        // store fail right after the claim), reconciliation still finds the payment after the
        // in-flight expiry. An entry without a record is dropped by the reconciler; a losing
        // duplicate does not move the winner's entry.
        // The operators' index (by creation time): like the schedule entry, written first; an
        // entry without a record is dropped when listed. Both in one round trip.
        self.store
            .schedule_all_if_absent(
                &[
                    (
                        &keys::reconcile_schedule(),
                        now + self.payments.in_flight_expiry_ms as i64,
                    ),
                    (&keys::journal_index(), now),
                ],
                &payment_id,
            )
            .await?;
        // Guarded by the store identity, atomically. No TTL: a record that is not final is
        // never forgotten (it gets one when final).
        let created = created_at_ms.map(|at| (record.request_id.as_str(), at));
        // Its creation is the payment's first event, written with the claim.
        let body = self
            .events_kept()
            .is_ok()
            .then(|| super::events::encode(&record, None, Cause::Created, now));
        let event = body.as_deref().map(|body| NewEvent {
            payment_id: &record.payment_id,
            caller: &record.caller,
            body,
            at_ms: now,
        });
        let won = self
            .guarded_claim_since(&key, &bytes, None, created, event)
            .await?;
        if !won {
            let winner = self
                .load_payment(&payment_id)
                .await?
                .ok_or_else(|| GatewayError::Internal("claimed payment vanished".into()))?;
            return Ok(Claim::Replay(replay(
                winner,
                &fingerprint,
                self.payments.in_flight_retry_ms,
            )));
        }
        self.claimed.note(&payment_id, &bytes).await;
        Ok(Claim::Won(record, bytes))
    }

    /// Marks the claimed payment in flight, then makes the one provider call and records its
    /// outcome. The call is made only once the store confirms the payment is in flight, so a
    /// payment still marked claimed was certainly never sent. `written` are the bytes the claim
    /// wrote: each write swaps against the bytes the previous one left, sparing a read.
    ///
    /// `routed`: a certainly-not-sent refusal of the call is handed back
    /// ([`CallEnd::NotSent`]) instead of recorded, so the routing can move the payment to its
    /// next route in one journal write.
    pub(super) async fn call_provider(
        &self,
        provider: &dyn Provider,
        mut record: PaymentRecord,
        written: Vec<u8>,
        secrets: &PaymentSecrets,
        routed: bool,
    ) -> CallEnd {
        let payment_id = record.payment_id.clone();
        let mut started_at = None;
        let mut in_flight_bytes = None;
        let started = self
            .update_payment_from(
                Some(written),
                &payment_id,
                Next::Keep,
                Cause::ProviderAnswer,
                |r, now| {
                    let claimed = matches!(r.call, CallPhase::Claimed { .. });
                    if claimed {
                        r.call = CallPhase::InFlight { since_ms: now };
                        started_at = Some(now);
                    }
                    claimed
                },
            )
            .await;
        match started {
            Ok(Some((in_flight, bytes))) => {
                record = in_flight;
                self.claimed.note(&payment_id, &bytes).await;
                in_flight_bytes = Some(bytes);
            }
            Ok(None) => {
                tracing::warn!(
                    payment_id,
                    "payment settled before its call started; not sent"
                );
                return CallEnd::Recorded(
                    self.load_payment(&payment_id)
                        .await
                        .ok()
                        .flatten()
                        .map(Box::new),
                );
            }
            // The swap may have landed with its answer lost. Only this task moves a payment
            // from claimed to in flight, so finding our own mark is the confirmation.
            Err(e) => match self.load_payment(&payment_id).await {
                Ok(Some(r))
                    if started_at.is_some()
                        && r.call
                            == CallPhase::InFlight {
                                since_ms: started_at.unwrap_or_default(),
                            } =>
                {
                    record = r;
                }
                _ => {
                    tracing::error!(payment_id, error = %e, "payment not marked in flight; not sent");
                    return CallEnd::Recorded(None);
                }
            },
        }
        // With `min_replica_acks`, the in-flight mark must reach the replicas before the call:
        // otherwise a failover could bring back a record that says claimed for a payment sent.
        // With WAITAOF it must be on disk; and the posture must have been read recently.
        if let Err(e) = self.before_send().await {
            let outcome = PaymentOutcome {
                state: PaymentState::Failed,
                provider_message: format!("not sent: {e}"),
                ..PaymentOutcome::default()
            };
            return CallEnd::Recorded(
                self.record_outcome_from(
                    in_flight_bytes,
                    &payment_id,
                    outcome,
                    Source::Payment,
                    None,
                )
                .await
                .map(Box::new),
            );
        }
        tracing::info!(
            payment_id,
            provider = %provider.id(),
            reference = record.provider_reference,
            amount_minor = record.order.amount.minor_units,
            "payment recorded; calling provider"
        );
        let call_started = tokio::time::Instant::now();
        let answer = provider.pay(&record, secrets).await;
        let latency_ms = call_started.elapsed().as_millis() as u64;
        self.note_payment_call(
            provider.id(),
            matches!(&answer, Ok(outcome) if !outcome.is_unknown()),
            latency_ms,
        );
        let outcome = match answer {
            Ok(outcome) => outcome,
            // Certainly not sent, and the payment has other routes to try.
            Err(
                e @ (ProviderError::Unrepresentable { .. }
                | ProviderError::CircuitOpen { .. }
                | ProviderError::NotSent(_)
                | ProviderError::InvalidOrder(_)
                | ProviderError::PriceChanged { .. }),
            ) if routed => {
                return CallEnd::NotSent {
                    known: in_flight_bytes,
                    why: match e {
                        ProviderError::NotSent(_) => e.to_string(),
                        e => format!("not sent: {e}"),
                    },
                };
            }
            // Refused before any HTTP: certainly not sent.
            Err(
                e @ (ProviderError::Unrepresentable { .. }
                | ProviderError::CircuitOpen { .. }
                | ProviderError::NotSent(_)
                | ProviderError::InvalidOrder(_)
                | ProviderError::PriceChanged { .. }),
            ) => PaymentOutcome {
                state: PaymentState::Failed,
                provider_message: match e {
                    ProviderError::NotSent(_) => e.to_string(),
                    e => format!("not sent: {e}"),
                },
                ..PaymentOutcome::default()
            },
            Err(e) => PaymentOutcome::unknown(format!("outcome unknown: {e}")),
        };
        CallEnd::Recorded(
            self.record_outcome_from(in_flight_bytes, &payment_id, outcome, Source::Payment, None)
                .await
                .map(Box::new),
        )
    }

    /// The payment, refreshed from the provider first when it is not final (bounded by
    /// `answer_within`; on any provider trouble the journal's copy is returned).
    pub async fn get_payment(
        &self,
        payment_id: &str,
        answer_within: Option<Duration>,
    ) -> Result<PaymentRecord, GatewayError> {
        let record = self
            .load_payment(payment_id)
            .await?
            .ok_or_else(|| GatewayError::not_found(Resource::Payment, payment_id))?;
        if record.state.is_final() || record.call != CallPhase::Returned {
            return Ok(record);
        }
        let query = self.query_provider(&record);
        let outcome = match answer_within {
            Some(limit) => tokio::time::timeout(limit, query).await.ok(),
            None => Some(query.await),
        };
        match outcome {
            Some(Some(outcome)) => Ok(self
                .record_outcome(payment_id, outcome, Source::Query)
                .await
                .unwrap_or(record)),
            _ => Ok(record),
        }
    }

    /// Asks the provider about a payment; `None` when it cannot say.
    pub(crate) async fn query_provider(&self, record: &PaymentRecord) -> Option<PaymentOutcome> {
        let provider = self
            .provider(record.order.provider, Capability::QueryPayment)
            .ok()?;
        match provider.query_payment(record).await {
            Ok(outcome) => Some(outcome),
            Err(e) => {
                tracing::warn!(payment_id = record.payment_id, error = %e, "status query failed");
                None
            }
        }
    }

    /// Reads a payment record.
    pub async fn load_payment(
        &self,
        payment_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        // Another caller's payment is not found (operators and background work see all).
        Ok(self
            .load_raw(payment_id)
            .await?
            .map(|(record, _)| record)
            .filter(|record| crate::auth::may_see_payment_of(&record.caller)))
    }

    pub(super) async fn load_raw(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PaymentRecord, Vec<u8>)>, StoreError> {
        let Some(bytes) = self.store.get(&keys::payment(payment_id)).await? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError(format!("payment {payment_id} unreadable: {e}")))?;
        Ok(Some((record, bytes)))
    }

    /// Applies `outcome` to the stored record with compare-and-swap (so concurrent writers never
    /// lose each other's updates) and reschedules or unschedules reconciliation. The outcome of
    /// the payment call itself is retried through a store outage for a while: it must not be
    /// lost. A status query's outcome is tried once (the next query finds it again).
    pub(crate) async fn record_outcome(
        &self,
        payment_id: &str,
        outcome: PaymentOutcome,
        source: Source,
    ) -> Option<PaymentRecord> {
        self.record_outcome_from(None, payment_id, outcome, source, None)
            .await
    }

    /// [`Self::record_outcome`] of a follow-up's provider call: the follow-up mark of
    /// `request_id` is cleared in the same write, so no second follow-up can start between the
    /// outcome and the mark's removal (nor find the mark still set after the outcome).
    pub(crate) async fn record_outcome_clearing(
        &self,
        payment_id: &str,
        outcome: PaymentOutcome,
        request_id: &str,
    ) -> Option<PaymentRecord> {
        self.record_outcome_from(None, payment_id, outcome, Source::Payment, Some(request_id))
            .await
    }

    /// [`Self::record_outcome`], first swapping against `known`: the bytes this process last
    /// wrote at the payment's key (see [`Self::update_payment_from`]).
    pub(super) async fn record_outcome_from(
        &self,
        mut known: Option<Vec<u8>>,
        payment_id: &str,
        outcome: PaymentOutcome,
        source: Source,
        clearing: Option<&str>,
    ) -> Option<PaymentRecord> {
        let give_up = tokio::time::Instant::now()
            + match source {
                Source::Payment => RECORD_RETRY_FOR,
                Source::Query | Source::ScheduledQuery => Duration::ZERO,
            };
        let mut pause = Duration::from_millis(100);
        // The payment call's own outcome: the in-flight record this process wrote, to put
        // back should the store have lost it.
        let in_flight_copy = match source {
            Source::Payment => known.clone(),
            Source::Query | Source::ScheduledQuery => None,
        };
        loop {
            let next = match source {
                Source::Payment | Source::ScheduledQuery => Next::Step,
                Source::Query => Next::Keep,
            };
            let mut contradiction = None;
            let mut mismatch = None;
            // Still "claimed" under the payment call's outcome: the store lost the in-flight
            // mark it acknowledged before the call was made.
            let mut behind = None;
            let cause = match (source, clearing) {
                (Source::Payment, Some(_)) => Cause::FollowUp,
                (Source::Payment, None) => Cause::ProviderAnswer,
                (Source::Query | Source::ScheduledQuery, _) => Cause::StatusQuery,
            };
            let result = self
                .update_payment_from(known.take(), payment_id, next, cause, |record, now| {
                    behind = (source == Source::Payment
                        && matches!(record.call, CallPhase::Claimed { .. }))
                    .then(|| record.claim_identity.clone());
                    let outcome = outcome.clone().checked_against(record);
                    contradiction = record
                        .contradicted_by(&outcome)
                        .then(|| (record.state, outcome.effective_state()));
                    mismatch = outcome.mismatch.clone();
                    record.apply(outcome, now);
                    record.call = CallPhase::Returned;
                    if let Some(request_id) = clearing {
                        clear_follow_up(record, request_id);
                    }
                    if source != Source::Payment {
                        record.status_checks += 1;
                    }
                    if source == Source::ScheduledQuery {
                        record.reconcile_checks += 1;
                        record.unanswered_checks = 0;
                    }
                    true
                })
                .await
                .map(|updated| updated.map(|(record, _)| record));
            match result {
                Ok(record) => {
                    if let (Some(under), Some(r)) = (&behind, &record) {
                        self.claimed.note(payment_id, &encode(r)).await;
                        self.store_loss_detected(
                            "record_behind_in_flight",
                            under.as_bytes(),
                            &format!(
                                "payment {payment_id}: its record said claimed when the call's \
                                 outcome came back, though the in-flight mark was written before \
                                 the call; outcome recorded"
                            ),
                        )
                        .await;
                    }
                    if source == Source::Payment {
                        if let Some(r) = &record {
                            self.claimed.note(payment_id, &encode(r)).await;
                        }
                    }
                    record.iter().for_each(count_outcome);
                    let provider = record
                        .as_ref()
                        .map(|r| r.order.provider.name())
                        .unwrap_or_default();
                    if let Some((recorded, answered)) = contradiction {
                        report_contradiction(payment_id, provider, recorded, answered, &outcome);
                    } else if let (Some(why), Some(r)) = (&mismatch, &record) {
                        if r.state == PaymentState::NeedsAttention {
                            crate::metrics::global().needs_attention.inc();
                            tracing::error!(
                                payment_id,
                                provider,
                                code = r.provider_code,
                                why,
                                "provider answer does not match the payment: needs an operator"
                            );
                        }
                    }
                    return record;
                }
                Err(e)
                    if in_flight_copy.is_some()
                        && matches!(self.load_raw(payment_id).await, Ok(None)) =>
                {
                    tracing::error!(payment_id, error = %e, "payment record missing when the call's outcome came back");
                    let copy = in_flight_copy.as_deref().unwrap_or_default();
                    match self.put_back_lost(payment_id, copy, Some(&outcome)).await {
                        Ok(Some(record)) => {
                            count_outcome(&record);
                            return Some(record);
                        }
                        // Written by someone else meanwhile: apply to that.
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!(payment_id, error = %e, "lost payment record not put back yet; retrying");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                Err(e) if tokio::time::Instant::now() < give_up => {
                    tracing::warn!(payment_id, error = %e, "payment outcome not recorded yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(payment_id, error = %e, "payment outcome not recorded; reconciliation will ask the provider again");
                    return None;
                }
            }
        }
    }

    /// The record this process last wrote for `payment_id` when the store lost it: put back
    /// (see [`Self::put_back_lost`]) and returned. `None` when this process did not claim it
    /// in the last [`CLAIMED_KEEP`] or the store has it.
    pub(super) async fn restore_claimed(&self, payment_id: &str) -> Option<PaymentRecord> {
        let bytes = self.claimed.get(payment_id).await?;
        // A final record that has outlived `record_ttl_ms` expired as it should: not a loss.
        let known: PaymentRecord = serde_json::from_slice(&bytes).ok()?;
        let expires_at = known
            .updated_at_ms
            .saturating_add(self.payments.record_ttl_ms as i64);
        if known.state.is_final() && expires_at <= self.clock.now_ms() {
            return None;
        }
        match self.put_back_lost(payment_id, &bytes, None).await {
            Ok(Some(record)) => Some(record),
            // Someone wrote it meanwhile: the caller reads it again.
            Ok(None) => self.load_payment(payment_id).await.ok().flatten(),
            Err(e) => {
                tracing::error!(payment_id, error = %e, "lost payment record not put back");
                None
            }
        }
    }

    /// Writes back the record of `payment_id` the store lost, from what this process last
    /// wrote (`known`), with `outcome` applied when the payment call's outcome is what found
    /// it missing; puts it back in the journal index and, when unsettled, on the
    /// reconciliation schedule; raises the store-loss alarm. `None` when the record is there
    /// after all (written meanwhile): nothing changed.
    async fn put_back_lost(
        &self,
        payment_id: &str,
        known: &[u8],
        outcome: Option<&PaymentOutcome>,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let mut record: PaymentRecord = serde_json::from_slice(known)
            .map_err(|e| StoreError(format!("payment {payment_id} copy unreadable: {e}")))?;
        let now = self.clock.now_ms();
        let previous = record.state;
        if let Some(outcome) = outcome {
            let outcome = outcome.clone().checked_against(&record);
            record.apply(outcome, now);
            record.call = CallPhase::Returned;
        }
        record.revision += 1;
        let bytes = encode(&record);
        let ttl = record
            .state
            .is_final()
            .then(|| ms(self.payments.record_ttl_ms));
        // Not guarded: the store may have lost its identity with the record, and the record
        // tells of money that may have moved; it must be there for retries and operators.
        let key = keys::payment(payment_id);
        let written = if self.events_kept().is_ok() {
            let body = super::events::encode(&record, Some(previous), Cause::Restored, now);
            let event = NewEvent {
                payment_id,
                caller: &record.caller,
                body: &body,
                at_ms: now,
            };
            let write = RecordWrite::IfAbsent {
                key: &key,
                value: &bytes,
                ttl,
            };
            matches!(
                self.store.write_with_event(write, event).await?,
                EventWrite::Written(_)
            )
        } else {
            self.store.set_if_absent(&key, &bytes, ttl).await?
        };
        if !written {
            return Ok(None);
        }
        self.claimed.note(payment_id, &bytes).await;
        self.store
            .schedule_if_absent(&keys::journal_index(), payment_id, record.created_at_ms)
            .await?;
        if let Err(e) = self.reschedule(&record, now).await {
            tracing::warn!(payment_id, error = %e, "reconciliation schedule not updated");
        }
        self.store_loss_detected(
            "record_missing",
            record.claim_identity.as_bytes(),
            &format!(
                "payment {payment_id} (provider reference {}, {}): its record was gone; \
                 written back as {} from this gateway's copy",
                record.provider_reference,
                record.order.provider,
                record.state.name()
            ),
        )
        .await;
        Ok(Some(record))
    }

    /// Notes a scheduled status check that got no answer (timeout, transport error, 5xx, open
    /// circuit): it uses up no schedule step, only spaces the next try further out. `None` when
    /// the payment settled meanwhile.
    pub(crate) async fn note_unanswered_check(
        &self,
        payment_id: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        self.update_payment(
            payment_id,
            Next::Step,
            Cause::Reconciliation,
            |record, now| {
                if record.state.is_final() || record.state == PaymentState::NeedsAttention {
                    return false;
                }
                record.status_checks += 1;
                record.unanswered_checks += 1;
                record.updated_at_ms = now;
                true
            },
        )
        .await
    }

    /// Hands a payment whose outcome stayed unknown to an operator. `None` when it turned final
    /// meanwhile.
    pub(crate) async fn mark_needs_attention(
        &self,
        payment_id: &str,
        why: String,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        self.update_payment(
            payment_id,
            Next::Step,
            Cause::Reconciliation,
            |record, now| {
                if record.state.is_final() {
                    return false;
                }
                record.state = PaymentState::NeedsAttention;
                record.provider_message = why.clone();
                record.call = CallPhase::Returned;
                record.updated_at_ms = now;
                true
            },
        )
        .await
    }

    /// Fails a payment that was claimed but never sent (its process stopped between claim and
    /// call), once `verified` says how that was checked: the provider does not know its
    /// reference, or the store kept its identity since the claim. `None` when the call started
    /// meanwhile.
    pub(crate) async fn mark_not_sent(
        &self,
        payment_id: &str,
        verified: &str,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        self.update_payment(
            payment_id,
            Next::Step,
            Cause::Reconciliation,
            |record, now| {
                if !matches!(record.call, CallPhase::Claimed { .. }) {
                    return false;
                }
                record.state = PaymentState::Failed;
                record.provider_code = String::new();
                record.provider_message = format!(
                "never sent to the provider: the gateway stopped before calling it ({verified}); \
                 no money moved. Retry with a new request_id"
            );
                record.call = CallPhase::Returned;
                record.updated_at_ms = now;
                true
            },
        )
        .await
    }

    /// Read-modify-write of a payment record with compare-and-swap, then (per `next`) moves
    /// it on the reconciliation schedule. `change` returns whether it changed anything; `None`
    /// when it did not. Once the swap succeeded the update is done: a failed reschedule is only
    /// logged (the entry written at claim time, or the reconciler's lease, still brings the
    /// payment back).
    pub(crate) async fn update_payment(
        &self,
        payment_id: &str,
        next: Next,
        cause: Cause,
        change: impl FnMut(&mut PaymentRecord, i64) -> bool,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        Ok(self
            .update_payment_from(None, payment_id, next, cause, change)
            .await?
            .map(|(record, _)| record))
    }

    /// [`Self::update_payment`], with the bytes written. `known`: bytes this process wrote at
    /// the key a moment ago (the payment path's claim, then its in-flight mark). The first swap
    /// is tried against them without reading the key: if the record changed meanwhile the swap
    /// fails and the loop reads it as usual, so a stale `known` costs a round trip, never a
    /// lost update.
    pub(super) async fn update_payment_from(
        &self,
        mut known: Option<Vec<u8>>,
        payment_id: &str,
        next: Next,
        cause: Cause,
        mut change: impl FnMut(&mut PaymentRecord, i64) -> bool,
    ) -> Result<Option<(PaymentRecord, Vec<u8>)>, StoreError> {
        let key = keys::payment(payment_id);
        // What the store held after a refused swap, read once for the next try.
        let mut read_after_refusal = None;
        loop {
            let hinted = known
                .take()
                .and_then(|bytes| Some((serde_json::from_slice(&bytes).ok()?, bytes)));
            let from_hint = hinted.is_some();
            let current = match (hinted, read_after_refusal.take()) {
                (Some(current), _) => Some(current),
                (None, Some(read)) => read,
                (None, None) => self.load_raw(payment_id).await?,
            };
            let (mut record, old) =
                current.ok_or_else(|| StoreError(format!("payment {payment_id} missing")))?;
            let before = record.clone();
            let now = self.clock.now_ms();
            if !change(&mut record, now) {
                if from_hint {
                    // Decided on what this process wrote: ask the store what is there now.
                    continue;
                }
                return Ok(None);
            }
            // A final record expires `record_ttl_ms` after it became final (each later swap,
            // a reversal say, starts that again); any other record is permanent.
            let ttl = record
                .state
                .is_final()
                .then(|| ms(self.payments.record_ttl_ms));
            // A change callers can see writes its event with it.
            let eventful = super::events::worth_an_event(&before, &record);
            if eventful {
                record.revision = before.revision + 1;
            }
            let new = encode(&record);
            let mut swapped = match eventful && self.events_kept().is_ok() {
                true => {
                    let body = super::events::encode(&record, Some(before.state), cause, now);
                    let event = NewEvent {
                        payment_id,
                        caller: &record.caller,
                        body: &body,
                        at_ms: now,
                    };
                    let write = RecordWrite::Swap {
                        key: &key,
                        expected: &old,
                        new: &new,
                        ttl,
                    };
                    matches!(
                        self.store.write_with_event(write, event).await?,
                        EventWrite::Written(_)
                    )
                }
                false => {
                    self.store
                        .compare_and_swap_with_ttl(&key, &old, &new, ttl)
                        .await?
                }
            };
            if !swapped {
                // A client that resends a command after a broken connection (the cluster
                // client does) answers "refused" for a swap that landed the first time: the
                // store then holds exactly these bytes.
                let stored = self.load_raw(payment_id).await?;
                swapped = matches!(&stored, Some((_, bytes)) if *bytes == new);
                read_after_refusal = Some(stored);
            }
            if swapped {
                let settled =
                    record.state.is_final() || record.state == PaymentState::NeedsAttention;
                let rescheduled = match next {
                    Next::Step => self.reschedule(&record, now).await,
                    Next::Keep if settled => self.reschedule(&record, now).await,
                    Next::Keep => Ok(()),
                };
                if let Err(e) = rescheduled {
                    tracing::warn!(payment_id, error = %e, "reconciliation schedule not updated");
                }
                tracing::info!(
                    payment_id,
                    state = record.state.name(),
                    code = record.provider_code,
                    "payment updated"
                );
                return Ok(Some((record, new)));
            }
        }
    }

    /// Whether reconciliation can still learn something about a payment: not when it is final
    /// or with an operator, nor when it is SCHEDULED (an explicit provider answer) at a
    /// provider that has no status query (Switch): nothing could ever change it, and handing
    /// an accepted payment to an operator would be a false alarm.
    pub(crate) fn worth_reconciling(&self, record: &PaymentRecord) -> bool {
        if record.state.is_final() || record.state == PaymentState::NeedsAttention {
            return false;
        }
        record.state != PaymentState::Scheduled
            || self
                .provider(record.order.provider, Capability::QueryPayment)
                .is_ok()
    }

    /// Puts a non-final payment on the reconciliation schedule at its next backoff step, or
    /// takes a final (or abandoned) one off.
    pub(crate) async fn reschedule(
        &self,
        record: &PaymentRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let set = keys::reconcile_schedule();
        if !self.worth_reconciling(record) {
            return self.store.unschedule(&set, &record.payment_id).await;
        }
        let steps = &self.payments.reconcile_backoff_ms;
        let answered = record.reconcile_checks as usize;
        // Out of steps: due now, and reconciliation marks it NEEDS_ATTENTION. Unanswered checks
        // climb the same ladder (capped at its last step) without using it up.
        let delay = if answered >= steps.len() {
            0
        } else {
            let rung = (answered + record.unanswered_checks as usize).min(steps.len() - 1);
            steps[rung]
        };
        // Never later than the maximum age, when it becomes NEEDS_ATTENTION anyway.
        let too_old_at = record
            .created_at_ms
            .saturating_add(self.payments.max_pending_age_ms as i64);
        let due = (now + delay as i64).min(too_old_at.max(now));
        self.store.schedule(&set, &record.payment_id, due).await
    }
}

/// Answers a repeated `request_id`.
impl Gateway {
    /// What a request_id already has, before anything is claimed or sent: its payment record
    /// (also under an earlier `[auth] payment_id_key`), or the record this process claimed and
    /// the store has since lost (put back, alarmed, never paid again), answered by [`replay`].
    /// `None`: nothing was ever recorded for it. Shared by provider and routed payments.
    pub(super) async fn earlier_answer(
        &self,
        request_id: &str,
        payment_id: &str,
        fingerprint: &str,
    ) -> Result<Option<Result<PaymentRecord, GatewayError>>, GatewayError> {
        let retry_ms = self.payments.in_flight_retry_ms;
        if let Some(existing) = self.load_payment(payment_id).await? {
            return Ok(Some(replay(existing, fingerprint, retry_ms)));
        }
        // Made before `[auth] payment_id_key` changed? Then it is that payment.
        for earlier in crate::auth::earlier_payment_ids(request_id) {
            if let Some(existing) = self.load_payment(&earlier).await? {
                return Ok(Some(replay(existing, fingerprint, retry_ms)));
            }
        }
        // This process claimed it minutes ago, and the store no longer has it: the store
        // lost acknowledged writes. Put back either way; answered only while the store has
        // its identity (a store that lost everything answers STORE_DATA_LOST until recovered).
        if let Some(existing) = self.restore_claimed(payment_id).await {
            self.current_identity().await?;
            return Ok(Some(replay(existing, fingerprint, retry_ms)));
        }
        Ok(None)
    }
}

pub(super) fn replay(
    existing: PaymentRecord,
    fingerprint: &str,
    in_flight_retry_ms: u64,
) -> Result<PaymentRecord, GatewayError> {
    if existing.fingerprint != fingerprint {
        return Err(GatewayError::IdempotencyKeyReused {
            request_id: existing.request_id,
        });
    }
    if existing.call != CallPhase::Returned {
        return Err(GatewayError::RequestInFlight {
            request_id: existing.request_id,
            retry_after: ms(in_flight_retry_ms),
        });
    }
    Ok(existing)
}

/// Removes the follow-up mark of `request_id` (a later follow-up's mark is left alone).
pub(crate) fn clear_follow_up(record: &mut PaymentRecord, request_id: &str) {
    if record
        .follow_up
        .as_ref()
        .is_some_and(|m| m.request_id == request_id)
    {
        record.follow_up = None;
    }
}

pub(super) fn encode(record: &PaymentRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("payment records serialize")
}

/// Whose payment a claim records: its (per-caller) payment id and the caller's name, taken in
/// the RPC's task before the claim runs detached, when the client created the request
/// (unix ms), when it says, and for a routed payment its directory biller and the routes
/// refused before the claim.
pub(super) struct Owner {
    pub(super) payment_id: String,
    pub(super) caller: String,
    pub(super) created_at_ms: Option<i64>,
    pub(super) routing: Option<RouteClaim>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, Money, ProviderId};
    use crate::store::memory::MemoryStore;

    fn gateway() -> Arc<Gateway> {
        gateway_over(Arc::new(MemoryStore::default()))
    }

    fn gateway_over(store: Arc<dyn crate::store::Store>) -> Arc<Gateway> {
        Gateway::new(
            Default::default(),
            store,
            Default::default(),
            Default::default(),
            false,
        )
    }

    fn claimed(payment_id: &str) -> PaymentRecord {
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "90101",
            "0000000000",
            Money::new(Currency::Ngn, 100_000),
        );
        PaymentRecord {
            payment_id: payment_id.into(),
            ..PaymentRecord::claimed("r1".into(), order, "1453000001".into(), 1_000)
        }
    }

    /// The payment path swaps against the bytes it wrote last, without reading them back. When
    /// another writer changed the record meanwhile, the change must land on what is stored
    /// now, never on the stale copy.
    #[tokio::test]
    async fn a_stale_known_record_is_read_again_not_overwritten() {
        let gateway = gateway();
        let key = keys::payment("p1");
        let written = encode(&claimed("p1"));
        gateway.store.set(&key, &written, None).await.unwrap();
        let mut settled = claimed("p1");
        settled.state = PaymentState::Failed;
        settled.provider_message = "resolved by an operator".into();
        gateway
            .store
            .set(&key, &encode(&settled), None)
            .await
            .unwrap();

        let mut seen_states = Vec::new();
        let updated = gateway
            .update_payment_from(
                Some(written),
                "p1",
                Next::Keep,
                Cause::ProviderAnswer,
                |r, _| {
                    seen_states.push(r.state);
                    r.provider_code = "99".into();
                    true
                },
            )
            .await
            .unwrap()
            .unwrap();
        // Tried on the stale copy, refused by the swap, applied to the stored record.
        assert_eq!(seen_states, [PaymentState::Pending, PaymentState::Failed]);
        assert_eq!(updated.0.state, PaymentState::Failed);
        assert_eq!(updated.0.provider_message, "resolved by an operator");
        let stored: PaymentRecord =
            serde_json::from_slice(&gateway.store.get(&key).await.unwrap().unwrap()).unwrap();
        assert_eq!(stored, updated.0);
        assert_eq!(stored.provider_code, "99");
    }

    /// A change that declines on the known copy is decided again on the stored record.
    #[tokio::test]
    async fn a_change_declined_on_the_known_copy_is_decided_on_the_stored_one() {
        let gateway = gateway();
        let key = keys::payment("p2");
        let mut in_flight = claimed("p2");
        in_flight.call = CallPhase::InFlight { since_ms: 2_000 };
        let stale = encode(&in_flight);
        gateway
            .store
            .set(&key, &encode(&claimed("p2")), None)
            .await
            .unwrap();
        let started = gateway
            .update_payment_from(
                Some(stale),
                "p2",
                Next::Keep,
                Cause::ProviderAnswer,
                |r, now| {
                    let claimed = matches!(r.call, CallPhase::Claimed { .. });
                    if claimed {
                        r.call = CallPhase::InFlight { since_ms: now };
                    }
                    claimed
                },
            )
            .await
            .unwrap();
        assert!(started.is_some(), "the stored record was still claimed");
    }

    /// A store whose writes land but whose answers are those of a resent command (the cluster
    /// client resends after a broken connection): a claim answers "exists", a swap "refused".
    struct ResentAnswers(MemoryStore);

    #[async_trait::async_trait]
    impl crate::store::Store for ResentAnswers {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key).await
        }
        async fn set(&self, k: &str, v: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
            self.0.set(k, v, ttl).await
        }
        async fn set_if_absent(
            &self,
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
        ) -> Result<bool, StoreError> {
            self.0.set_if_absent(k, v, ttl).await
        }
        async fn compare_and_swap(&self, k: &str, e: &[u8], n: &[u8]) -> Result<bool, StoreError> {
            self.0.compare_and_swap(k, e, n).await
        }
        async fn compare_and_swap_with_ttl(
            &self,
            k: &str,
            e: &[u8],
            n: &[u8],
            ttl: Option<Duration>,
        ) -> Result<bool, StoreError> {
            // Landed, but answered as the resend that found the new value.
            self.0.compare_and_swap_with_ttl(k, e, n, ttl).await?;
            Ok(false)
        }
        async fn set_if_absent_guarded(
            &self,
            gk: &str,
            gv: &[u8],
            k: &str,
            v: &[u8],
            ttl: Option<Duration>,
        ) -> Result<crate::store::GuardedWrite, StoreError> {
            match self.0.set_if_absent_guarded(gk, gv, k, v, ttl).await? {
                crate::store::GuardedWrite::Written => Ok(crate::store::GuardedWrite::Exists),
                other => Ok(other),
            }
        }
        async fn raise_counter(&self, k: &str, floor: u64) -> Result<u64, StoreError> {
            self.0.raise_counter(k, floor).await
        }
        async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            self.0.keys_with_prefix(prefix).await
        }
        async fn delete(&self, k: &str) -> Result<(), StoreError> {
            self.0.delete(k).await
        }
        async fn increment_guarded(
            &self,
            gk: &str,
            gv: &[u8],
            k: &str,
            floor: u64,
            ceiling: u64,
        ) -> Result<crate::store::Increment, StoreError> {
            self.0.increment_guarded(gk, gv, k, floor, ceiling).await
        }
        async fn schedule(&self, set: &str, m: &str, due: i64) -> Result<(), StoreError> {
            self.0.schedule(set, m, due).await
        }
        async fn schedule_if_absent(
            &self,
            set: &str,
            m: &str,
            due: i64,
        ) -> Result<bool, StoreError> {
            self.0.schedule_if_absent(set, m, due).await
        }
        async fn due(&self, set: &str, now: i64, limit: usize) -> Result<Vec<String>, StoreError> {
            self.0.due(set, now, limit).await
        }
        async fn range(
            &self,
            set: &str,
            min: i64,
            max: i64,
            offset: usize,
            limit: usize,
        ) -> Result<Vec<String>, StoreError> {
            self.0.range(set, min, max, offset, limit).await
        }
        async fn range_newest_first(
            &self,
            set: &str,
            max_ms: i64,
            min_ms: i64,
            limit: usize,
        ) -> Result<Vec<(String, i64)>, StoreError> {
            self.0.range_newest_first(set, max_ms, min_ms, limit).await
        }
        async fn claim_due(
            &self,
            set: &str,
            m: &str,
            now: i64,
            lease: i64,
        ) -> Result<bool, StoreError> {
            self.0.claim_due(set, m, now, lease).await
        }
        async fn unschedule(&self, set: &str, m: &str) -> Result<(), StoreError> {
            self.0.unschedule(set, m).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            self.0.ping().await
        }
    }

    /// A claim that landed but was answered "exists" is this claim's own: without that, the
    /// payment would never be sent and would wait for reconciliation to fail it.
    #[tokio::test]
    async fn a_claim_answered_exists_by_a_resend_is_won() {
        let gateway = gateway_over(Arc::new(ResentAnswers(MemoryStore::default())));
        let key = keys::payment("p3");
        let mine = encode(&claimed("p3"));
        assert!(gateway.guarded_claim(&key, &mine, None).await.unwrap());
        // Someone else's bytes there: lost, as before.
        let other = encode(&claimed("p3-other"));
        assert!(!gateway.guarded_claim(&key, &other, None).await.unwrap());
    }

    /// A swap that landed but was answered "refused" is done once, not reported as refused
    /// (the in-flight mark would say "settled before its call started" and never call) nor
    /// applied a second time.
    #[tokio::test]
    async fn a_swap_answered_refused_by_a_resend_is_done_once() {
        let gateway = gateway_over(Arc::new(ResentAnswers(MemoryStore::default())));
        let key = keys::payment("p4");
        let written = encode(&claimed("p4"));
        gateway.store.set(&key, &written, None).await.unwrap();
        let mut runs = 0;
        let started = gateway
            .update_payment_from(
                Some(written),
                "p4",
                Next::Keep,
                Cause::ProviderAnswer,
                |r, now| {
                    runs += 1;
                    let claimed = matches!(r.call, CallPhase::Claimed { .. });
                    if claimed {
                        r.call = CallPhase::InFlight { since_ms: now };
                    }
                    claimed
                },
            )
            .await
            .unwrap();
        assert!(started.is_some(), "the in-flight mark landed");
        assert_eq!(runs, 1);
        let stored: PaymentRecord =
            serde_json::from_slice(&gateway.store.get(&key).await.unwrap().unwrap()).unwrap();
        assert!(matches!(stored.call, CallPhase::InFlight { .. }));
    }
}

//! Reconciliation: a background task that asks providers about payments whose outcome is not
//! known, on each payment's backoff schedule (`payments.reconcile_backoff_ms`). A payment still
//! unknown after the last step becomes NEEDS_ATTENTION for an operator: never silently FAILED.
//! The schedule lives in the store, so any replica can pick up any payment, including one left
//! in flight by a replica that died. A payment left claimed is FAILED "never sent" only once
//! that is verified (see [`Gateway::settle_claimed`]).
//!
//! Nothing is taken from a call that may still be running: a payment in flight is left alone
//! until its in-flight mark expires (`in_flight_expiry_ms`, longer than any provider's longest
//! call), and one with a live follow-up mark (an OTP validation or reversal at the provider)
//! until that ends or expires. A SCHEDULED payment whose scheduled time has not come (InterIntel
//! scheduled sends) is never handed to an operator for being old or out of steps: its schedule
//! and its age start again at its scheduled time.

use futures_util::StreamExt;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use super::{
    ms,
    payments::{Next, Source},
    Gateway,
};
use crate::domain::{payment::CallPhase, Capability, PaymentRecord, PaymentState};
use crate::error::GatewayError;
use crate::store::{keys, StoreError};

/// How many due payments one pass handles at most.
const BATCH: usize = 100;
/// How many of them are checked at once.
const CONCURRENCY: usize = 16;

/// Counters of one gateway's reconciliation (the process-wide ones are in [`crate::metrics`]).
#[derive(Debug, Default)]
pub struct ReconcileStats {
    /// Status checks made.
    pub checks: AtomicU64,
    /// Payments handed to an operator (NEEDS_ATTENTION).
    pub needs_attention: AtomicU64,
}

impl Gateway {
    /// Runs reconciliation passes forever, one every `reconcile_poll_ms`.
    pub async fn run_reconciler(self: Arc<Self>, stats: Arc<ReconcileStats>) {
        let mut tick = tokio::time::interval(ms(self.payments.reconcile_poll_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.reconcile_due(&stats).await {
                tracing::warn!(error = %e, "reconciliation pass skipped");
            }
        }
    }

    /// One pass: every payment due now.
    pub async fn reconcile_due(&self, stats: &ReconcileStats) -> Result<usize, StoreError> {
        let set = keys::reconcile_schedule();
        let now = self.clock.now_ms();
        let due = self.store.due(&set, now, BATCH).await?;
        let count = due.len();
        // Several at a time: one slow provider must not hold the others past their lease.
        futures_util::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |payment_id| {
                let set = &set;
                async move {
                    // Of several replicas that see this entry due, one claims it; should that
                    // replica die, the entry comes due again when the lease ends.
                    let now = self.clock.now_ms();
                    let lease = now + self.payments.in_flight_expiry_ms as i64;
                    let result = match self.store.claim_due(set, &payment_id, now, lease).await {
                        Ok(true) => self.reconcile_one(&payment_id, now, stats).await,
                        Ok(false) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        tracing::warn!(payment_id, error = %e, "reconciliation step failed; retried after its lease");
                    }
                }
            })
            .await;
        Ok(count)
    }

    async fn reconcile_one(
        &self,
        payment_id: &str,
        now: i64,
        stats: &ReconcileStats,
    ) -> Result<(), StoreError> {
        let set = keys::reconcile_schedule();
        let Some(record) = self.load_payment(payment_id).await? else {
            return self.store.unschedule(&set, payment_id).await;
        };
        // An OTP validation or reversal at the provider: asked about once it ended (the
        // outcome reschedules it) or its mark expired.
        if let Some(mark) = record.live_follow_up(now) {
            return self
                .store
                .schedule(&set, payment_id, mark.expires_at_ms)
                .await;
        }
        match record.call {
            CallPhase::Claimed { since_ms } | CallPhase::InFlight { since_ms } => {
                let expires = since_ms + self.payments.in_flight_expiry_ms as i64;
                if now < expires {
                    return self.store.schedule(&set, payment_id, expires).await;
                }
            }
            CallPhase::Returned => {}
        }
        if let CallPhase::InFlight { .. } = record.call {
            tracing::warn!(
                payment_id,
                "payment call abandoned in flight; asking the provider"
            );
        }
        if !self.worth_reconciling(&record) {
            return self.store.unschedule(&set, payment_id).await;
        }
        let out_of_steps =
            record.reconcile_checks as usize >= self.payments.reconcile_backoff_ms.len();
        // A scheduled payment is as old as the time since it was due to be made.
        let scheduled_at = record
            .extras
            .scheduled_at_ms
            .filter(|_| record.state == PaymentState::Scheduled);
        let age_ms = now - record.created_at_ms.max(scheduled_at.unwrap_or(i64::MIN));
        let too_old = age_ms >= self.payments.max_pending_age_ms as i64;
        if let Some(at) = scheduled_at.filter(|at| *at > now) {
            if out_of_steps || too_old {
                // Not made yet, as the provider said: nothing for an operator. The schedule
                // starts again at the scheduled time.
                self.update_payment(
                    payment_id,
                    Next::Keep,
                    crate::gateway::events::Cause::Reconciliation,
                    |r, _| {
                        let waiting = r.state == PaymentState::Scheduled;
                        if waiting {
                            r.reconcile_checks = 0;
                            r.unanswered_checks = 0;
                        }
                        waiting
                    },
                )
                .await?;
                return self.store.schedule(&set, payment_id, at).await;
            }
        }
        if out_of_steps || too_old {
            let why = if out_of_steps {
                format!(
                    "outcome still unknown after {} answered status checks; settle with the \
                     provider",
                    record.reconcile_checks
                )
            } else {
                format!(
                    "outcome still unknown {} hours after the payment was made ({} answered, \
                     {} unanswered status checks); settle with the provider",
                    age_ms / 3_600_000,
                    record.reconcile_checks,
                    record.unanswered_checks
                )
            };
            if self.mark_needs_attention(payment_id, why).await?.is_some() {
                stats.needs_attention.fetch_add(1, Ordering::Relaxed);
                crate::metrics::global().needs_attention.inc();
                tracing::error!(payment_id, "payment needs an operator: outcome unknown");
            }
            return Ok(());
        }
        // A payment still marked claimed is settled only once "never sent" is verified.
        if let CallPhase::Claimed { .. } = record.call {
            stats.checks.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().reconcile_checks.inc();
            return self.settle_claimed(&record).await;
        }
        if self
            .provider(record.order.provider, Capability::QueryPayment)
            .is_err()
        {
            // Nothing to ask (Switch has no status query): the payment only moves along its
            // schedule, toward an operator; no status check is made or counted.
            self.update_payment(
                payment_id,
                Next::Step,
                crate::gateway::events::Cause::Reconciliation,
                |r, _| {
                    r.reconcile_checks += 1;
                    // An abandoned call is treated as returned with an unknown outcome, as a
                    // status query without news would leave it.
                    r.call = CallPhase::Returned;
                    true
                },
            )
            .await?;
            return Ok(());
        }
        stats.checks.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().reconcile_checks.inc();
        match self.query_provider(&record).await {
            Some(outcome) => {
                self.record_outcome(payment_id, outcome, Source::ScheduledQuery)
                    .await;
            }
            // No answer (provider or network down): tried again later, no step used up.
            None => {
                crate::metrics::global().reconcile_unanswered.inc();
                self.note_unanswered_check(payment_id).await?;
            }
        }
        Ok(())
    }

    /// A payment still marked claimed after the in-flight expiry: its process stopped before
    /// the call, or the store lost the in-flight mark (a failover, a lost write) while the call
    /// went out. It is declared FAILED "never sent" only when that is verified: the provider,
    /// asked first, does not know its reference; or, for a provider without status queries,
    /// the store kept the identity it was claimed under. Anything else goes to reconciliation.
    async fn settle_claimed(&self, record: &PaymentRecord) -> Result<(), StoreError> {
        let payment_id = record.payment_id.as_str();
        let queryable = self
            .provider(record.order.provider, Capability::QueryPayment)
            .is_ok();
        if queryable {
            return match self.query_provider(record).await {
                Some(outcome) if outcome.reference_not_found => {
                    self.report_not_sent(payment_id, "the provider does not know its reference")
                        .await
                }
                // The provider knows something: the call may have gone out. Reconciled from
                // here like any payment whose call returned (record_outcome marks it so).
                Some(outcome) => {
                    tracing::warn!(
                        payment_id,
                        code = outcome.provider_code,
                        "payment marked claimed, but the provider answered about it: reconciling"
                    );
                    self.record_outcome(payment_id, outcome, Source::ScheduledQuery)
                        .await;
                    Ok(())
                }
                None => {
                    crate::metrics::global().reconcile_unanswered.inc();
                    self.note_unanswered_check(payment_id).await.map(|_| ())
                }
            };
        }
        let current = match self.current_identity().await {
            Ok(identity) => Some(identity),
            Err(GatewayError::StoreDataLost) => None,
            Err(GatewayError::Store(e)) => return Err(e),
            Err(e) => return Err(StoreError(e.to_string())),
        };
        let unchanged = !record.claim_identity.is_empty()
            && current.as_deref() == Some(record.claim_identity.as_bytes());
        if unchanged {
            return self
                .report_not_sent(payment_id, "the store kept its identity since the claim")
                .await;
        }
        let why = "claimed but not confirmed as sent, and the store's identity changed since \
                   the claim (it may have lost the in-flight mark): the call may have gone out; \
                   settle with the provider"
            .to_owned();
        if self.mark_needs_attention(payment_id, why).await?.is_some() {
            crate::metrics::global().needs_attention.inc();
            tracing::error!(
                payment_id,
                "claimed payment cannot be verified as never sent: needs an operator"
            );
        }
        Ok(())
    }

    async fn report_not_sent(&self, payment_id: &str, verified: &str) -> Result<(), StoreError> {
        if self.mark_not_sent(payment_id, verified).await?.is_some() {
            tracing::warn!(
                payment_id,
                verified,
                "payment claimed but never sent: FAILED, no money moved"
            );
        }
        // Else the call started meanwhile: handled on its next due time.
        Ok(())
    }
}

//! The operator surface over the payment journal: list payments by state, provider and creation
//! time (from the journal index), recheck one with its provider now, and resolve one whose
//! outcome the gateway could not learn (NEEDS_ATTENTION or PENDING) with the operator's evidence,
//! kept as an audit entry on the payment. A final state, whether the provider confirmed it or an
//! operator resolved it before, is never overwritten, and a payment whose call may still be
//! running (in flight, or an OTP validation or reversal at the provider) is not resolved. Each
//! resolution keeps the authenticated caller beside the operator name it claims, and writes an
//! audit log line (target `audit`).

use std::sync::atomic::Ordering;

use super::{payments::Next, payments::Source, Gateway};
use crate::domain::{
    payment::{AuditEntry, CallPhase},
    PaymentRecord, PaymentState, ProviderId, Resource,
};
use crate::error::GatewayError;
use crate::store::keys;

/// How many index entries one list call reads at most (it may answer a short page).
const SCAN_LIMIT: usize = 5_000;
/// Index entries read per store call.
const SCAN_BATCH: usize = 200;

/// Which journal payments to list.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    pub state: Option<PaymentState>,
    pub provider: Option<ProviderId>,
    /// Created at or after, unix ms.
    pub from_ms: Option<i64>,
    /// Created before, unix ms.
    pub to_ms: Option<i64>,
    /// Created by this caller (its `[auth]` name).
    pub caller: Option<String>,
}

impl JournalFilter {
    /// Does `record` pass every filter that is set?
    pub fn matches(&self, record: &PaymentRecord) -> bool {
        self.state.is_none_or(|s| s == record.state)
            && self.provider.is_none_or(|p| p == record.order.provider)
            && self.caller.as_ref().is_none_or(|c| *c == record.caller)
    }
}

/// An operator's resolution of a payment.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub request_id: String,
    pub state: PaymentState,
    pub provider_transaction_id: String,
    pub provider_code: String,
    pub note: String,
    /// The operator name the request claims.
    pub operator: String,
    /// The authenticated caller that sent it (its `[auth]` name), recorded beside `operator`.
    pub caller: String,
}

/// Why a settled payment cannot be resolved by an operator.
const ONLY_UNSETTLED: &str =
    "an operator resolves only a PAYMENT_STATE_PENDING or PAYMENT_STATE_NEEDS_ATTENTION payment";

/// What a resolution attempt found.
enum Resolved {
    Done,
    Replayed,
    /// The payment's state, and why it cannot be resolved (words for the caller).
    Conflict(PaymentState, &'static str),
    Reused,
}

impl Gateway {
    /// Turns the operator service on or off (`[operator] enabled`).
    pub fn set_operator_enabled(&self, enabled: bool) {
        self.operator_enabled.store(enabled, Ordering::Relaxed);
    }

    /// True when the operator service answers.
    pub fn operator_enabled(&self) -> bool {
        self.operator_enabled.load(Ordering::Relaxed)
    }

    /// Journal payments matching `filter`, oldest first, reading the index from position
    /// `offset`: at most `limit` of them, and how many index entries were read (the next
    /// page starts there), or `None` at the end of the index.
    pub async fn list_journal(
        &self,
        filter: &JournalFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<PaymentRecord>, Option<usize>), GatewayError> {
        let index = keys::journal_index();
        let (from, to) = (
            filter.from_ms.unwrap_or(i64::MIN),
            filter.to_ms.unwrap_or(i64::MAX),
        );
        let mut found = Vec::new();
        // Index position of the next unread entry. An entry without a record is skipped, never
        // removed here: it may be a payment whose claim is being written right now (the entry
        // is written first), or one expired, which the trim pass removes (journal.rs).
        let mut next = offset;
        let mut scanned = 0;
        while found.len() < limit && scanned < SCAN_LIMIT {
            let ids = self.store.range(&index, from, to, next, SCAN_BATCH).await?;
            let batch = ids.len();
            for id in ids {
                scanned += 1;
                next += 1;
                let Some(record) = self.load_payment(&id).await? else {
                    continue;
                };
                if filter.matches(&record) {
                    found.push(record);
                    if found.len() == limit {
                        return Ok((found, Some(next)));
                    }
                }
            }
            if batch < SCAN_BATCH {
                return Ok((found, None));
            }
        }
        Ok((found, Some(next)))
    }

    /// Asks the provider about a payment now, outside the schedule, and records the answer. A
    /// final payment is asked too, to verify it: an answer that contradicts it changes nothing
    /// but is logged at error level and counted (`billpay_payment_contradictions_total`).
    pub async fn recheck_payment(&self, payment_id: &str) -> Result<PaymentRecord, GatewayError> {
        let record = self
            .load_payment(payment_id)
            .await?
            .ok_or_else(|| GatewayError::not_found(Resource::Payment, payment_id))?;
        if record.call != CallPhase::Returned {
            return Ok(record);
        }
        match self.query_provider(&record).await {
            Some(outcome) => Ok(self
                .record_outcome(payment_id, outcome, Source::Query)
                .await
                .unwrap_or(record)),
            None => Ok(record),
        }
    }

    /// Settles a NEEDS_ATTENTION or PENDING payment with an operator's evidence.
    pub async fn resolve_payment(
        &self,
        payment_id: &str,
        resolution: Resolution,
    ) -> Result<PaymentRecord, GatewayError> {
        if !matches!(
            resolution.state,
            PaymentState::Succeeded | PaymentState::Failed
        ) {
            return Err(GatewayError::invalid("state", "SUCCEEDED or FAILED"));
        }
        self.current_identity().await?;
        let mut result = Resolved::Done;
        let updated = self
            .update_payment(
                payment_id,
                Next::Step,
                crate::gateway::events::Cause::Operator,
                |record, now| {
                    if let Some(earlier) = record
                        .audit
                        .iter()
                        .find(|a| a.request_id == resolution.request_id)
                    {
                        let same = earlier.to_state == resolution.state
                            && earlier.note == resolution.note
                            && earlier.operator == resolution.operator
                            && earlier.provider_code == resolution.provider_code
                            && earlier.provider_transaction_id
                                == resolution.provider_transaction_id;
                        result = if same {
                            Resolved::Replayed
                        } else {
                            Resolved::Reused
                        };
                        return false;
                    }
                    if record.state.is_final() {
                        result = Resolved::Conflict(record.state, ONLY_UNSETTLED);
                        return false;
                    }
                    // A call that may still be running (the payment's own, or an OTP validation
                    // or reversal at the provider) could still settle it otherwise.
                    if record.call != CallPhase::Returned {
                        result = Resolved::Conflict(
                        record.state,
                        "its provider call may still be running, so an operator cannot resolve \
                         it yet",
                    );
                        return false;
                    }
                    if record.live_follow_up(now).is_some() {
                        result = Resolved::Conflict(
                            record.state,
                            "an OTP validation or reversal of it is still at the provider, so an \
                         operator cannot resolve it yet",
                        );
                        return false;
                    }
                    if !matches!(
                        record.state,
                        PaymentState::NeedsAttention | PaymentState::Pending
                    ) {
                        result = Resolved::Conflict(record.state, ONLY_UNSETTLED);
                        return false;
                    }
                    result = Resolved::Done;
                    record.audit.push(AuditEntry {
                        request_id: resolution.request_id.clone(),
                        operator: resolution.operator.clone(),
                        caller: resolution.caller.clone(),
                        from_state: record.state,
                        to_state: resolution.state,
                        provider_transaction_id: resolution.provider_transaction_id.clone(),
                        provider_code: resolution.provider_code.clone(),
                        note: resolution.note.clone(),
                        at_ms: now,
                    });
                    record.state = resolution.state;
                    if !resolution.provider_code.is_empty() {
                        record.provider_code = resolution.provider_code.clone();
                    }
                    if !resolution.provider_transaction_id.is_empty() {
                        record.provider_transaction_id = resolution.provider_transaction_id.clone();
                    }
                    record.provider_message = format!(
                        "resolved by operator {}: {}",
                        resolution.operator, resolution.note
                    );
                    record.updated_at_ms = now;
                    true
                },
            )
            .await
            .map_err(|e| match e.0.ends_with("missing") {
                true => GatewayError::not_found(Resource::Payment, payment_id),
                false => GatewayError::Store(e),
            })?;
        match result {
            Resolved::Done => {
                let record = updated.ok_or_else(|| GatewayError::Internal("resolved".into()))?;
                // The audit line: who claims it, who called, and what changed.
                let entry = record.audit.last();
                tracing::warn!(
                    target: "audit",
                    payment_id,
                    request_id = resolution.request_id,
                    operator = resolution.operator,
                    caller = resolution.caller,
                    from_state = entry.map(|a| a.from_state.name()),
                    state = record.state.name(),
                    provider_code = resolution.provider_code,
                    provider_transaction_id = resolution.provider_transaction_id,
                    "payment resolved by an operator"
                );
                Ok(record)
            }
            Resolved::Replayed => self
                .load_payment(payment_id)
                .await?
                .ok_or_else(|| GatewayError::not_found(Resource::Payment, payment_id)),
            Resolved::Reused => Err(GatewayError::IdempotencyKeyReused {
                request_id: resolution.request_id,
            }),
            Resolved::Conflict(state, refusal) => Err(GatewayError::PaymentStateConflict {
                payment_id: payment_id.to_owned(),
                state,
                refusal,
            }),
        }
    }
}

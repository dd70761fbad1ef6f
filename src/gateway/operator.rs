//! The operator's way out of NEEDS_ATTENTION: list the journal (through the journal index, a
//! sorted set of payment ids by creation time written when a payment is claimed), recheck a
//! payment with its provider now, and settle a PENDING or NEEDS_ATTENTION payment on the
//! operator's evidence. A resolution goes through the follow-up journal (one per `request_id`)
//! and is kept as an audit entry on the payment; a state the provider confirmed is never
//! overwritten.

use super::{
    follow_up::{fingerprint, Ended, Kind},
    payments::{Next, Source},
    Gateway,
};
use crate::domain::{
    payment::{AuditEntry, CallPhase},
    PaymentRecord, PaymentState, ProviderId,
};
use crate::error::GatewayError;
use crate::store::keys;

/// How many index entries one listing reads at most while its filters skip payments.
const MAX_SCAN: usize = 10_000;

/// Which journal payments to list.
#[derive(Debug, Clone)]
pub struct JournalQuery {
    pub state: Option<PaymentState>,
    pub provider: Option<ProviderId>,
    /// Created at or after, unix ms.
    pub from_ms: i64,
    /// Created before, unix ms.
    pub to_ms: i64,
    /// Index entries already read by earlier pages.
    pub offset: usize,
    pub limit: usize,
}

/// One page of the journal.
#[derive(Debug)]
pub struct JournalPage {
    pub payments: Vec<PaymentRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_offset: Option<usize>,
}

/// An operator's settlement of a payment.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub request_id: String,
    pub payment_id: String,
    /// SUCCEEDED or FAILED.
    pub state: PaymentState,
    pub provider_transaction_id: String,
    pub provider_code: String,
    pub note: String,
    pub operator: String,
}

impl Gateway {
    /// Adds a claimed payment to the journal index. A failure is logged: the payment is safe
    /// without it (reconciliation finds it through its schedule); only the listing misses it.
    pub(crate) async fn index_payment(&self, record: &PaymentRecord) {
        if let Err(e) = self
            .store
            .schedule(
                &keys::journal_index(),
                &record.payment_id,
                record.created_at_ms,
            )
            .await
        {
            tracing::warn!(payment_id = record.payment_id, error = %e, "payment not added to the journal index");
        }
    }

    /// One page of journal payments, oldest first.
    pub async fn list_journal(&self, query: &JournalQuery) -> Result<JournalPage, GatewayError> {
        let index = keys::journal_index();
        let mut payments = Vec::new();
        let mut offset = query.offset;
        let mut scanned = 0;
        while payments.len() < query.limit && scanned < MAX_SCAN {
            let ids = self
                .store
                .range(&index, query.from_ms, query.to_ms, offset, query.limit)
                .await?;
            if ids.is_empty() {
                return Ok(JournalPage {
                    payments,
                    next_offset: None,
                });
            }
            for id in ids {
                scanned += 1;
                let Some(record) = self.load_payment(&id).await? else {
                    // The record expired (a final payment past its TTL): forget it. The entry
                    // is removed, so the offset stays.
                    self.store.unschedule(&index, &id).await?;
                    continue;
                };
                offset += 1;
                let wanted = query.state.is_none_or(|s| s == record.state)
                    && query.provider.is_none_or(|p| p == record.order.provider);
                if wanted {
                    payments.push(record);
                    if payments.len() == query.limit {
                        break;
                    }
                }
            }
        }
        Ok(JournalPage {
            payments,
            next_offset: Some(offset),
        })
    }

    /// Asks the provider about a payment now (also a NEEDS_ATTENTION one) and records the
    /// answer. A payment whose call is still running is returned as it is.
    pub async fn recheck_payment(&self, payment_id: &str) -> Result<PaymentRecord, GatewayError> {
        let record = self
            .load_payment(payment_id)
            .await?
            .ok_or_else(|| GatewayError::NotFound(format!("payment {payment_id}")))?;
        if record.state.is_final() || record.call != CallPhase::Returned {
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

    /// Settles a PENDING or NEEDS_ATTENTION payment on the operator's evidence, once per
    /// `request_id`, with an audit entry on the payment.
    pub async fn resolve_payment(
        &self,
        resolution: Resolution,
    ) -> Result<PaymentRecord, GatewayError> {
        let record = self
            .load_payment(&resolution.payment_id)
            .await?
            .ok_or_else(|| GatewayError::NotFound(format!("payment {}", resolution.payment_id)))?;
        let provider = record.order.provider;
        let detail = format!(
            "{}\n{}\n{}\n{}\n{}",
            resolution.state.name(),
            resolution.provider_transaction_id,
            resolution.provider_code,
            resolution.note,
            resolution.operator
        );
        let print = fingerprint(Kind::Resolve, provider, &record.payment_id, &detail);
        if let Some(existing) = self.load_operation(&resolution.request_id).await? {
            return self.replay_operation(existing, &print).await;
        }
        let conflict = |state: PaymentState| GatewayError::PaymentStateConflict {
            payment_id: resolution.payment_id.clone(),
            state: state.name(),
            operation: "resolve_payment",
        };
        if !resolvable(&record) {
            return Err(conflict(record.state));
        }
        let operation = match self
            .claim_operation(
                &resolution.request_id,
                Kind::Resolve,
                provider,
                &record.payment_id,
                print.clone(),
            )
            .await?
        {
            Ok(won) => won,
            Err(existing) => return self.replay_operation(existing, &print).await,
        };
        let mut refused_in = None;
        let updated = self
            .update_payment(&resolution.payment_id, Next::Step, |r, now| {
                if !resolvable(r) {
                    refused_in = Some(r.state);
                    return false;
                }
                r.audit.push(AuditEntry {
                    at_ms: now,
                    operator: resolution.operator.clone(),
                    request_id: resolution.request_id.clone(),
                    from_state: r.state,
                    to_state: resolution.state,
                    provider_transaction_id: resolution.provider_transaction_id.clone(),
                    provider_code: resolution.provider_code.clone(),
                    note: resolution.note.clone(),
                });
                r.state = resolution.state;
                if !resolution.provider_code.is_empty() {
                    r.provider_code = resolution.provider_code.clone();
                }
                if !resolution.provider_transaction_id.is_empty() {
                    r.provider_transaction_id = resolution.provider_transaction_id.clone();
                }
                r.provider_message = format!("resolved by operator {}", resolution.operator);
                r.updated_at_ms = now;
                true
            })
            .await;
        let ended = match &updated {
            Ok(Some(_)) => Ended::Answered,
            Ok(None) => Ended::Refused {
                code: String::new(),
                message: "the payment changed before it could be resolved".into(),
            },
            Err(e) => Ended::Unknown {
                message: e.to_string(),
            },
        };
        self.finish_operation(operation, ended).await;
        match updated {
            Ok(Some(record)) => {
                tracing::info!(
                    payment_id = record.payment_id,
                    operator = resolution.operator,
                    state = record.state.name(),
                    "payment resolved by an operator"
                );
                Ok(record)
            }
            Ok(None) => Err(conflict(refused_in.unwrap_or(record.state))),
            Err(e) => Err(e.into()),
        }
    }
}

/// Only a payment whose outcome the gateway could not learn may be settled by an operator; a
/// state the provider confirmed is never overwritten, and a call still running is waited for.
fn resolvable(record: &PaymentRecord) -> bool {
    matches!(
        record.state,
        PaymentState::Pending | PaymentState::NeedsAttention
    ) && record.call == CallPhase::Returned
}

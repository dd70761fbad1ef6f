//! `billpay.v1.OperatorService`: the operator's view of the payment journal (list, recheck,
//! resolve with evidence). Answers UNIMPLEMENTED unless `[operator] enabled = true`.

use tonic::{Request, Response, Status};

use super::{convert, page::Page, payment::check_payment_id, validate::Violations, Api};
use crate::domain::{PaymentRecord, PaymentState};
use crate::gateway::operator::{JournalFilter, Resolution};
use crate::pb::{self, operator_service_server::OperatorService};

/// Longest note, operator name, provider code, transaction id or caller filter.
const MAX_EVIDENCE: usize = 500;

/// A journal record with its audit trail, as proto.
fn journal_payment(record: PaymentRecord) -> pb::JournalPayment {
    let audit = record
        .audit
        .iter()
        .map(|a| pb::AuditEntry {
            request_id: a.request_id.clone(),
            operator: a.operator.clone(),
            caller: a.caller.clone(),
            from_state: convert::payment_state(a.from_state) as i32,
            to_state: convert::payment_state(a.to_state) as i32,
            provider_transaction_id: a.provider_transaction_id.clone(),
            provider_code: a.provider_code.clone(),
            note: a.note.clone(),
            create_time: Some(convert::timestamp(a.at_ms)),
        })
        .collect();
    pb::JournalPayment {
        caller: record.caller.clone(),
        payment: Some(convert::payment(record)),
        audit,
    }
}

/// A proto payment state as a domain one; `None` for unspecified.
pub(crate) fn domain_state(value: i32) -> Result<Option<PaymentState>, ()> {
    let state = pb::PaymentState::try_from(value).map_err(|_| ())?;
    Ok(Some(match state {
        pb::PaymentState::Unspecified => return Ok(None),
        pb::PaymentState::Pending => PaymentState::Pending,
        pb::PaymentState::Succeeded => PaymentState::Succeeded,
        pb::PaymentState::Failed => PaymentState::Failed,
        pb::PaymentState::OtpRequired => PaymentState::OtpRequired,
        pb::PaymentState::ValidationRequired => PaymentState::ValidationRequired,
        pb::PaymentState::Reversed => PaymentState::Reversed,
        pb::PaymentState::NeedsAttention => PaymentState::NeedsAttention,
        pb::PaymentState::Scheduled => PaymentState::Scheduled,
    }))
}

fn unix_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

impl Api {
    fn operator_on(&self) -> Result<(), Status> {
        if self.gateway.operator_enabled() {
            Ok(())
        } else {
            Err(crate::api::status::service_disabled(
                "billpay.v1.OperatorService",
                "OperatorService is disabled: set [operator] enabled = true",
            ))
        }
    }
}

#[tonic::async_trait]
impl OperatorService for Api {
    async fn list_journal_payments(
        &self,
        request: Request<pb::ListJournalPaymentsRequest>,
    ) -> Result<Response<pb::ListJournalPaymentsResponse>, Status> {
        self.operator_on()?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let state = domain_state(r.state).unwrap_or_else(|_| {
            v.add("state", "unknown state");
            None
        });
        let provider = match r.provider {
            0 => None,
            value => v.provider("provider", value),
        };
        if r.caller.len() > MAX_EVIDENCE {
            v.add("caller", format!("at most {MAX_EVIDENCE} bytes"));
        }
        let filter = JournalFilter {
            state,
            provider,
            from_ms: r.start_time.as_ref().map(unix_ms),
            to_ms: r.end_time.as_ref().map(unix_ms),
            caller: (!r.caller.is_empty()).then_some(r.caller),
        };
        v.finish()?;
        let page = Page::parse(r.page_size, &r.page_token, format!("{filter:?}"))?;
        let request = page.provider_request();
        let (records, next) = self
            .gateway
            .list_journal(&filter, request.offset as usize, request.limit as usize)
            .await?;
        let next_page_token = match next {
            Some(position) => page.next_after(position - request.offset as usize, true),
            None => String::new(),
        };
        Ok(Response::new(pb::ListJournalPaymentsResponse {
            payments: records.into_iter().map(journal_payment).collect(),
            next_page_token,
        }))
    }

    async fn recheck_payment(
        &self,
        request: Request<pb::RecheckPaymentRequest>,
    ) -> Result<Response<pb::RecheckPaymentResponse>, Status> {
        self.operator_on()?;
        let r = request.into_inner();
        let mut v = Violations::default();
        check_payment_id(&mut v, &r.payment_id);
        v.finish()?;
        let record = self.gateway.recheck_payment(&r.payment_id).await?;
        Ok(Response::new(pb::RecheckPaymentResponse {
            payment: Some(journal_payment(record)),
        }))
    }

    async fn resolve_payment(
        &self,
        request: Request<pb::ResolvePaymentRequest>,
    ) -> Result<Response<pb::ResolvePaymentResponse>, Status> {
        self.operator_on()?;
        let r = request.into_inner();
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        check_payment_id(&mut v, &r.payment_id);
        let state = match domain_state(r.state) {
            Ok(Some(s @ (PaymentState::Succeeded | PaymentState::Failed))) => s,
            _ => {
                v.add("state", "SUCCEEDED or FAILED");
                PaymentState::Pending
            }
        };
        v.text("note", &r.note, MAX_EVIDENCE);
        v.text("operator", &r.operator, MAX_EVIDENCE);
        v.optional_text("provider_code", &r.provider_code, MAX_EVIDENCE);
        v.optional_text(
            "provider_transaction_id",
            &r.provider_transaction_id,
            MAX_EVIDENCE,
        );
        v.finish()?;
        let record = self
            .gateway
            .resolve_payment(
                &r.payment_id,
                Resolution {
                    request_id: r.request_id,
                    state,
                    provider_transaction_id: r.provider_transaction_id,
                    provider_code: r.provider_code,
                    note: r.note,
                    operator: r.operator,
                    caller: crate::auth::current_caller().unwrap_or_default(),
                },
            )
            .await?;
        Ok(Response::new(pb::ResolvePaymentResponse {
            payment: Some(journal_payment(record)),
        }))
    }
}

//! `billpay.v1.OperatorService`: the journal listing, rechecks and resolutions with evidence.
//! Served only when `[server] operator_service` is on (see `server.rs`).

use tonic::{Request, Response, Status};

use super::{convert, page::Page, validate::Violations, Api};
use crate::domain::PaymentState;
use crate::gateway::operator::{JournalQuery, Resolution};
use crate::pb::{self, operator_service_server::OperatorService};

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos / 1_000_000))
}

/// A proto state as a domain state; `None` for UNSPECIFIED or an unknown value.
fn state(value: i32) -> Option<PaymentState> {
    Some(match pb::PaymentState::try_from(value).ok()? {
        pb::PaymentState::Unspecified => return None,
        pb::PaymentState::Pending => PaymentState::Pending,
        pb::PaymentState::Succeeded => PaymentState::Succeeded,
        pb::PaymentState::Failed => PaymentState::Failed,
        pb::PaymentState::OtpRequired => PaymentState::OtpRequired,
        pb::PaymentState::ValidationRequired => PaymentState::ValidationRequired,
        pb::PaymentState::Reversed => PaymentState::Reversed,
        pb::PaymentState::NeedsAttention => PaymentState::NeedsAttention,
        pb::PaymentState::Scheduled => PaymentState::Scheduled,
    })
}

#[tonic::async_trait]
impl OperatorService for Api {
    async fn list_journal_payments(
        &self,
        request: Request<pb::ListJournalPaymentsRequest>,
    ) -> Result<Response<pb::ListJournalPaymentsResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        if r.state != 0 && state(r.state).is_none() {
            v.add("state", "not a payment state");
        }
        let provider = match r.provider {
            0 => None,
            p => v.provider("provider", p),
        };
        let from_ms = r.start_time.as_ref().map(millis).unwrap_or(i64::MIN);
        let to_ms = r.end_time.as_ref().map(millis).unwrap_or(i64::MAX);
        if from_ms >= to_ms {
            v.add("end_time", "must be after start_time");
        }
        v.finish()?;
        let filter = format!("journal/{}/{}/{from_ms}/{to_ms}", r.state, r.provider);
        let page = Page::parse(r.page_size, &r.page_token, filter)?;
        let request = page.provider_request();
        let listed = self
            .gateway
            .list_journal(&JournalQuery {
                state: state(r.state),
                provider,
                from_ms,
                to_ms,
                offset: request.offset as usize,
                limit: request.limit as usize,
            })
            .await?;
        let next_page_token = match listed.next_offset {
            Some(next) => page.next_after(next - request.offset as usize, true),
            None => String::new(),
        };
        Ok(Response::new(pb::ListJournalPaymentsResponse {
            payments: listed.payments.into_iter().map(convert::payment).collect(),
            next_page_token,
        }))
    }

    async fn recheck_payment(
        &self,
        request: Request<pb::RecheckPaymentRequest>,
    ) -> Result<Response<pb::RecheckPaymentResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        super::payment::check_payment_id(&mut v, &r.payment_id);
        v.finish()?;
        let record = self.gateway.recheck_payment(&r.payment_id).await?;
        Ok(Response::new(pb::RecheckPaymentResponse {
            payment: Some(convert::payment(record)),
        }))
    }

    async fn resolve_payment(
        &self,
        request: Request<pb::ResolvePaymentRequest>,
    ) -> Result<Response<pb::ResolvePaymentResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        v.request_id(&r.request_id);
        super::payment::check_payment_id(&mut v, &r.payment_id);
        let to =
            state(r.state).filter(|s| matches!(s, PaymentState::Succeeded | PaymentState::Failed));
        if to.is_none() {
            v.add("state", "PAYMENT_STATE_SUCCEEDED or PAYMENT_STATE_FAILED");
        }
        v.optional_text("provider_transaction_id", &r.provider_transaction_id, 64);
        v.optional_text("provider_code", &r.provider_code, 32);
        v.text("note", &r.note, 500);
        v.text("operator", &r.operator, 100);
        v.finish()?;
        let record = self
            .gateway
            .resolve_payment(Resolution {
                request_id: r.request_id,
                payment_id: r.payment_id,
                state: to.expect("checked above"),
                provider_transaction_id: r.provider_transaction_id,
                provider_code: r.provider_code,
                note: r.note,
                operator: r.operator,
            })
            .await?;
        Ok(Response::new(pb::ResolvePaymentResponse {
            payment: Some(convert::payment(record)),
        }))
    }
}

//! The audit trail: one structured log line (target `audit`) per mutating RPC — who called
//! (caller), what (rpc), which request and payment (request_id, payment_id) and how it ended
//! (outcome: the payment's state, or the error's code and reason). Built from ids, states and
//! reasons only: never a request body, secret, card number, PIN or OTP.

use tonic::{Response, Status};
use tonic_types::StatusExt;

use crate::pb;

/// A request_id as logged: the caller's value when it is a valid key, else `invalid` (an
/// invalid one is refused anyway, and may be anything).
fn loggable_request_id(request_id: &str) -> &str {
    let valid = !request_id.is_empty()
        && request_id.len() <= super::validate::MAX_REQUEST_ID_LEN
        && request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        request_id
    } else {
        "invalid"
    }
}

/// Logs the audit line of `rpc`. `payment` reads the payment from a successful answer;
/// `payment_id` is the one the request named, if any.
pub fn record<T>(
    rpc: &'static str,
    request_id: &str,
    payment_id: &str,
    result: &Result<Response<T>, Status>,
    payment: impl Fn(&T) -> Option<&pb::Payment>,
) {
    let caller = crate::auth::current_caller().unwrap_or_else(|| "anonymous".to_owned());
    let request_id = loggable_request_id(request_id);
    match result {
        Ok(response) => {
            let answered = payment(response.get_ref());
            let payment_id = answered.map_or(payment_id, |p| p.payment_id.as_str());
            let outcome = answered
                .and_then(|p| pb::PaymentState::try_from(p.state).ok())
                .map_or("OK", |s| s.as_str_name());
            tracing::info!(target: "audit", caller, rpc, request_id, payment_id, outcome, "audit");
        }
        Err(status) => {
            let reason = status
                .get_error_details()
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default();
            let outcome = format!("{:?}:{reason}", status.code());
            let payment_id = if payment_id.len() <= 128 {
                payment_id
            } else {
                "invalid"
            };
            tracing::info!(target: "audit", caller, rpc, request_id, payment_id, outcome, "audit");
        }
    }
}

//! What a Switch `/bills/pay` answer says about the payment, kept as data.
//!
//! Switch publishes no response codes (PROVIDER-NOTES.md §2.4: "HTTP 200 + message" is the only
//! success indicator, errors are `{ "message": ... }` with HTTP 400). The HTTP status is
//! therefore the code. Only the statuses below settle a payment; every other answer (5xx,
//! 401/403, redirects, unknown statuses, an unreadable 2xx body) leaves it PENDING: "pending
//! unless the provider clearly says otherwise".

use crate::domain::PaymentState;

/// What a `/bills/pay` HTTP status means for the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMeaning {
    /// Paid (or, with a start date, accepted to pay later: SCHEDULED).
    Accepted,
    /// Refused before paying (validation, wrong PIN/OTP, insufficient funds, declined).
    Refused,
}

/// Statuses that settle a payment. 2xx with a readable JSON body is acceptance; these 4xx are
/// Switch refusing the request with a message (the documented error shape is HTTP 400).
pub const PAY_STATUSES: &[(u16, PayMeaning)] = &[
    (200, PayMeaning::Accepted),
    (201, PayMeaning::Accepted),
    (400, PayMeaning::Refused),
    (402, PayMeaning::Refused),
    (404, PayMeaning::Refused),
    (422, PayMeaning::Refused),
];

/// The meaning of a `/bills/pay` status; `None` means the outcome is unknown.
pub fn pay_meaning(status: u16) -> Option<PayMeaning> {
    PAY_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, m)| *m)
}

/// The payment state of an accepted or refused payment.
pub fn pay_state(meaning: PayMeaning, scheduled: bool) -> PaymentState {
    match (meaning, scheduled) {
        (PayMeaning::Accepted, false) => PaymentState::Succeeded,
        (PayMeaning::Accepted, true) => PaymentState::Scheduled,
        (PayMeaning::Refused, _) => PaymentState::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_statuses_settle_a_payment() {
        assert_eq!(pay_meaning(200), Some(PayMeaning::Accepted));
        assert_eq!(pay_meaning(400), Some(PayMeaning::Refused));
        for unknown in [202, 204, 301, 401, 403, 408, 409, 429, 500, 502, 503, 504] {
            assert_eq!(pay_meaning(unknown), None, "{unknown}");
        }
        assert_eq!(
            pay_state(PayMeaning::Accepted, true),
            PaymentState::Scheduled
        );
        assert_eq!(pay_state(PayMeaning::Refused, true), PaymentState::Failed);
    }
}

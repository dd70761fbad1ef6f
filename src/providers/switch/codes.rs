//! What a Switch `/bills/pay` answer says about the payment, kept as data.
//!
//! Switch publishes no response codes (docs/providers.md §2.4): "HTTP 200 + message" is the only
//! success indicator, and the only error shape shown is `{ "message": ... }` with HTTP 400. The
//! HTTP status and the presence of that message are therefore the code, and only those two
//! documented shapes settle a payment. Switch has no status query either, so an answer the
//! documents do not define (another 4xx such as 402/404/422, a 400 without a message, a 401, an
//! odd 2xx) cannot be cleared up later by asking: the payment goes to an operator
//! (NEEDS_ATTENTION) with the answer recorded. Answers that carry no word from Switch at all
//! (5xx, redirects, timeouts) are an unknown outcome: PENDING, and along the reconciliation
//! schedule to an operator as well.

use crate::domain::PaymentState;

/// What a `/bills/pay` answer means for the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMeaning {
    /// Paid (or, with a start date, accepted to pay later: SCHEDULED).
    Accepted,
    /// Refused before paying (validation, wrong PIN/OTP, insufficient funds, declined).
    Refused,
    /// Switch answered, but not in a shape its documents define: an operator settles it.
    Undocumented,
    /// No answer from Switch about the payment (5xx, 1xx, 3xx): outcome unknown, PENDING.
    Unknown,
}

/// Statuses whose answer settles a payment when the body is a JSON object with a non-empty
/// `message`. 201 is read like 200: a created payment is a made payment.
pub const PAY_STATUSES: &[(u16, PayMeaning)] = &[
    (200, PayMeaning::Accepted),
    (201, PayMeaning::Accepted),
    (400, PayMeaning::Refused),
];

/// The meaning of a `/bills/pay` answer with HTTP `status`; `has_message`: the body is a JSON
/// object with a non-empty `message`.
pub fn pay_meaning(status: u16, has_message: bool) -> PayMeaning {
    let listed = PAY_STATUSES
        .iter()
        .find(|(s, _)| *s == status)
        .map(|(_, m)| *m);
    match (listed, status) {
        (Some(meaning), _) if has_message => meaning,
        (_, 200..=299 | 400..=499) => PayMeaning::Undocumented,
        _ => PayMeaning::Unknown,
    }
}

/// The payment state of an accepted or refused payment; `None` for the other meanings.
pub fn pay_state(meaning: PayMeaning, scheduled: bool) -> Option<PaymentState> {
    match (meaning, scheduled) {
        (PayMeaning::Accepted, false) => Some(PaymentState::Succeeded),
        (PayMeaning::Accepted, true) => Some(PaymentState::Scheduled),
        (PayMeaning::Refused, _) => Some(PaymentState::Failed),
        (PayMeaning::Undocumented | PayMeaning::Unknown, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_shapes_settle_a_payment() {
        assert_eq!(pay_meaning(200, true), PayMeaning::Accepted);
        assert_eq!(pay_meaning(201, true), PayMeaning::Accepted);
        assert_eq!(pay_meaning(400, true), PayMeaning::Refused);
        // Without the message, or with any other 2xx/4xx: Switch said something undefined.
        for (status, has_message) in [
            (200, false),
            (201, false),
            (202, true),
            (204, false),
            (400, false),
            (401, true),
            (402, true),
            (403, true),
            (404, true),
            (409, true),
            (422, true),
            (429, false),
        ] {
            assert_eq!(
                pay_meaning(status, has_message),
                PayMeaning::Undocumented,
                "{status} {has_message}"
            );
        }
        for status in [100, 301, 302, 500, 502, 503, 504] {
            assert_eq!(pay_meaning(status, true), PayMeaning::Unknown, "{status}");
        }
        assert_eq!(
            pay_state(PayMeaning::Accepted, true),
            Some(PaymentState::Scheduled)
        );
        assert_eq!(
            pay_state(PayMeaning::Refused, true),
            Some(PaymentState::Failed)
        );
        assert_eq!(pay_state(PayMeaning::Undocumented, false), None);
    }
}

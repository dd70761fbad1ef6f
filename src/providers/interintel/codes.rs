//! InterIntel `response_status` codes, kept as data. The billers README documents only `00`
//! (success); the other codes come from the sibling Airtime API on the same platform
//! (docs/providers.md §1.5), so a code is FAILED only when it is one of those documented refusals.
//! "Pending unless the provider clearly says otherwise": accepted-for-processing codes and every
//! code not listed here (including `96`, a system error that may have come after the money
//! moved) leave the payment PENDING.

use crate::domain::PaymentState;

/// The request succeeded.
pub const SUCCESS: &str = "00";

/// "Not found or missing configuration" in the sibling Airtime API; the billers spec documents
/// no code for "no transaction with this reference". A status query answering it leaves the
/// outcome unknown and never tells the gateway that the payment was not sent.
pub const NOT_FOUND: &str = "25";

/// Accepted for asynchronous processing: the answer comes later, from `bill_status`.
pub const ACCEPTED: &[&str] = &["09"];

/// Documented refusals: the payment was not made.
pub const FAILURES: &[(&str, &str)] = &[
    ("03", "institution mismatch"),
    ("25", "not found or missing configuration"),
    ("30", "invalid account number or network"),
    ("51", "insufficient float"),
    ("92", "product item not found"),
];

/// What a payment-answer code means for the payment.
pub fn payment_state(code: &str) -> PaymentState {
    if code == SUCCESS {
        PaymentState::Succeeded
    } else if is_failure(code) {
        PaymentState::Failed
    } else {
        PaymentState::Pending
    }
}

/// True for a documented refusal.
pub fn is_failure(code: &str) -> bool {
    FAILURES.iter().any(|(c, _)| *c == code)
}

/// True for a code that says the provider took the request and will answer later.
pub fn is_accepted(code: &str) -> bool {
    ACCEPTED.contains(&code)
}

/// The documented meaning of a code, for answers that come without a message.
pub fn describe(code: &str) -> Option<&'static str> {
    match code {
        SUCCESS => Some("success"),
        "09" => Some("accepted for processing"),
        "96" => Some("system error"),
        _ => FAILURES.iter().find(|(c, _)| *c == code).map(|(_, m)| *m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_documented_answers_settle_a_payment() {
        assert_eq!(payment_state("00"), PaymentState::Succeeded);
        for failed in ["03", "25", "30", "51", "92"] {
            assert_eq!(payment_state(failed), PaymentState::Failed, "{failed}");
        }
        for pending in ["09", "96", "01", "", "000", "0"] {
            assert_eq!(payment_state(pending), PaymentState::Pending, "{pending:?}");
        }
        assert_eq!(describe("51"), Some("insufficient float"));
        assert_eq!(describe("77"), None);
    }
}

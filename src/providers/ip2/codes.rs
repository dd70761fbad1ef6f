//! IP2 status words and response codes, kept as data. Intelworld publishes no code list
//! (docs/providers.md §3.5): the words below are the ones a transaction's `TransactionStatus`
//! (or `PaymentStatus`) plainly means. Anything else, including a word added later, leaves a
//! payment PENDING: pending unless the provider clearly says otherwise.

use crate::domain::PaymentState;

/// `ResponseCode` of an accepted request ("0 for success"). It says the request was taken,
/// not that the money moved: the transaction's status decides.
pub const ACCEPTED: &str = "0";

/// Status words that mean the money moved (compared case-insensitively).
const SUCCEEDED: &[&str] = &[
    "successful",
    "success",
    "succeeded",
    "completed",
    "complete",
];

/// Status words that mean the transaction was refused and no money moved.
const FAILED: &[&str] = &[
    "failed",
    "failure",
    "declined",
    "rejected",
    "cancelled",
    "canceled",
    "insufficientfunds",
];

/// The payment state a `TransactionStatus` word means; unknown words are PENDING.
pub fn transaction_state(status: &str) -> PaymentState {
    let word: String = status
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .collect::<String>()
        .to_lowercase();
    if SUCCEEDED.contains(&word.as_str()) {
        PaymentState::Succeeded
    } else if FAILED.contains(&word.as_str()) {
        PaymentState::Failed
    } else {
        PaymentState::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clear_words_settle_a_payment() {
        assert_eq!(transaction_state("Successful"), PaymentState::Succeeded);
        assert_eq!(transaction_state("COMPLETED"), PaymentState::Succeeded);
        assert_eq!(transaction_state("Failed"), PaymentState::Failed);
        assert_eq!(
            transaction_state("Insufficient Funds"),
            PaymentState::Failed
        );
        for unclear in [
            "Pending",
            "Processing",
            "Submitted",
            "",
            "Reversal pending",
            "0",
        ] {
            assert_eq!(
                transaction_state(unclear),
                PaymentState::Pending,
                "{unclear}"
            );
        }
    }
}

//! OnePipe statuses, kept as data.
//!
//! The documented `status` values (Pay Electricity, "Possible response codes") decide; any other
//! status is PENDING: the gateway asks again rather than guess that money did not move. A
//! `Successful` that carries a non-empty `data.error` or `errors` is not a success (OnePipe's
//! own plugin treats it so); it is PENDING until a query says more. `Successful` and `Failed`
//! are both cross-checked against `provider_response.payment_status`: one that says otherwise
//! makes the payment PENDING, never SUCCEEDED or FAILED. Matching ignores ASCII case
//! (samples disagree on the casing of other fields, e.g. `mock_mode`).

use crate::domain::{payment::FulfilmentState, PaymentState};

/// The options call's success status.
pub const OPTIONS_DELIVERED: &str = "OptionsDelivered";

/// What a `status` says about a payment.
pub const STATUSES: &[(&str, PaymentState)] = &[
    ("Successful", PaymentState::Succeeded),
    ("Failed", PaymentState::Failed),
    ("WaitingForOTP", PaymentState::OtpRequired),
    ("PendingValidation", PaymentState::ValidationRequired),
];

/// The payment state of a `status`; unknown statuses (and `OptionsDelivered`, which is no
/// answer about a payment) are PENDING.
pub fn payment_state(status: &str) -> PaymentState {
    STATUSES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(status.trim()))
        .map(|(_, state)| *state)
        .unwrap_or(PaymentState::Pending)
}

/// `provider_response.payment_status` / `fulfillment_status` values ("Succesful" is the
/// spelling of the specification's sample, kept alongside the correct one).
const SUB_STATUSES: &[(&str, FulfilmentState)] = &[
    ("Successful", FulfilmentState::Delivered),
    ("Succesful", FulfilmentState::Delivered),
    ("Failed", FulfilmentState::Failed),
    ("Processing", FulfilmentState::Pending),
];

/// What `provider_response.fulfillment_status` says about delivery; `None` when absent or
/// unknown.
pub fn fulfilment_state(status: &str) -> Option<FulfilmentState> {
    SUB_STATUSES
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(status.trim()))
        .map(|(_, f)| *f)
}

/// Whether `provider_response.payment_status` contradicts a `Successful` envelope (anything
/// but a success or nothing at all): the payment is then PENDING.
pub fn payment_status_contradicts_success(payment_status: &str) -> bool {
    !payment_status.trim().is_empty()
        && fulfilment_state(payment_status) != Some(FulfilmentState::Delivered)
}

/// Whether `provider_response.payment_status` contradicts a `Failed` envelope (anything but
/// a failure or nothing at all): the payment is then PENDING, never FAILED.
pub fn payment_status_contradicts_failure(payment_status: &str) -> bool {
    !payment_status.trim().is_empty()
        && fulfilment_state(payment_status) != Some(FulfilmentState::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_statuses_map_and_others_are_pending() {
        assert_eq!(payment_state("Successful"), PaymentState::Succeeded);
        assert_eq!(payment_state("Failed"), PaymentState::Failed);
        assert_eq!(payment_state("WaitingForOTP"), PaymentState::OtpRequired);
        assert_eq!(payment_state("waitingforotp"), PaymentState::OtpRequired);
        assert_eq!(
            payment_state("PendingValidation"),
            PaymentState::ValidationRequired
        );
        for other in ["OptionsDelivered", "Processing", "Pending", "", "Success"] {
            assert_eq!(payment_state(other), PaymentState::Pending, "{other}");
        }
    }

    #[test]
    fn fulfilment_statuses_include_the_spec_spelling() {
        assert_eq!(
            fulfilment_state("Succesful"),
            Some(FulfilmentState::Delivered)
        );
        assert_eq!(
            fulfilment_state("Processing"),
            Some(FulfilmentState::Pending)
        );
        assert_eq!(fulfilment_state("Failed"), Some(FulfilmentState::Failed));
        assert_eq!(fulfilment_state("?"), None);
        assert!(payment_status_contradicts_success("Processing"));
        assert!(!payment_status_contradicts_success(""));
        assert!(!payment_status_contradicts_success("Successful"));
        assert!(payment_status_contradicts_failure("Successful"));
        assert!(payment_status_contradicts_failure("Succesful"));
        assert!(payment_status_contradicts_failure("Processing"));
        assert!(payment_status_contradicts_failure("Reversed?"));
        assert!(!payment_status_contradicts_failure("failed"));
        assert!(!payment_status_contradicts_failure(" "));
    }
}

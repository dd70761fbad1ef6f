//! Interswitch Quickteller response codes, kept as data.
//!
//! The code table decides; a code that is not in the table is PENDING, whatever
//! `ResponseCodeGrouping` says: the gateway asks again rather than guess that money did not
//! move. The grouping (SUCCESSFUL / FAILED / PENDING) must agree with the table, or the answer
//! is PENDING. Sources: Interswitch
//! Quickteller appendix of response codes (see docs/providers.md §5.6).

use crate::domain::PaymentState;

/// The success code of every Quickteller operation.
pub const SUCCESS: &str = "90000";

/// "Transaction not found" on a status query: the advice may not have arrived (yet).
pub const TRANSACTION_NOT_FOUND: &str = "30010";

/// Codes that say the request reference (or transfer code) was seen before: "unknown error,
/// check for a duplicate request reference, query the transaction" (`10001`) and "duplicate
/// transfer code" (`30020`). A duplicate answer is about an earlier request with our reference,
/// whose outcome it does not give: never a refusal (a FAILED would let the caller pay again
/// while the first request may have paid). The payment is PENDING, whatever the grouping says,
/// and the transaction query decides.
pub const DUPLICATES: &[&str] = &["10001", "30020"];

/// True for a duplicate-reference answer.
pub fn is_duplicate(code: &str) -> bool {
    DUPLICATES.contains(&code)
}

/// Codes that approve only part of the amount ("Approved, partial"). The payment is not
/// SUCCEEDED for the amount the caller asked: the gateway hands it to an operator with the
/// approved amount (`ApprovedAmount`) when Interswitch gives it.
pub const PARTIAL_APPROVALS: &[&str] = &["90010"];

/// True for a partial approval.
pub fn is_partial_approval(code: &str) -> bool {
    PARTIAL_APPROVALS.contains(&code)
}

/// What a payment response code says about the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMeaning {
    Succeeded,
    Failed,
    Pending,
}

/// Known codes. The [`DUPLICATES`] are deliberately PENDING.
pub const CODES: &[(&str, CodeMeaning, &str)] = &[
    ("90000", CodeMeaning::Succeeded, "Successful"),
    ("90010", CodeMeaning::Succeeded, "Approved, partial"),
    ("90011", CodeMeaning::Succeeded, "Approved, VIP"),
    ("90016", CodeMeaning::Succeeded, "Approved, update track 3"),
    (
        "10001",
        CodeMeaning::Pending,
        "Unknown error: query the transaction",
    ),
    ("10002", CodeMeaning::Failed, "Invalid request"),
    ("10003", CodeMeaning::Failed, "Unauthorized"),
    ("10010", CodeMeaning::Failed, "Partner not set up"),
    ("10011", CodeMeaning::Failed, "Service method not found"),
    ("10020", CodeMeaning::Failed, "Partner misconfigured"),
    ("10021", CodeMeaning::Failed, "Partner misconfigured"),
    ("10022", CodeMeaning::Failed, "Partner misconfigured"),
    ("10030", CodeMeaning::Failed, "Partner deactivated"),
    ("10040", CodeMeaning::Failed, "Wrong IP"),
    ("10200", CodeMeaning::Failed, "Disabled"),
    ("20010", CodeMeaning::Failed, "Node missing"),
    ("20020", CodeMeaning::Failed, "Node empty"),
    (
        "20021",
        CodeMeaning::Failed,
        "Invalid TerminalId or ClientId",
    ),
    ("20030", CodeMeaning::Failed, "Invalid value"),
    ("20040", CodeMeaning::Failed, "Date expected"),
    ("20041", CodeMeaning::Failed, "Numeric value expected"),
    ("20050", CodeMeaning::Failed, "Invalid value"),
    ("20060", CodeMeaning::Failed, "Date expected"),
    ("20061", CodeMeaning::Failed, "Entity location disabled"),
    ("20062", CodeMeaning::Failed, "Entity disabled"),
    ("30010", CodeMeaning::Pending, "Transaction not found"),
    (
        "30020",
        CodeMeaning::Pending,
        "Duplicate transfer code: query the transaction",
    ),
    ("30030", CodeMeaning::Failed, "Bank authorization needed"),
    (
        "40010",
        CodeMeaning::Failed,
        "Cash-out must be in multiples of 1000",
    ),
    // Interswitch's words are "beneficiary bank/biller service unavailable"; the answer is
    // final for this payment (FAILED), so the description says declined, not "try later".
    (
        "70120",
        CodeMeaning::Failed,
        "Declined, final: the beneficiary bank or biller could not take this payment (nothing was paid)",
    ),
];

/// The description of a known code.
pub fn describe(code: &str) -> Option<&'static str> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, d)| *d)
}

/// The payment state an advice answer says: PENDING unless the provider clearly says otherwise.
/// The code decides, from the table; a code not in the table is PENDING whatever the grouping
/// says. `ResponseCodeGrouping` must agree with the table: a contradiction is PENDING.
pub fn payment_state(code: &str, grouping: Option<&str>) -> PaymentState {
    let from_grouping = match grouping.map(|g| g.trim().to_ascii_uppercase()).as_deref() {
        Some("SUCCESSFUL") => Some(CodeMeaning::Succeeded),
        Some("FAILED") => Some(CodeMeaning::Failed),
        Some("PENDING") => Some(CodeMeaning::Pending),
        _ => None,
    };
    let from_table = CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, m, _)| *m);
    let meaning = match (from_table, from_grouping) {
        _ if is_duplicate(code) => CodeMeaning::Pending,
        (Some(t), Some(g)) if t != g => CodeMeaning::Pending,
        (Some(t), _) => t,
        (None, _) => CodeMeaning::Pending,
    };
    match meaning {
        CodeMeaning::Succeeded => PaymentState::Succeeded,
        CodeMeaning::Failed => PaymentState::Failed,
        CodeMeaning::Pending => PaymentState::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_decides_and_the_grouping_must_agree() {
        assert_eq!(payment_state("90000", None), PaymentState::Succeeded);
        assert_eq!(payment_state("90010", None), PaymentState::Succeeded);
        assert_eq!(payment_state("70120", None), PaymentState::Failed);
        assert_eq!(payment_state("10001", None), PaymentState::Pending);
        assert_eq!(payment_state("", None), PaymentState::Pending);
        // An unknown code is PENDING, never FAILED (nor SUCCEEDED), whatever the grouping.
        assert_eq!(payment_state("70001", None), PaymentState::Pending);
        assert_eq!(
            payment_state("70001", Some("FAILED")),
            PaymentState::Pending
        );
        assert_eq!(
            payment_state("12345", Some("successful")),
            PaymentState::Pending
        );
        // Agreement confirms; an unrecognised grouping is ignored.
        assert_eq!(payment_state("70120", Some("FAILED")), PaymentState::Failed);
        assert_eq!(
            payment_state("90000", Some("successful")),
            PaymentState::Succeeded
        );
        assert_eq!(
            payment_state("70120", Some("SOMETHING_NEW")),
            PaymentState::Failed
        );
        // Contradictions, and "query the transaction" codes, stay PENDING.
        assert_eq!(
            payment_state("10001", Some("FAILED")),
            PaymentState::Pending
        );
        assert_eq!(
            payment_state("10001", Some("SUCCESSFUL")),
            PaymentState::Pending
        );
        assert_eq!(
            payment_state("70120", Some("SUCCESSFUL")),
            PaymentState::Pending
        );
        assert_eq!(
            payment_state("90000", Some("FAILED")),
            PaymentState::Pending
        );
        assert_eq!(
            payment_state("90000", Some("PENDING")),
            PaymentState::Pending
        );
    }

    #[test]
    fn a_duplicate_reference_is_never_a_refusal() {
        for code in DUPLICATES {
            assert_eq!(describe(code).map(|d| d.contains("query")), Some(true));
            for grouping in [None, Some("FAILED"), Some("PENDING"), Some("SUCCESSFUL")] {
                assert_eq!(
                    payment_state(code, grouping),
                    PaymentState::Pending,
                    "{code} {grouping:?}"
                );
            }
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (code, _, _) in CODES {
            assert!(seen.insert(code), "duplicate {code}");
        }
    }
}

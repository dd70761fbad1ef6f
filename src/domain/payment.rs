//! Payments: the request (what to pay), the journal record (what the gateway knows), and the
//! provider's outcome. A record is PENDING until a provider answer says otherwise.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Money, ProviderId};

/// Where a payment stands. Only an explicit provider answer makes it `Succeeded` or `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    /// Outcome not known yet.
    Pending,
    Succeeded,
    Failed,
    OtpRequired,
    ValidationRequired,
    Reversed,
    /// Reconciliation ran its whole schedule without learning the outcome.
    NeedsAttention,
}

impl PaymentState {
    /// Final states never change again (except a reversal of a success).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Reversed)
    }

    /// Lower-case name for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::OtpRequired => "otp_required",
            Self::ValidationRequired => "validation_required",
            Self::Reversed => "reversed",
            Self::NeedsAttention => "needs_attention",
        }
    }
}

/// Which way the money moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentKind {
    Bill,
    Collection,
}

/// How the biller can reach the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub mobile_number: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// What the caller asked to pay: everything but the idempotency key and any secret. Two requests
/// with the same key must have the same order (compared by [`PaymentOrder::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentOrder {
    pub provider: ProviderId,
    pub kind: PaymentKind,
    pub biller_id: String,
    pub product_id: String,
    pub customer_id: String,
    pub amount: Money,
    pub contact: Contact,
}

impl PaymentOrder {
    /// SHA-256 (hex) of the order's canonical JSON. Holds no secret, so it may be stored.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a payment order always serializes");
        hex(&Sha256::digest(canonical))
    }
}

/// Where the one provider call of a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallPhase {
    /// The record was written at this time (unix ms); the provider has not been called. A
    /// payment left here by a stopped process was certainly never sent.
    Claimed { since_ms: i64 },
    /// The provider call was started at this time (unix ms) and has not returned yet.
    InFlight { since_ms: i64 },
    /// The provider call returned (with an answer or with an unknown outcome).
    Returned,
}

/// The provider's answer about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOutcome {
    pub state: PaymentState,
    pub provider_code: String,
    pub provider_message: String,
    pub provider_transaction_id: Option<String>,
    pub fulfilment_token: Option<String>,
}

impl PaymentOutcome {
    /// An outcome the gateway could not learn: the payment keeps its state (PENDING for a new
    /// payment). Recognised by an empty provider code.
    pub fn unknown(why: impl Into<String>) -> Self {
        Self {
            state: PaymentState::Pending,
            provider_code: String::new(),
            provider_message: why.into(),
            provider_transaction_id: None,
            fulfilment_token: None,
        }
    }
}

/// The journal entry of one payment. Written before the provider is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub payment_id: String,
    pub request_id: String,
    pub fingerprint: String,
    pub order: PaymentOrder,
    /// The reference the provider knows the payment by (Interswitch requestReference, ...).
    pub provider_reference: String,
    pub state: PaymentState,
    pub call: CallPhase,
    pub provider_code: String,
    pub provider_message: String,
    pub provider_transaction_id: String,
    pub fulfilment_token: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// How many status queries have been made (GetPayment and reconciliation).
    pub status_checks: u32,
    /// How many steps of the reconciliation schedule have run; only the reconciler moves it.
    #[serde(default)]
    pub reconcile_checks: u32,
}

impl PaymentRecord {
    /// A new record for `request_id`, claimed at `now_ms` and not sent yet: PENDING, with the
    /// provider reference it will be sent with.
    pub fn claimed(
        request_id: String,
        order: PaymentOrder,
        provider_reference: String,
        now_ms: i64,
    ) -> Self {
        Self {
            payment_id: Self::id_for_request(&request_id),
            request_id,
            fingerprint: order.fingerprint(),
            order,
            provider_reference,
            state: PaymentState::Pending,
            call: CallPhase::Claimed { since_ms: now_ms },
            provider_code: String::new(),
            provider_message: String::new(),
            provider_transaction_id: String::new(),
            fulfilment_token: String::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            status_checks: 0,
            reconcile_checks: 0,
        }
    }

    /// The payment id for an idempotency key: stable, so the key alone finds the payment.
    pub fn id_for_request(request_id: &str) -> String {
        let digest = Sha256::digest(format!("billpay/payment/{request_id}"));
        format!("pay_{}", &hex(&digest)[..32])
    }

    /// Applies a provider outcome. A final state is never replaced by a non-final one, and a
    /// succeeded payment only moves on to reversed.
    pub fn apply(&mut self, outcome: PaymentOutcome, now_ms: i64) {
        let unknown = outcome.state == PaymentState::Pending && outcome.provider_code.is_empty();
        let settled = self.state.is_final() || self.state == PaymentState::NeedsAttention;
        let allowed = match (self.state, outcome.state) {
            _ if unknown => false,
            (PaymentState::Succeeded, PaymentState::Reversed) => true,
            (s, _) if s.is_final() => false,
            // Handed to an operator: only a final answer takes it back.
            (PaymentState::NeedsAttention, next) => next.is_final(),
            _ => true,
        };
        if allowed {
            self.state = outcome.state;
        }
        // The details follow the state: a refused answer does not relabel a settled payment,
        // and an unknown outcome (no code) keeps the last explicit code.
        if allowed || !settled {
            if !outcome.provider_code.is_empty() {
                self.provider_code = outcome.provider_code;
            }
            if !outcome.provider_message.is_empty() {
                self.provider_message = outcome.provider_message;
            }
            if let Some(id) = outcome.provider_transaction_id {
                self.provider_transaction_id = id;
            }
            if let Some(token) = outcome.fulfilment_token {
                self.fulfilment_token = token;
            }
        }
        self.updated_at_ms = now_ms;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn record(state: PaymentState) -> PaymentRecord {
        let order = PaymentOrder {
            provider: ProviderId::Interswitch,
            kind: PaymentKind::Bill,
            biller_id: String::new(),
            product_id: "p".into(),
            customer_id: "c".into(),
            amount: Money::new(Currency::Ngn, 1),
            contact: Contact::default(),
        };
        PaymentRecord {
            state,
            call: CallPhase::Returned,
            ..PaymentRecord::claimed("r".into(), order, "1".into(), 0)
        }
    }

    fn outcome(state: PaymentState) -> PaymentOutcome {
        PaymentOutcome {
            state,
            provider_code: "X".into(),
            provider_message: String::new(),
            provider_transaction_id: None,
            fulfilment_token: None,
        }
    }

    #[test]
    fn final_states_do_not_regress() {
        let mut r = record(PaymentState::Succeeded);
        r.apply(outcome(PaymentState::Pending), 1);
        assert_eq!(r.state, PaymentState::Succeeded);
        r.apply(outcome(PaymentState::Failed), 2);
        assert_eq!(r.state, PaymentState::Succeeded);
        r.apply(outcome(PaymentState::Reversed), 3);
        assert_eq!(r.state, PaymentState::Reversed);
        let mut f = record(PaymentState::Failed);
        f.apply(outcome(PaymentState::Succeeded), 1);
        assert_eq!(f.state, PaymentState::Failed);
        let mut p = record(PaymentState::Pending);
        p.apply(outcome(PaymentState::Succeeded), 1);
        assert_eq!(p.state, PaymentState::Succeeded);
    }

    #[test]
    fn an_operator_payment_only_leaves_for_a_final_answer() {
        let mut r = record(PaymentState::NeedsAttention);
        r.provider_message = "settle with the provider".into();
        r.apply(outcome(PaymentState::Pending), 1);
        assert_eq!(r.state, PaymentState::NeedsAttention);
        assert_eq!(r.provider_message, "settle with the provider");
        assert_eq!(r.provider_code, "");
        r.apply(outcome(PaymentState::Failed), 2);
        assert_eq!(
            (r.state, r.provider_code.as_str()),
            (PaymentState::Failed, "X")
        );
    }

    #[test]
    fn a_refused_answer_does_not_relabel_a_final_payment() {
        let mut r = record(PaymentState::Succeeded);
        r.provider_code = "90000".into();
        r.apply(outcome(PaymentState::Pending), 1);
        r.apply(PaymentOutcome::unknown("outcome unknown: timeout"), 2);
        assert_eq!(r.provider_code, "90000");
        assert_eq!(r.provider_message, "");
        let mut p = record(PaymentState::Pending);
        p.apply(PaymentOutcome::unknown("outcome unknown: timeout"), 1);
        assert_eq!(p.provider_message, "outcome unknown: timeout");
    }

    #[test]
    fn payment_id_is_stable_per_request_id() {
        let a = PaymentRecord::id_for_request("abc");
        assert_eq!(a, PaymentRecord::id_for_request("abc"));
        assert_ne!(a, PaymentRecord::id_for_request("abd"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn fingerprint_changes_with_amount() {
        let a = record(PaymentState::Pending).order;
        let mut b = a.clone();
        b.amount.minor_units += 1;
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
    }
}

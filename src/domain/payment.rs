//! Payments: the request (what to pay), the journal record (what the gateway knows), and the
//! provider's outcome. A record is PENDING until a provider answer says otherwise.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{options::PaymentOptions, Money, ProviderId};

/// Where a payment stands. Only an explicit provider answer makes it `Succeeded` or `Failed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    /// Outcome not known yet.
    #[default]
    Pending,
    Succeeded,
    Failed,
    OtpRequired,
    ValidationRequired,
    Reversed,
    /// Reconciliation ran its whole schedule without learning the outcome.
    NeedsAttention,
    /// The provider accepted the payment to make later (Switch, InterIntel scheduled sends).
    Scheduled,
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
            Self::Scheduled => "scheduled",
        }
    }

    /// The `billpay.v1.PaymentState` value name (`PAYMENT_STATE_SUCCEEDED`), as error
    /// messages and ErrorInfo metadata name it.
    pub fn proto_name(self) -> &'static str {
        match self {
            Self::Pending => "PAYMENT_STATE_PENDING",
            Self::Succeeded => "PAYMENT_STATE_SUCCEEDED",
            Self::Failed => "PAYMENT_STATE_FAILED",
            Self::OtpRequired => "PAYMENT_STATE_OTP_REQUIRED",
            Self::ValidationRequired => "PAYMENT_STATE_VALIDATION_REQUIRED",
            Self::Reversed => "PAYMENT_STATE_REVERSED",
            Self::NeedsAttention => "PAYMENT_STATE_NEEDS_ATTENTION",
            Self::Scheduled => "PAYMENT_STATE_SCHEDULED",
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
    /// Free text for the provider (OnePipe `transaction_desc`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// String metadata passed to the provider (OnePipe `meta`, IP2 `Metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Values of the product's input fields, by field key (Switch plan inputs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// The total the caller expects to be charged (amount plus fees and tax); a provider whose
    /// price differs refuses the payment before sending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_total: Option<Money>,
    /// Provider-specific options (no secrets).
    #[serde(default, skip_serializing_if = "PaymentOptions::is_none")]
    pub options: PaymentOptions,
}

impl PaymentOrder {
    /// An order with only the common fields set.
    pub fn new(
        provider: ProviderId,
        kind: PaymentKind,
        product_id: impl Into<String>,
        customer_id: impl Into<String>,
        amount: Money,
    ) -> Self {
        Self {
            provider,
            kind,
            biller_id: String::new(),
            product_id: product_id.into(),
            customer_id: customer_id.into(),
            amount,
            contact: Contact::default(),
            description: String::new(),
            metadata: BTreeMap::new(),
            inputs: BTreeMap::new(),
            expected_total: None,
            options: PaymentOptions::None,
        }
    }

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

/// Which follow-up of a payment is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FollowUpKind {
    OtpValidation,
    Reversal,
}

/// A follow-up (OTP validation or reversal) whose provider call may be running: set on the
/// payment with compare-and-swap before the call and cleared in the same write as its outcome,
/// so a second follow-up under another `request_id` is refused instead of sent. It expires (a
/// process that stopped mid-call cannot clear it) `payments.in_flight_expiry_ms` after it was
/// set, which is longer than any provider's longest call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpMark {
    pub kind: FollowUpKind,
    /// The follow-up's own `request_id`.
    pub request_id: String,
    /// Unix milliseconds after which the mark no longer holds.
    pub expires_at_ms: i64,
}

impl FollowUpMark {
    /// True while the mark holds at `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// Whether the biller delivered what was paid for (a payment can succeed while delivery is
/// still processing or failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FulfilmentState {
    Pending,
    Delivered,
    Failed,
}

/// What a provider says beyond the state: charges, delivery, scheduling, required inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentExtras {
    /// The provider's fee for the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<Money>,
    /// What the customer was charged in all (amount + fee + tax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    /// Delivery of what was paid for, when the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment_state: Option<FulfilmentState>,
    /// Delivery details (units, narration, ...), verbatim from the provider. No secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fulfilment_details: BTreeMap<String, String>,
    /// When a SCHEDULED payment will be made, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at_ms: Option<i64>,
    /// Inputs the provider asks for before it goes on (OnePipe PendingValidation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_inputs: Vec<String>,
    /// The amount the provider approved when it differs from the amount sent (partial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_amount: Option<Money>,
}

impl PaymentExtras {
    /// Takes every field `other` sets.
    fn merge(&mut self, other: PaymentExtras) {
        if other.fee.is_some() {
            self.fee = other.fee;
        }
        if other.total.is_some() {
            self.total = other.total;
        }
        if other.fulfilment_state.is_some() {
            self.fulfilment_state = other.fulfilment_state;
        }
        self.fulfilment_details.extend(other.fulfilment_details);
        if other.scheduled_at_ms.is_some() {
            self.scheduled_at_ms = other.scheduled_at_ms;
        }
        self.required_inputs = other.required_inputs;
        if other.approved_amount.is_some() {
            self.approved_amount = other.approved_amount;
        }
    }
}

/// The provider's answer about a payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentOutcome {
    pub state: PaymentState,
    pub provider_code: String,
    pub provider_message: String,
    pub provider_transaction_id: Option<String>,
    pub fulfilment_token: Option<String>,
    pub extras: PaymentExtras,
    /// Set when the answer does not match the journal (another reference, customer, product or
    /// amount behind our reference, or only part of the amount approved), or when it is an
    /// answer the provider's documents do not define from a provider with no status query to
    /// learn more ([`PaymentOutcome::undocumented`]): why. Such an answer never settles a
    /// payment; the gateway records it and hands the payment to an operator (NEEDS_ATTENTION).
    /// Adapters set it with [`PaymentOutcome::contradicting`], [`AnswerIdentity::check`] or
    /// [`PaymentOutcome::undocumented`]; [`PaymentOutcome::checked_against`] adds the
    /// partial-approval rule for every provider.
    pub mismatch: Option<String>,
    /// The provider says it has no payment with this reference at all (Interswitch `30010`):
    /// an unknown outcome that also tells the gateway a payment it never confirmed as sent was
    /// indeed not sent.
    pub reference_not_found: bool,
}

/// The fields of a provider's answer that identify which payment it is about, as the provider
/// returned them (`None`: the answer does not carry it). Every field present must match the
/// journal for the answer to settle the payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerIdentity {
    /// Our reference, echoed back.
    pub reference: Option<String>,
    pub customer_id: Option<String>,
    /// The product / payment code paid for.
    pub product_id: Option<String>,
    /// The amount, converted from the provider's unit; `Err` holds the text that did not
    /// convert (which matches nothing).
    pub amount: Option<Result<Money, String>>,
}

impl AnswerIdentity {
    /// Every way the answer differs from `record`, for the operator; empty when it matches.
    pub fn differences(&self, record: &PaymentRecord) -> Vec<String> {
        let mut out = Vec::new();
        let mut compare = |what: &str, theirs: &Option<String>, ours: &str| {
            if let Some(theirs) = theirs {
                if theirs.trim() != ours {
                    out.push(format!("{what} {theirs:?} (ours {ours:?})"));
                }
            }
        };
        compare("reference", &self.reference, &record.provider_reference);
        compare("customer", &self.customer_id, &record.order.customer_id);
        compare("product", &self.product_id, &record.order.product_id);
        match &self.amount {
            Some(Ok(amount)) if *amount != record.order.amount => out.push(format!(
                "amount {} {} (ours {} {})",
                amount.minor_units_string(),
                amount.currency.code(),
                record.order.amount.minor_units_string(),
                record.order.amount.currency.code()
            )),
            Some(Err(text)) => out.push(format!("unreadable amount {text:?}")),
            _ => {}
        }
        out
    }

    /// `outcome`, marked as a mismatch when the answer differs from `record`.
    pub fn check(&self, record: &PaymentRecord, outcome: PaymentOutcome) -> PaymentOutcome {
        let differences = self.differences(record);
        if differences.is_empty() {
            return outcome;
        }
        outcome.contradicting(format!(
            "the provider's answer is not about this payment: {}",
            differences.join(", ")
        ))
    }
}

impl PaymentOutcome {
    /// An explicit provider answer: `state` with the provider's code and message verbatim.
    pub fn answered(
        state: PaymentState,
        provider_code: impl Into<String>,
        provider_message: impl Into<String>,
    ) -> Self {
        Self {
            state,
            provider_code: provider_code.into(),
            provider_message: provider_message.into(),
            ..Self::default()
        }
    }

    /// An answer the provider's documents do not define, from a provider that has no status
    /// query: neither a success nor a refusal can be read from it, and nothing can be asked
    /// later, so the payment goes to an operator (NEEDS_ATTENTION) with the answer recorded:
    /// `code` (the HTTP status, say) and `answer` (what the provider said), and `why`.
    pub fn undocumented(
        code: impl Into<String>,
        answer: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        Self::answered(PaymentState::Pending, code, answer).contradicting(why)
    }

    /// An outcome the gateway could not learn: the payment keeps its state (PENDING for a new
    /// payment). Recognised by an empty provider code.
    pub fn unknown(why: impl Into<String>) -> Self {
        Self {
            state: PaymentState::Pending,
            provider_message: why.into(),
            ..Self::default()
        }
    }

    /// An unknown outcome because the provider has no payment with this reference.
    pub fn reference_not_found(why: impl Into<String>) -> Self {
        Self {
            reference_not_found: true,
            ..Self::unknown(why)
        }
    }

    /// True for [`PaymentOutcome::unknown`].
    pub fn is_unknown(&self) -> bool {
        self.state == PaymentState::Pending
            && self.provider_code.is_empty()
            && self.mismatch.is_none()
    }

    /// This answer, marked as not matching the journal (`why`): it will not settle the payment.
    pub fn contradicting(mut self, why: impl Into<String>) -> Self {
        let why = why.into();
        self.mismatch = Some(match self.mismatch.take() {
            Some(earlier) => format!("{earlier}; {why}"),
            None => why,
        });
        self
    }

    /// Applies the rules every provider's answer must meet before it may settle `record`: a
    /// success for an approved amount other than the full amount is not a success.
    pub fn checked_against(self, record: &PaymentRecord) -> Self {
        match self.extras.approved_amount {
            Some(approved)
                if self.state == PaymentState::Succeeded && approved != record.order.amount =>
            {
                let why = format!(
                    "the provider approved {} {} of {} {}",
                    approved.minor_units_string(),
                    approved.currency.code(),
                    record.order.amount.minor_units_string(),
                    record.order.amount.currency.code()
                );
                self.contradicting(why)
            }
            _ => self,
        }
    }

    /// The state this outcome moves a payment to: NEEDS_ATTENTION for a mismatch.
    pub fn effective_state(&self) -> PaymentState {
        if self.mismatch.is_some() {
            PaymentState::NeedsAttention
        } else {
            self.state
        }
    }
}

/// An operator's resolution of a payment, with the evidence given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The resolution's own idempotency key.
    pub request_id: String,
    /// The operator name the request claims (free text, not verified).
    pub operator: String,
    /// The authenticated caller that sent the resolution (its `[auth]` name; `anonymous` in
    /// mode `none`). Empty on entries recorded before it was kept.
    #[serde(default)]
    pub caller: String,
    pub from_state: PaymentState,
    pub to_state: PaymentState,
    pub provider_transaction_id: String,
    pub provider_code: String,
    pub note: String,
    /// Unix milliseconds.
    pub at_ms: i64,
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
    /// Scheduled checks in a row that got no answer (timeout, transport error, 5xx, open
    /// circuit). They do not use up schedule steps; they only space the retries out.
    #[serde(default)]
    pub unanswered_checks: u32,
    /// Charges, delivery and scheduling as the provider last reported them.
    #[serde(default)]
    pub extras: PaymentExtras,
    /// The store identity the payment was claimed under (see `store::identity`): a claimed
    /// payment is taken as never sent only if the store kept this identity since.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim_identity: String,
    /// Operator resolutions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<AuditEntry>,
    /// The catalog entry the payment was checked against and is sent with, as it was at the
    /// claim (providers that pay from the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<super::Product>,
    /// The caller that created the payment (`[auth]`; `anonymous` in mode `none`, empty on
    /// records written before callers were recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caller: String,
    /// The number of the provider's reference sequence the reference was made from (0 on
    /// records written before it was kept). `store recover` raises each provider's counter
    /// above the largest it finds, so a counter lost on its own shard never reissues a
    /// reference that a surviving record still holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reference_sequence: u64,
    /// The follow-up whose provider call may be running (see [`FollowUpMark`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpMark>,
    /// How many payment events the record has had (1: its creation); each change a caller
    /// can see moves it by one (`PaymentEvent.payment_revision`). 0 on records written before
    /// events were kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
            unanswered_checks: 0,
            extras: PaymentExtras::default(),
            claim_identity: String::new(),
            audit: Vec::new(),
            product: None,
            caller: String::new(),
            reference_sequence: 0,
            follow_up: None,
            revision: 1,
        }
    }

    /// The follow-up mark that still holds at `now_ms`, if any.
    pub fn live_follow_up(&self, now_ms: i64) -> Option<&FollowUpMark> {
        self.follow_up.as_ref().filter(|m| m.live(now_ms))
    }

    /// The payment id for an idempotency key: stable, so the key alone finds the payment.
    pub fn id_for_request(request_id: &str) -> String {
        let digest = Sha256::digest(format!("billpay/payment/{request_id}"));
        format!("pay_{}", &hex(&digest)[..32])
    }

    /// True when `outcome` contradicts this payment's final state: a different final state
    /// (other than a reversal of a success), or an answer that does not match the journal.
    pub fn contradicted_by(&self, outcome: &PaymentOutcome) -> bool {
        if !self.state.is_final() || outcome.is_unknown() {
            return false;
        }
        if outcome.mismatch.is_some() {
            return true;
        }
        outcome.state.is_final()
            && outcome.state != self.state
            && !(self.state == PaymentState::Succeeded && outcome.state == PaymentState::Reversed)
            && !(self.state == PaymentState::Reversed && outcome.state == PaymentState::Succeeded)
    }

    /// Applies a provider outcome. A final state is never replaced by a non-final one, and a
    /// succeeded payment only moves on to reversed. An answer that does not match the journal
    /// (`outcome.mismatch`) moves a payment that is not final to NEEDS_ATTENTION, with the
    /// provider's answer recorded.
    pub fn apply(&mut self, mut outcome: PaymentOutcome, now_ms: i64) {
        let unknown = outcome.is_unknown();
        let settled = self.state.is_final() || self.state == PaymentState::NeedsAttention;
        let target = outcome.effective_state();
        if let Some(why) = &outcome.mismatch {
            // An answer that names no state (undocumented) is quoted without one.
            let state = match outcome.state {
                PaymentState::Pending => String::new(),
                state => format!("{} ", state.name()),
            };
            outcome.provider_message = format!(
                "{why}; the provider answered {state}{:?}: {}",
                outcome.provider_code, outcome.provider_message
            );
        }
        let allowed = match (self.state, target) {
            _ if unknown => false,
            (PaymentState::Succeeded, PaymentState::Reversed) => true,
            (s, _) if s.is_final() => false,
            // Handed to an operator: only a final answer takes it back.
            (PaymentState::NeedsAttention, next) => next.is_final(),
            _ => true,
        };
        if allowed {
            self.state = target;
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
            self.extras.merge(outcome.extras);
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
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "p",
            "c",
            Money::new(Currency::Ngn, 1),
        );
        PaymentRecord {
            state,
            call: CallPhase::Returned,
            ..PaymentRecord::claimed("r".into(), order, "1".into(), 0)
        }
    }

    fn outcome(state: PaymentState) -> PaymentOutcome {
        PaymentOutcome::answered(state, "X", "")
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
    fn a_partial_approval_needs_an_operator_and_keeps_the_approved_amount() {
        let mut r = record(PaymentState::Pending);
        r.order.amount = Money::new(Currency::Ngn, 10_000);
        let mut partial = PaymentOutcome::answered(PaymentState::Succeeded, "90010", "partial");
        partial.extras.approved_amount = Some(Money::new(Currency::Ngn, 4_000));
        let checked = partial.checked_against(&r);
        assert!(checked.mismatch.is_some());
        r.apply(checked, 1);
        assert_eq!(r.state, PaymentState::NeedsAttention);
        assert_eq!(r.provider_code, "90010");
        assert!(
            r.provider_message
                .contains("approved 4000 NGN of 10000 NGN"),
            "{}",
            r.provider_message
        );
        assert_eq!(
            r.extras.approved_amount,
            Some(Money::new(Currency::Ngn, 4_000))
        );
        // The full amount approved is a plain success.
        let mut full = PaymentOutcome::answered(PaymentState::Succeeded, "90000", "");
        full.extras.approved_amount = Some(Money::new(Currency::Ngn, 10_000));
        assert!(full.checked_against(&r).mismatch.is_none());
    }

    #[test]
    fn an_answer_about_another_payment_never_settles() {
        let mut r = record(PaymentState::Pending);
        let identity = AnswerIdentity {
            reference: Some("1".into()),
            customer_id: Some("someone-else".into()),
            product_id: Some("p".into()),
            amount: Some(Ok(Money::new(Currency::Ngn, 1))),
        };
        let answer = identity.check(&r, outcome(PaymentState::Succeeded));
        assert!(!answer.is_unknown());
        r.apply(answer, 1);
        assert_eq!(r.state, PaymentState::NeedsAttention);
        assert!(
            r.provider_message.contains("customer \"someone-else\""),
            "{}",
            r.provider_message
        );
        let matching = AnswerIdentity {
            customer_id: Some("c".into()),
            ..identity.clone()
        };
        assert!(matching
            .differences(&record(PaymentState::Pending))
            .is_empty());
        let unreadable = AnswerIdentity {
            amount: Some(Err("1.5".into())),
            ..matching
        };
        assert_eq!(
            unreadable.differences(&record(PaymentState::Pending)).len(),
            1
        );
        // A final payment is not moved by a mismatch, but it is a contradiction.
        let mut done = record(PaymentState::Succeeded);
        let answer = identity.check(&done, outcome(PaymentState::Succeeded));
        assert!(done.contradicted_by(&answer));
        done.apply(answer, 2);
        assert_eq!(done.state, PaymentState::Succeeded);
        assert!(done.contradicted_by(&outcome(PaymentState::Failed)));
        assert!(!done.contradicted_by(&outcome(PaymentState::Succeeded)));
        assert!(!done.contradicted_by(&outcome(PaymentState::Reversed)));
    }

    /// A record without a follow-up writes no `follow_up` field (its bytes stay those older
    /// replicas write), and a mark holds until its expiry only.
    #[test]
    fn a_follow_up_mark_is_optional_and_expires() {
        let mut r = record(PaymentState::OtpRequired);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("follow_up"), "{json}");
        assert_eq!(serde_json::from_str::<PaymentRecord>(&json).unwrap(), r);
        r.follow_up = Some(FollowUpMark {
            kind: FollowUpKind::OtpValidation,
            request_id: "otp-1".into(),
            expires_at_ms: 1_000,
        });
        assert!(r.live_follow_up(999).is_some());
        assert!(r.live_follow_up(1_000).is_none());
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<PaymentRecord>(&json).unwrap(), r);
    }

    #[test]
    fn an_undocumented_answer_goes_to_an_operator_with_the_answer_recorded() {
        let answer = PaymentOutcome::undocumented("422", "{\"error\":\"x\"}", "not documented");
        assert!(!answer.is_unknown());
        assert_eq!(answer.effective_state(), PaymentState::NeedsAttention);
        let mut r = record(PaymentState::Pending);
        r.apply(answer, 1);
        assert_eq!(r.state, PaymentState::NeedsAttention);
        assert_eq!(r.provider_code, "422");
        assert_eq!(
            r.provider_message,
            "not documented; the provider answered \"422\": {\"error\":\"x\"}"
        );
    }

    #[test]
    fn payment_id_is_stable_per_request_id() {
        let a = PaymentRecord::id_for_request("abc");
        assert_eq!(a, PaymentRecord::id_for_request("abc"));
        assert_ne!(a, PaymentRecord::id_for_request("abd"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn new_order_fields_leave_old_fingerprints_alone() {
        // A record written before these fields existed must replay, not look reused.
        let order = record(PaymentState::Pending).order;
        let json = serde_json::to_string(&order).unwrap();
        for field in [
            "description",
            "metadata",
            "inputs",
            "expected_total",
            "options",
        ] {
            assert!(!json.contains(field), "{json}");
        }
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

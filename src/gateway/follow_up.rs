//! Follow-up operations that can move money or change provider state after a payment: OTP
//! validation, reversal and saved-bill deletion. Each has its own `request_id` and goes through
//! the same discipline as a payment: an idempotency record claimed with `SET NX` before the one
//! provider call, the call detached from the RPC, the outcome recorded for replays.
//!
//! A replay of the same request answers what the first one learned (for OTP and reversal, the
//! payment as it stands now); a different request under the same `request_id` is refused; a
//! request still running answers REQUEST_IN_FLIGHT. Secrets (the OTP, validation fields) are
//! never part of the record or its fingerprint.
//!
//! One OTP validation or reversal of a payment at a time: before its provider call the payment
//! itself is marked with it (a `FollowUpMark`, set with compare-and-swap on the stored record
//! after checking its state there), and the mark is cleared in the same write as the outcome.
//! While the mark holds, a follow-up under another `request_id` answers REQUEST_IN_FLIGHT
//! (`in_flight=another_request`) and is not sent; a caller whose deadline comes first hears
//! REQUEST_IN_FLIGHT (`in_flight=this_request`), never the unchanged payment.
//!
//! Like payment ids, a follow-up's `request_id` is per caller: its operation id is keyed with
//! the caller (`[auth] payment_id_key`), so two callers' equal request_ids are two operations
//! and an operation id cannot be computed without the key. The anonymous caller (mode `none`)
//! keeps the unkeyed ids.
//!
//! Outcomes: a provider answer is applied to the payment like any outcome (a wrong OTP keeps
//! OTP_REQUIRED, the right one settles it, a confirmed reversal makes it REVERSED). An unknown
//! outcome of an OTP validation moves the payment to PENDING (and answers it) so reconciliation
//! asks the provider; an unknown reversal answers PROVIDER_UNAVAILABLE and leaves the payment
//! SUCCEEDED for the next status query to correct. A provider refusal is answered as the provider's error and changes nothing.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::{ms, ownership::Release, payments::Next, Gateway};
use crate::domain::{
    payment::{CallPhase, FollowUpKind, FollowUpMark},
    Capability, PaymentOutcome, PaymentRecord, PaymentSecrets, PaymentState, ProviderError,
    ProviderId, Resource,
};
use crate::error::{FieldViolation, GatewayError};
use crate::store::keys;
use secrecy::ExposeSecret;

/// Which follow-up an operation record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Kind {
    ValidateOtp,
    Reverse,
    DeleteSavedBill,
    /// An operator settling a payment (`gateway::operator`).
    Resolve,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::ValidateOtp => "validate_payment",
            Self::Reverse => "reverse_payment",
            Self::DeleteSavedBill => "delete_saved_bill",
            Self::Resolve => "resolve_payment",
        }
    }

    /// Why a payment whose state does not allow this follow-up is refused, in words for the
    /// caller (after "payment \"pay_…\" is PAYMENT_STATE_…: ").
    fn refusal(self) -> &'static str {
        match self {
            Self::ValidateOtp => {
                "an OTP or validation fields are taken only while a payment is \
                 PAYMENT_STATE_OTP_REQUIRED or PAYMENT_STATE_VALIDATION_REQUIRED and its provider \
                 call has returned"
            }
            Self::Reverse => "only a PAYMENT_STATE_SUCCEEDED payment can be reversed",
            Self::DeleteSavedBill | Self::Resolve => "the operation is not possible in this state",
        }
    }
}

/// What the one provider call of an operation ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Ended {
    /// The provider answered; for payment follow-ups the answer is on the payment.
    Answered,
    /// The provider refused; nothing changed.
    Refused { code: String, message: String },
    /// No answer (timeout, 5xx, unreadable): the outcome is unknown.
    Unknown { message: String },
    /// The provider has no such object (a saved bill already deleted); nothing changed.
    NotFound { resource: Resource, name: String },
    /// The provider refused the gateway's own credentials; nothing changed.
    AuthFailed { status: u16 },
}

/// The idempotency record of one follow-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OperationRecord {
    pub(super) request_id: String,
    pub(super) kind: Kind,
    pub(super) provider: ProviderId,
    /// The payment id, or the saved bill id.
    pub(super) target: String,
    pub(super) fingerprint: String,
    pub(super) started_at_ms: i64,
    /// `None` while the provider call runs.
    ended: Option<Ended>,
    /// The operation id the record is stored under (not stored: it is the key). Kept here
    /// because the outcome is recorded by a detached task, outside the caller's scope.
    #[serde(skip)]
    id: String,
    /// Random, one per claim attempt: two duplicates started in the same millisecond write
    /// different bytes, so a claimer whose answer was lost knows by the stored bytes whether
    /// the record is its own (see `Gateway::guarded_claim`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    claim_token: String,
}

impl OperationRecord {
    fn new(
        request_id: &str,
        kind: Kind,
        provider: ProviderId,
        target: &str,
        fingerprint: String,
        now_ms: i64,
    ) -> Self {
        Self {
            request_id: request_id.to_owned(),
            kind,
            provider,
            target: target.to_owned(),
            fingerprint,
            started_at_ms: now_ms,
            ended: None,
            id: operation_id(request_id),
            claim_token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// The operation id of a follow-up's `request_id` for the current RPC's caller: keyed per
/// caller like payment ids (`auth::scoped_operation_id`), so two callers' equal request_ids
/// are two operations; the anonymous caller's is the unkeyed hash (records written before
/// callers existed keep answering). Call it in the RPC's task, where the caller is known.
fn operation_id(request_id: &str) -> String {
    crate::auth::scoped_operation_id(request_id).unwrap_or_else(|| {
        let digest = Sha256::digest(format!("billpay/operation/{request_id}"));
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    })
}

pub(super) fn fingerprint(kind: Kind, provider: ProviderId, target: &str, detail: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{provider}\n{target}\n{detail}", kind.name()));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the one provider call of a follow-up ended, from the adapter's result.
fn ended(result: &Result<PaymentOutcome, ProviderError>) -> Ended {
    match result {
        Ok(outcome) if outcome.is_unknown() => Ended::Unknown {
            message: outcome.provider_message.clone(),
        },
        Ok(_) => Ended::Answered,
        Err(e) => error_ended(e),
    }
}

fn error_ended(e: &ProviderError) -> Ended {
    match e {
        ProviderError::Timeout
        | ProviderError::Transport(_)
        | ProviderError::Upstream { .. }
        | ProviderError::Unreadable(_) => Ended::Unknown {
            message: format!("outcome unknown: {e}"),
        },
        ProviderError::Rejected { code, message } => Ended::Refused {
            code: code.clone(),
            message: message.clone(),
        },
        ProviderError::NotFound { resource, name } => Ended::NotFound {
            resource: *resource,
            name: name.clone(),
        },
        ProviderError::Auth { status } => Ended::AuthFailed { status: *status },
        other => Ended::Refused {
            code: String::new(),
            message: other.to_string(),
        },
    }
}

/// What a ValidatePaymentOtp request lacks (or carries wrongly) for the payment's state, as
/// field violations: OTP_REQUIRED needs the OTP; VALIDATION_REQUIRED takes no OTP (OnePipe's
/// PendingValidation asks for information, not an OTP, so none is encrypted into the call) and
/// at least one field; in both, every name of `required_inputs` must be in `given` (the
/// non-empty `fields`). Other states are the caller's PAYMENT_STATE_CONFLICT, not checked here.
fn validation_inputs(
    payment: &PaymentRecord,
    has_otp: bool,
    given: &[String],
) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    match payment.state {
        PaymentState::OtpRequired if !has_otp => violations.push(FieldViolation::new(
            "otp",
            "required: the payment is OTP_REQUIRED; send the OTP the customer received (4 to 8 digits)",
        )),
        PaymentState::ValidationRequired if has_otp => violations.push(FieldViolation::new(
            "otp",
            "must be empty: the payment is VALIDATION_REQUIRED, which takes its required_inputs in fields and no OTP",
        )),
        PaymentState::ValidationRequired
            if given.is_empty() && payment.extras.required_inputs.is_empty() =>
        {
            violations.push(FieldViolation::new(
                "fields",
                "required: the payment is VALIDATION_REQUIRED; send the inputs the provider asked for",
            ))
        }
        _ => {}
    }
    for name in &payment.extras.required_inputs {
        if !given.contains(name) {
            violations.push(FieldViolation::new(
                format!("fields[{name}]"),
                "required: the payment lists it in required_inputs",
            ));
        }
    }
    violations
}

/// The answer a finished operation gives: `Ok` to read the target again, or the refusal. An
/// OTP validation with an unknown outcome answers the payment, now PENDING (as CreatePayment
/// does); a reversal or deletion with an unknown outcome answers PROVIDER_UNAVAILABLE.
fn answer(record: &OperationRecord) -> Result<(), GatewayError> {
    let source = match &record.ended {
        None | Some(Ended::Answered) => return Ok(()),
        Some(Ended::Unknown { .. }) if record.kind == Kind::ValidateOtp => return Ok(()),
        Some(Ended::Refused { code, message }) => ProviderError::Rejected {
            code: code.clone(),
            message: message.clone(),
        },
        Some(Ended::Unknown { message }) => ProviderError::Unreadable(message.clone()),
        Some(Ended::NotFound { resource, name }) => ProviderError::NotFound {
            resource: *resource,
            name: name.clone(),
        },
        Some(Ended::AuthFailed { status }) => ProviderError::Auth { status: *status },
    };
    Err(GatewayError::provider(
        record.provider,
        record.kind.name(),
        source,
    ))
}

impl Gateway {
    /// Completes a payment waiting for an OTP or validation inputs (`secrets.otp`,
    /// `secrets.fields`), once per `request_id`.
    pub async fn validate_payment(
        self: &Arc<Self>,
        request_id: String,
        payment_id: String,
        secrets: PaymentSecrets,
        answer_within: Option<Duration>,
    ) -> Result<PaymentRecord, GatewayError> {
        let payment = self.payment_or_not_found(&payment_id).await?;
        let provider = self
            .provider(payment.order.provider, Capability::ValidatePaymentOtp)?
            .clone();
        let fields: Vec<&String> = secrets.fields.keys().collect();
        // Before OTPs were optional every validation carried one: a request without keeps
        // its own fingerprint, and records written before keep theirs.
        let detail = match secrets.otp {
            Some(_) => format!("{fields:?}"),
            None => format!("{fields:?} without otp"),
        };
        let ready = |p: &PaymentRecord| {
            matches!(
                p.state,
                PaymentState::OtpRequired | PaymentState::ValidationRequired
            ) && p.call == CallPhase::Returned
        };
        let has_otp = secrets.otp.is_some();
        let given: Vec<String> = secrets
            .fields
            .iter()
            .filter(|(_, v)| !v.expose_secret().trim().is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        let inputs = move |p: &PaymentRecord| validation_inputs(p, has_otp, &given);
        self.payment_follow_up(
            Kind::ValidateOtp,
            request_id,
            payment,
            &detail,
            ready,
            inputs,
            answer_within,
            move |this, payment, request_id| async move {
                let result = provider.validate_payment(&payment, &secrets).await;
                this.settle_follow_up(&payment, Kind::ValidateOtp, &request_id, result)
                    .await
            },
        )
        .await
    }

    /// Asks the provider to reverse a SUCCEEDED payment, once per `request_id`.
    pub async fn reverse_payment(
        self: &Arc<Self>,
        request_id: String,
        payment_id: String,
        reason: String,
        answer_within: Option<Duration>,
    ) -> Result<PaymentRecord, GatewayError> {
        let payment = self.payment_or_not_found(&payment_id).await?;
        let provider = self
            .provider(payment.order.provider, Capability::ReversePayment)?
            .clone();
        let detail = reason.clone();
        self.payment_follow_up(
            Kind::Reverse,
            request_id,
            payment,
            &detail,
            |p| p.state == PaymentState::Succeeded,
            |_| Vec::new(),
            answer_within,
            move |this, payment, request_id| async move {
                let result = provider.reverse_payment(&payment, &reason).await;
                this.settle_follow_up(&payment, Kind::Reverse, &request_id, result)
                    .await
            },
        )
        .await
    }

    /// Deletes a saved bill at the provider, once per `request_id`. With `release` (a caller
    /// deleting a bill it saved), that caller's claim on it is dropped: before the operation
    /// when the bill stays at the provider for other callers (nothing is sent then), after the
    /// provider confirmed the deletion otherwise.
    pub(super) async fn delete_saved_bill(
        self: &Arc<Self>,
        request_id: String,
        id: ProviderId,
        saved_bill_id: String,
        release: Option<Release>,
    ) -> Result<(), GatewayError> {
        let provider = self.provider(id, Capability::SavedBills)?.clone();
        let print = fingerprint(Kind::DeleteSavedBill, id, &saved_bill_id, "");
        if let Some(replayed) = self
            .replayed_deletion(&request_id, id, &saved_bill_id)
            .await?
        {
            return replayed;
        }
        // Shared with other callers: drop this caller's claim first; the bill stays at the
        // provider unless the others dropped theirs meanwhile (then this deletion sends it).
        let mut keep_at_provider = false;
        if let Some(release) = release.as_ref().filter(|r| r.keep_at_provider) {
            keep_at_provider = self.release_saved_bill(id, release).await? > 0;
        }
        let record = match self
            .claim_operation(
                &request_id,
                Kind::DeleteSavedBill,
                id,
                &saved_bill_id,
                print,
            )
            .await?
        {
            Ok(won) => won,
            Err(existing) => return answer(&existing),
        };
        let this = self.clone();
        let done = self
            .tasks
            .spawn(async move {
                let ended = if keep_at_provider {
                    Ended::Answered
                } else {
                    match provider.delete_saved_bill(&record.target).await {
                        Ok(()) => Ended::Answered,
                        Err(e) => error_ended(&e),
                    }
                };
                if let Some(release) = release.filter(|r| !r.keep_at_provider) {
                    if matches!(ended, Ended::Answered) {
                        if let Err(e) = this.release_saved_bill(id, &release).await {
                            // The bill is gone at the provider; the stale claim only matches
                            // a bill saved again for the same biller and customer.
                            tracing::warn!(error = %e, "saved bill deleted; its owner record stays");
                        }
                    }
                }
                this.finish_operation(record, ended).await
            })
            .await
            .map_err(|e| GatewayError::Internal(format!("saved-bill deletion task failed: {e}")))?;
        answer(&done)
    }

    /// The answer of a saved-bill deletion already made under `request_id` (found under the
    /// current `payment_id_key` or an earlier one): `None` when there is none. The same
    /// request_id for another bill answers IDEMPOTENCY_KEY_REUSED.
    pub(super) async fn replayed_deletion(
        &self,
        request_id: &str,
        id: ProviderId,
        saved_bill_id: &str,
    ) -> Result<Option<Result<(), GatewayError>>, GatewayError> {
        let Some(existing) = self.load_operation(request_id).await? else {
            return Ok(None);
        };
        if existing.fingerprint != fingerprint(Kind::DeleteSavedBill, id, saved_bill_id, "") {
            return Ok(Some(Err(GatewayError::IdempotencyKeyReused {
                request_id: existing.request_id,
            })));
        }
        Ok(Some(answer(&existing)))
    }

    async fn payment_or_not_found(&self, payment_id: &str) -> Result<PaymentRecord, GatewayError> {
        self.load_payment(payment_id)
            .await?
            .ok_or_else(|| GatewayError::not_found(Resource::Payment, payment_id))
    }

    /// The shared path of OTP validation and reversal: replay or claim, mark the payment (the
    /// state checked again in the same compare-and-swap), run `call` detached, answer the
    /// payment as it then stands.
    ///
    /// The mark is what keeps follow-ups one at a time: a second follow-up under another
    /// `request_id` while it holds answers REQUEST_IN_FLIGHT (`in_flight=another_request`) and
    /// sends nothing, so a quick refusal of a second OTP can never overwrite what a slow first
    /// one settled. A caller whose deadline comes before the provider answers is told
    /// REQUEST_IN_FLIGHT (`in_flight=this_request`), not the unchanged payment (which would
    /// read as "wrong OTP").
    #[allow(clippy::too_many_arguments)]
    async fn payment_follow_up<F, Fut>(
        self: &Arc<Self>,
        kind: Kind,
        request_id: String,
        payment: PaymentRecord,
        detail: &str,
        ready: impl Fn(&PaymentRecord) -> bool,
        inputs: impl Fn(&PaymentRecord) -> Vec<FieldViolation>,
        answer_within: Option<Duration>,
        call: F,
    ) -> Result<PaymentRecord, GatewayError>
    where
        F: FnOnce(Arc<Self>, PaymentRecord, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Ended> + Send + 'static,
    {
        let deadline = answer_within.map(|d| tokio::time::Instant::now() + d);
        let provider = payment.order.provider;
        let print = fingerprint(kind, provider, &payment.payment_id, detail);
        if let Some(existing) = self.load_operation(&request_id).await? {
            return self.replay_operation(existing, &print).await;
        }
        // Checked on the snapshot for a quick answer; checked again under the mark.
        if !ready(&payment) {
            return Err(GatewayError::PaymentStateConflict {
                payment_id: payment.payment_id,
                state: payment.state,
                refusal: kind.refusal(),
            });
        }
        let violations = inputs(&payment);
        if !violations.is_empty() {
            return Err(GatewayError::InvalidRequest(violations));
        }
        let payment_id = payment.payment_id.clone();
        let (marked, set) = self
            .mark_follow_up(kind, &request_id, &payment_id, &ready, &inputs)
            .await?;
        let record = match self
            .claim_operation(&request_id, kind, provider, &payment_id, print.clone())
            .await
        {
            Ok(Ok(won)) => won,
            // A duplicate of this request_id claimed it: the mark is its own.
            Ok(Err(existing)) => return self.replay_operation(existing, &print).await,
            Err(e) => {
                if let Some(mark) = set {
                    self.unmark_follow_up(&payment_id, &mark).await;
                }
                return Err(e);
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let this = self.clone();
        let own_request = request_id.clone();
        self.tasks.spawn(async move {
            let ended = call(this.clone(), marked, own_request).await;
            let done = this.finish_operation(record, ended).await;
            let _ = done_tx.send(done);
        });
        let finished = match deadline {
            Some(at) => tokio::time::timeout_at(at, done_rx).await.ok(),
            None => Some(done_rx.await),
        };
        match finished {
            Some(Ok(done)) => answer(&done)?,
            // Still running: the caller can tell "still checking" from "wrong OTP".
            None => {
                return Err(GatewayError::FollowUpInFlight {
                    payment_id,
                    request_id,
                    this_request: true,
                    retry_after: ms(self.payments.in_flight_retry_ms),
                })
            }
            Some(Err(_)) => {}
        }
        self.payment_or_not_found(&payment_id).await
    }

    /// Sets the follow-up mark of `request_id` on the payment with compare-and-swap, after
    /// checking `ready` and `inputs` on the stored record. Answers the marked payment, and the
    /// mark when this call set it (`None`: a duplicate of the same `request_id` holds it).
    /// Another request's live mark answers REQUEST_IN_FLIGHT (`in_flight=another_request`).
    async fn mark_follow_up(
        &self,
        kind: Kind,
        request_id: &str,
        payment_id: &str,
        ready: &impl Fn(&PaymentRecord) -> bool,
        inputs: &impl Fn(&PaymentRecord) -> Vec<FieldViolation>,
    ) -> Result<(PaymentRecord, Option<FollowUpMark>), GatewayError> {
        enum Found {
            Set(FollowUpMark),
            Ours,
            Another,
            NotReady(PaymentState),
            Invalid(Vec<FieldViolation>),
        }
        let mark_kind = match kind {
            Kind::Reverse => FollowUpKind::Reversal,
            _ => FollowUpKind::OtpValidation,
        };
        let expiry = self.payments.in_flight_expiry_ms as i64;
        let mut found = Found::Ours;
        let updated = self
            .update_payment(
                payment_id,
                Next::Keep,
                crate::gateway::events::Cause::FollowUp,
                |r, now| {
                    if let Some(mark) = r.live_follow_up(now) {
                        found = if mark.request_id == request_id {
                            Found::Ours
                        } else {
                            Found::Another
                        };
                        return false;
                    }
                    if !ready(r) {
                        found = Found::NotReady(r.state);
                        return false;
                    }
                    let violations = inputs(r);
                    if !violations.is_empty() {
                        found = Found::Invalid(violations);
                        return false;
                    }
                    let mark = FollowUpMark {
                        kind: mark_kind,
                        request_id: request_id.to_owned(),
                        expires_at_ms: now + expiry,
                    };
                    r.follow_up = Some(mark.clone());
                    found = Found::Set(mark);
                    true
                },
            )
            .await?;
        match found {
            Found::Set(mark) => {
                let record = updated.ok_or_else(|| GatewayError::Internal("mark lost".into()))?;
                Ok((record, Some(mark)))
            }
            Found::Ours => Ok((self.payment_or_not_found(payment_id).await?, None)),
            Found::Another => Err(GatewayError::FollowUpInFlight {
                payment_id: payment_id.to_owned(),
                request_id: request_id.to_owned(),
                this_request: false,
                retry_after: ms(self.payments.in_flight_retry_ms),
            }),
            Found::NotReady(state) => Err(GatewayError::PaymentStateConflict {
                payment_id: payment_id.to_owned(),
                state,
                refusal: kind.refusal(),
            }),
            Found::Invalid(violations) => Err(GatewayError::InvalidRequest(violations)),
        }
    }

    /// Removes `mark` (exactly it) from the payment: its follow-up sent nothing, or ended.
    /// Left in place on a store error; it expires.
    async fn unmark_follow_up(&self, payment_id: &str, mark: &FollowUpMark) {
        let removed = self
            .update_payment(
                payment_id,
                Next::Keep,
                crate::gateway::events::Cause::FollowUp,
                |r, _| {
                    let ours = r.follow_up.as_ref() == Some(mark);
                    if ours {
                        r.follow_up = None;
                    }
                    ours
                },
            )
            .await;
        if let Err(e) = removed {
            tracing::warn!(payment_id, error = %e, "follow-up mark not removed; it expires");
        }
    }

    /// Removes the follow-up mark of `request_id`, retrying through a short store outage: until
    /// it is gone (or expired) no other follow-up of the payment can start.
    async fn clear_follow_up(&self, payment_id: &str, request_id: &str) {
        let mut pause = Duration::from_millis(100);
        for _ in 0..6 {
            let cleared = self
                .update_payment(
                    payment_id,
                    Next::Keep,
                    crate::gateway::events::Cause::FollowUp,
                    |r, _| {
                        let ours = r
                            .follow_up
                            .as_ref()
                            .is_some_and(|m| m.request_id == request_id);
                        super::payments::clear_follow_up(r, request_id);
                        ours
                    },
                )
                .await;
            match cleared {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(payment_id, error = %e, "follow-up mark not cleared yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        tracing::error!(payment_id, "follow-up mark not cleared; it expires");
    }

    /// Applies a follow-up's provider result to the payment, clears the follow-up's mark in the
    /// same write, and says how the call ended.
    async fn settle_follow_up(
        &self,
        payment: &PaymentRecord,
        kind: Kind,
        request_id: &str,
        result: Result<PaymentOutcome, ProviderError>,
    ) -> Ended {
        let ended = ended(&result);
        let id = &payment.payment_id;
        match (&ended, result) {
            (Ended::Answered, Ok(outcome)) => {
                let refused_reversal =
                    kind == Kind::Reverse && outcome.state != PaymentState::Reversed;
                if refused_reversal {
                    // The provider answered but did not reverse: the payment stands.
                    self.clear_follow_up(id, request_id).await;
                    return Ended::Refused {
                        code: outcome.provider_code,
                        message: outcome.provider_message,
                    };
                }
                self.record_outcome_clearing(id, outcome, request_id).await;
            }
            (Ended::Unknown { message }, _) if kind == Kind::ValidateOtp => {
                // The OTP may have completed the payment: only the provider can say now.
                let message = message.clone();
                let moved = self
                    .update_payment(
                        id,
                        Next::Step,
                        crate::gateway::events::Cause::FollowUp,
                        |r, now| {
                            let waiting = matches!(
                                r.state,
                                PaymentState::OtpRequired | PaymentState::ValidationRequired
                            );
                            if waiting {
                                r.state = PaymentState::Pending;
                                r.provider_message = message.clone();
                                r.updated_at_ms = now;
                            }
                            let marked = r
                                .follow_up
                                .as_ref()
                                .is_some_and(|m| m.request_id == request_id);
                            super::payments::clear_follow_up(r, request_id);
                            waiting || marked
                        },
                    )
                    .await;
                if let Err(e) = moved {
                    tracing::error!(payment_id = id, error = %e, "OTP outcome unknown and not recorded; reconciliation still asks the provider");
                }
            }
            _ => self.clear_follow_up(id, request_id).await,
        }
        ended
    }

    /// The operation record of `request_id`: under its id, else under an id it had before
    /// `[auth] payment_id_key` changed (`previous_payment_id_keys`).
    pub(super) async fn load_operation(
        &self,
        request_id: &str,
    ) -> Result<Option<OperationRecord>, GatewayError> {
        let ids = std::iter::once(operation_id(request_id))
            .chain(crate::auth::earlier_operation_ids(request_id));
        for id in ids {
            let Some(bytes) = self.store.get(&keys::operation(&id)).await? else {
                continue;
            };
            return serde_json::from_slice(&bytes)
                .map(|record| Some(OperationRecord { id, ..record }))
                .map_err(|e| GatewayError::Internal(format!("operation record unreadable: {e}")));
        }
        Ok(None)
    }

    /// Writes the operation's record before its provider call. `Err(existing)` when another
    /// request claimed the `request_id` first.
    pub(super) async fn claim_operation(
        &self,
        request_id: &str,
        kind: Kind,
        provider: ProviderId,
        target: &str,
        fingerprint: String,
    ) -> Result<Result<OperationRecord, OperationRecord>, GatewayError> {
        let record = OperationRecord::new(
            request_id,
            kind,
            provider,
            target,
            fingerprint,
            self.clock.now_ms(),
        );
        let key = keys::operation(&record.id);
        let bytes = serde_json::to_vec(&record).expect("operation records serialize");
        let ttl = Some(ms(self.payments.record_ttl_ms));
        // Guarded by the store identity: a store that lost data takes no new operation.
        let won = self.guarded_claim(&key, &bytes, ttl).await?;
        if won {
            return Ok(Ok(record));
        }
        let existing = self
            .load_operation(request_id)
            .await?
            .ok_or_else(|| GatewayError::Internal("claimed operation vanished".into()))?;
        if existing.fingerprint != record.fingerprint {
            return Err(GatewayError::IdempotencyKeyReused {
                request_id: request_id.to_owned(),
            });
        }
        Ok(Err(existing))
    }

    /// Answers a repeated follow-up `request_id` from its record.
    pub(super) async fn replay_operation(
        &self,
        existing: OperationRecord,
        fingerprint: &str,
    ) -> Result<PaymentRecord, GatewayError> {
        if existing.fingerprint != fingerprint {
            return Err(GatewayError::IdempotencyKeyReused {
                request_id: existing.request_id,
            });
        }
        let abandoned =
            self.clock.now_ms() - existing.started_at_ms > self.payments.in_flight_expiry_ms as i64;
        if existing.ended.is_none() && !abandoned {
            return Err(GatewayError::FollowUpInFlight {
                payment_id: existing.target,
                request_id: existing.request_id,
                this_request: true,
                retry_after: ms(self.payments.in_flight_retry_ms),
            });
        }
        answer(&existing)?;
        self.payment_or_not_found(&existing.target).await
    }

    /// Records how an operation's provider call ended, retrying through a short store outage.
    /// A record left unfinished answers from the payment once `in_flight_expiry_ms` passed.
    pub(super) async fn finish_operation(
        &self,
        mut record: OperationRecord,
        ended: Ended,
    ) -> OperationRecord {
        let key = keys::operation(&record.id);
        let before = serde_json::to_vec(&record).expect("operation records serialize");
        record.ended = Some(ended);
        let after = serde_json::to_vec(&record).expect("operation records serialize");
        let mut pause = Duration::from_millis(100);
        for _ in 0..6 {
            match self.store.compare_and_swap(&key, &before, &after).await {
                Ok(_) => return record,
                Err(e) => {
                    tracing::warn!(operation = record.kind.name(), error = %e, "operation outcome not recorded yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        tracing::error!(
            operation = record.kind.name(),
            "operation outcome not recorded"
        );
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lost claim answer is settled by comparing the stored bytes with the claimer's own:
    /// two duplicates started in the same millisecond must not write the same bytes.
    #[test]
    fn two_claims_of_one_request_in_one_millisecond_write_different_bytes() {
        let claim = || {
            OperationRecord::new(
                "otp-1",
                Kind::ValidateOtp,
                ProviderId::OnePipe,
                "pay_1",
                "f".into(),
                1_000,
            )
        };
        let (a, b) = (claim(), claim());
        assert_eq!(a.id, b.id);
        assert_ne!(
            serde_json::to_vec(&a).unwrap(),
            serde_json::to_vec(&b).unwrap()
        );
    }
}

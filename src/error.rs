//! The gateway's small set of errors. Each maps to exactly one gRPC code and one ErrorInfo reason
//! in `api::status` (the only place that builds a `tonic::Status`). An error's `Display` is the
//! status message the caller reads: a sentence saying what is wrong, naming providers,
//! capabilities and payment states by the contract's value names (`PROVIDER_SWITCH`,
//! `CAPABILITY_GET_BALANCE`, `PAYMENT_STATE_FAILED`) and bad fields by their proto paths, never
//! the gateway's internal operation names. Messages never contain secrets: they are built from
//! field names, ids, provider codes and provider messages only; what a provider's unreadable
//! answer or a transport failure said is logged, not sent.

use std::fmt;

use crate::domain::{Capability, PaymentState, ProviderError, ProviderId, Resource};
use crate::store::StoreError;

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, for example `amount.minor_units`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Violations as one message, in their order: `amount.minor_units: must be greater than zero;
/// request_id: required (the idempotency key of this call)`.
pub fn violations_text<'a>(violations: impl IntoIterator<Item = &'a FieldViolation>) -> String {
    let parts: Vec<String> = violations.into_iter().map(|v| v.to_string()).collect();
    if parts.is_empty() {
        "the request is invalid".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Every way a gateway call can fail.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad input; nothing was sent anywhere.
    #[error("{}", violations_text(.0))]
    InvalidRequest(Vec<FieldViolation>),
    /// The amount breaks the customer's amount rule at `provider`; nothing was paid.
    #[error("{violation}")]
    AmountRuleViolated {
        provider: ProviderId,
        violation: FieldViolation,
    },
    /// The provider has no such operation.
    #[error("{} does not support {}", provider.proto_name(), capability.proto_name())]
    CapabilityNotSupported {
        provider: ProviderId,
        capability: Capability,
    },
    /// The provider is not configured in this deployment.
    #[error("{} is not configured in this gateway", .0.proto_name())]
    ProviderNotConfigured(ProviderId),
    /// No such object: in the gateway's journal (`provider` is `None`) or at `provider`.
    #[error("{} {name:?} not found{}", resource.noun(), at_provider(*provider))]
    NotFound {
        resource: Resource,
        /// The id the caller asked for.
        name: String,
        provider: Option<ProviderId>,
    },
    /// The provider's catalog lists no such product (of `biller_id`, where products are listed
    /// per biller); nothing was recorded or sent.
    #[error("{} lists no product {product_id:?}{}", provider.proto_name(), biller_text(biller_id))]
    ProductNotFound {
        provider: ProviderId,
        biller_id: String,
        product_id: String,
    },
    /// Same request_id, different request.
    #[error("request_id {request_id:?} was already used for a different request")]
    IdempotencyKeyReused { request_id: String },
    /// Same request_id still being processed.
    #[error("request_id {request_id:?} is still in flight: retry it after RetryInfo's delay")]
    RequestInFlight {
        request_id: String,
        retry_after: std::time::Duration,
    },
    /// A follow-up of the payment (OTP validation, reversal) is still running: this request's
    /// own (`this_request`: its provider call outlasted the caller's deadline) or another
    /// request's, in which case nothing was sent for this one.
    #[error("payment {payment_id:?}: {}", if *this_request {
        "this request is still at the provider: retry it after RetryInfo's delay"
    } else {
        "another OTP validation or reversal of it is still at the provider; this one was not sent"
    })]
    FollowUpInFlight {
        payment_id: String,
        request_id: String,
        this_request: bool,
        retry_after: std::time::Duration,
    },
    /// The payment's state does not allow the operation: `refusal` says why in words (for
    /// example "only a PAYMENT_STATE_SUCCEEDED payment can be reversed").
    #[error("payment {payment_id:?} is {}: {refusal}", state.proto_name())]
    PaymentStateConflict {
        payment_id: String,
        state: PaymentState,
        refusal: &'static str,
    },
    /// A provider call failed. `operation` (the adapter's name for the call) is for logs only.
    #[error("{}", provider_error_text(*provider, source))]
    Provider {
        provider: ProviderId,
        operation: &'static str,
        #[source]
        source: ProviderError,
    },
    /// The call carries no identity the gateway accepts; nothing was done.
    #[error("no accepted caller identity (API key, client certificate or forwarded identity)")]
    Unauthenticated,
    /// The caller is identified but may not call `method` (the full method name,
    /// `billpay.v1.PaymentService/CreatePayment`), or may call it but not for `provider`.
    #[error("caller {caller:?} may not {}", match provider {
        Some(p) => format!("use {} (calling {method})", p.proto_name()),
        None => format!("call {method}"),
    })]
    CallerNotAllowed {
        caller: String,
        method: String,
        provider: Option<ProviderId>,
    },
    /// `[server] max_calls_in_progress` calls are in progress; nothing was done.
    #[error(
        "the gateway has {max_calls} calls in progress, its limit: retry after RetryInfo's delay"
    )]
    ServerBusy {
        max_calls: usize,
        retry_after: std::time::Duration,
    },
    /// The caller is over its rate limit (`[auth] rate_per_second`, `burst`); nothing was done.
    /// Its next call conforms after `retry_after`.
    #[error("caller {caller:?} is over its rate limit: retry after RetryInfo's delay")]
    RateLimited {
        caller: String,
        retry_after: std::time::Duration,
    },
    /// The store is unreachable (its words: Redis errors are redacted of credentials).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// WatchPaymentEvents was asked to resume after an event the store no longer keeps
    /// (retention, or lost with its data): reading on would skip events.
    #[error(
        "the events after {after_event_id:?} are no longer kept (older than the events \
         retention, or lost): reread the payments you follow, then watch again with an empty \
         after_event_id"
    )]
    EventsExpired { after_event_id: String },
    /// A WatchPayment stream read more slowly than its payment changed: its buffer of
    /// `buffered` changes filled, and it was ended rather than hold up payments.
    #[error(
        "this watcher read more slowly than the payment changed (its {buffered} buffered \
         changes filled): watch again"
    )]
    WatcherTooSlow { buffered: usize },
    /// The store keeps no payment events (why), so nothing can be watched.
    #[error("payment events are not kept: {why}")]
    EventsNotKept { store: String, why: String },
    /// The store lost data (its identity key is gone): mutating RPCs are refused until an
    /// operator runs `billpay-gateway store recover`.
    #[error("the store lost data (its identity is missing): payments are stopped until an operator runs `billpay-gateway store recover`")]
    StoreDataLost,
    /// The store's durability posture is refused for payments (it can lose acknowledged
    /// writes, or evicts keys): its name, why, and how long ago it was read.
    #[error("the store is refused for payments (posture {posture}): {why}")]
    StoreUnfit {
        posture: String,
        why: String,
        last_read_ago_ms: u64,
    },
    /// References for the provider ran a full reserve ahead of its reference clock (see
    /// `store::identity::ReferenceClock`): nothing was recorded or sent; retry after
    /// `retry_after`.
    #[error("{} payments are arriving faster than its reference format allows (see the README, \"Provider references and recovery\"); nothing was sent: retry later", provider.proto_name())]
    ReferenceRateExceeded {
        provider: ProviderId,
        retry_after: std::time::Duration,
    },
    /// The request was created before the store's last recovery, so it may have been paid
    /// before the store lost its record: refused, never paid blindly.
    #[error("request_id {request_id:?} was created before the store was recovered from a data loss (created {created_at_ms}, recovered {recovered_at_ms}, unix ms): it may have been paid before the loss. Do not retry it: ask the operator, or look the payment up by its provider reference (GetPayment, ListPayments); pay again only with a new request_id once it is known not to have been paid")]
    RequestPredatesRecovery {
        request_id: String,
        created_at_ms: i64,
        recovered_at_ms: i64,
    },
    /// A bug. The detail is logged; the caller reads only "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A single-field [`GatewayError::InvalidRequest`].
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidRequest(vec![FieldViolation::new(field, description)])
    }

    /// No `resource` named `name` in the gateway's journal.
    pub fn not_found(resource: Resource, name: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            name: name.into(),
            provider: None,
        }
    }

    /// Wraps a provider error with where it happened. `Unsupported` becomes the capability
    /// error and `NotFound` the gateway's NOT_FOUND (naming the provider).
    pub fn provider(provider: ProviderId, operation: &'static str, source: ProviderError) -> Self {
        match source {
            ProviderError::Unsupported(capability) => Self::CapabilityNotSupported {
                provider,
                capability,
            },
            ProviderError::NotFound { resource, name } => Self::NotFound {
                resource,
                name,
                provider: Some(provider),
            },
            source => Self::Provider {
                provider,
                operation,
                source,
            },
        }
    }
}

fn biller_text(biller_id: &str) -> String {
    if biller_id.is_empty() {
        String::new()
    } else {
        format!(" for biller {biller_id:?}")
    }
}

fn at_provider(provider: Option<ProviderId>) -> String {
    provider
        .map(|p| format!(" at {}", p.proto_name()))
        .unwrap_or_default()
}

/// `text`, then `more` unless `text` already says it (providers often repeat one message in
/// several fields), joined with ": ".
pub fn join_distinct(text: &str, more: &str) -> String {
    let (text, more) = (text.trim(), more.trim());
    let says = |a: &str, b: &str| a.to_lowercase().contains(&b.to_lowercase());
    if more.is_empty() || says(text, more) {
        text.to_owned()
    } else if text.is_empty() || says(more, text) {
        more.to_owned()
    } else {
        format!("{text}: {more}")
    }
}

/// The message of a failed call to `provider`, as the caller reads it. What a transport
/// failure or an unreadable answer said in detail is logged only: it can quote the provider's
/// bytes.
fn provider_error_text(provider: ProviderId, source: &ProviderError) -> String {
    let p = provider.proto_name();
    match source {
        ProviderError::Timeout => format!("{p} did not answer in time"),
        ProviderError::Transport(_) => format!("could not reach {p}"),
        ProviderError::Upstream { status } => {
            format!("{p} answered HTTP {status}, which is not an answer the gateway can use")
        }
        ProviderError::Unreadable(_) => format!("the answer from {p} could not be read"),
        ProviderError::Auth { status } => format!(
            "{p} refused the gateway's own credentials (HTTP {status}): an operator must fix \
             the gateway's configuration"
        ),
        ProviderError::Rejected { code, message } => {
            let code = code.trim();
            match (code.is_empty(), message.trim().is_empty()) {
                (true, true) => format!("{p} refused the request"),
                (true, false) => format!("{p} refused the request: {}", message.trim()),
                (false, true) => format!("{p} refused the request with code {code}"),
                (false, false) => {
                    format!("{p} refused the request: {} (code {code})", message.trim())
                }
            }
        }
        ProviderError::NotFound { resource, name } => {
            format!("{} {name:?} not found at {p}", resource.noun())
        }
        ProviderError::Unrepresentable { field, reason } => format!("{field}: {reason}"),
        ProviderError::InvalidOrder(violations) => {
            let v: Vec<FieldViolation> = violations
                .iter()
                .map(|(field, why)| FieldViolation::new(field, why))
                .collect();
            violations_text(&v)
        }
        ProviderError::PriceChanged { expected, actual } => format!(
            "the price at {p} is {} minor units of {}, not the expected {}",
            actual.minor_units,
            actual.currency.code(),
            expected.minor_units
        ),
        ProviderError::Unsupported(capability) => {
            format!("{p} does not support {}", capability.proto_name())
        }
        ProviderError::CircuitOpen { retry_after } => format!(
            "{p} is failing: calls to it are paused for {} ms",
            retry_after.as_millis().max(1)
        ),
        ProviderError::NotSent(why) => {
            format!("{}; nothing was sent", provider_error_text(provider, why))
        }
    }
}

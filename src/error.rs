//! The gateway's small set of errors. Each maps to exactly one gRPC code and one ErrorInfo reason
//! in `api::status` (the only place that builds a `tonic::Status`). Messages never contain
//! secrets: they are built from field names, ids and provider codes only.

use crate::domain::{Capability, ProviderError, ProviderId};
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

/// Every way a gateway call can fail.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad input; nothing was sent anywhere.
    #[error("invalid request")]
    InvalidRequest(Vec<FieldViolation>),
    /// The amount breaks the customer's amount rule; nothing was paid.
    #[error("amount violates the customer's amount rule: {0}")]
    AmountRuleViolated(String),
    /// The provider has no such operation.
    #[error("{provider} does not support {}", capability.name())]
    CapabilityNotSupported {
        provider: ProviderId,
        capability: Capability,
    },
    /// The provider is not configured in this deployment.
    #[error("{0} is not configured in this gateway")]
    ProviderNotConfigured(ProviderId),
    /// No such payment, biller, product or customer.
    #[error("{0} not found")]
    NotFound(String),
    /// The provider's catalog lists no such product (of `biller_id`, where products are listed
    /// per biller); nothing was recorded or sent.
    #[error("{provider} lists no product {product_id:?}{}", biller_text(biller_id))]
    ProductNotFound {
        provider: ProviderId,
        biller_id: String,
        product_id: String,
    },
    /// Same request_id, different request.
    #[error("request_id {request_id} was already used for a different request")]
    IdempotencyKeyReused { request_id: String },
    /// Same request_id still being processed.
    #[error("request_id {request_id} is still in flight")]
    RequestInFlight {
        request_id: String,
        retry_after: std::time::Duration,
    },
    /// A follow-up of the payment (OTP validation, reversal) is still running: this request's
    /// own (`this_request`: its provider call outlasted the caller's deadline) or another
    /// request's, in which case nothing was sent for this one.
    #[error("payment {payment_id}: {} is still in flight", if *this_request { "this follow-up" } else { "another follow-up" })]
    FollowUpInFlight {
        payment_id: String,
        request_id: String,
        this_request: bool,
        retry_after: std::time::Duration,
    },
    /// The payment's state does not allow the operation.
    #[error("payment {payment_id} is {state}: {operation} is not possible")]
    PaymentStateConflict {
        payment_id: String,
        state: &'static str,
        operation: &'static str,
    },
    /// A provider call failed.
    #[error("{provider} {operation}: {source}")]
    Provider {
        provider: ProviderId,
        operation: &'static str,
        #[source]
        source: ProviderError,
    },
    /// The call carries no identity the gateway accepts; nothing was done.
    #[error("no accepted caller identity (API key, client certificate or forwarded identity)")]
    Unauthenticated,
    /// The caller is identified but may not call this (`what`: the method or the provider).
    #[error("caller {caller} may not use {what}")]
    CallerNotAllowed { caller: String, what: String },
    /// The caller is over its rate limit (`[auth] rate_per_second`, `burst`); nothing was done.
    /// Its next call conforms after `retry_after`.
    #[error("caller {caller} is over its rate limit")]
    RateLimited {
        caller: String,
        retry_after: std::time::Duration,
    },
    /// The store is unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    #[error("{provider} payments are arriving faster than its reference format allows (see the README, \"Provider references and recovery\"); nothing was sent: retry later")]
    ReferenceRateExceeded {
        provider: ProviderId,
        retry_after: std::time::Duration,
    },
    /// The request was created before the store's last recovery, so it may have been paid
    /// before the store lost its record: refused, never paid blindly.
    #[error("request_id {request_id} was created before the store was recovered from a data loss (created {created_at_ms}, recovered {recovered_at_ms}, unix ms): it may have been paid before the loss. Do not retry it: ask the operator, or look the payment up by its provider reference (GetPayment, ListPayments); pay again only with a new request_id once it is known not to have been paid")]
    RequestPredatesRecovery {
        request_id: String,
        created_at_ms: i64,
        recovered_at_ms: i64,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A single-field [`GatewayError::InvalidRequest`].
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidRequest(vec![FieldViolation::new(field, description)])
    }

    /// Wraps a provider error with where it happened. `Unsupported` becomes the capability error.
    pub fn provider(provider: ProviderId, operation: &'static str, source: ProviderError) -> Self {
        match source {
            ProviderError::Unsupported(capability) => Self::CapabilityNotSupported {
                provider,
                capability,
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

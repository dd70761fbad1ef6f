//! The one place where errors become gRPC statuses. Every status carries a
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`], reason from `billpay.v1.ErrorReason`), bad input a
//! `BadRequest`, and statuses worth retrying a `RetryInfo`.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::ProviderError;
use crate::error::{FieldViolation, GatewayError};

/// ErrorInfo domain of every error.
pub const DOMAIN: &str = "billpay.gateway";

/// How long a caller should wait before retrying a provider or store outage.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);

struct Mapped {
    code: Code,
    reason: &'static str,
    metadata: HashMap<String, String>,
    violations: Vec<FieldViolation>,
    retry_after: Option<Duration>,
}

impl Mapped {
    fn new(code: Code, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            metadata: HashMap::new(),
            violations: Vec::new(),
            retry_after: None,
        }
    }

    fn meta(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }
}

/// Maps a gateway error to a status with rich error details.
pub fn to_status(error: GatewayError) -> Status {
    let message = match &error {
        GatewayError::Internal(_) => "internal error".to_owned(),
        other => other.to_string(),
    };
    let mapped = match error {
        GatewayError::InvalidRequest(violations) => Mapped {
            violations,
            ..Mapped::new(Code::InvalidArgument, "INVALID_REQUEST")
        },
        GatewayError::AmountRuleViolated(rule) => Mapped {
            violations: vec![FieldViolation::new("amount", rule)],
            ..Mapped::new(Code::InvalidArgument, "AMOUNT_RULE_VIOLATED")
        },
        GatewayError::CapabilityNotSupported {
            provider,
            capability,
        } => Mapped::new(Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED")
            .meta("provider", provider)
            .meta("capability", capability.name()),
        GatewayError::ProviderNotConfigured(provider) => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED")
                .meta("provider", provider)
        }
        GatewayError::NotFound(what) => {
            Mapped::new(Code::NotFound, "NOT_FOUND").meta("resource", what)
        }
        GatewayError::IdempotencyKeyReused { request_id } => {
            Mapped::new(Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED")
                .meta("request_id", request_id)
        }
        GatewayError::RequestInFlight {
            request_id,
            retry_after,
        } => Mapped {
            retry_after: Some(retry_after),
            ..Mapped::new(Code::Aborted, "REQUEST_IN_FLIGHT").meta("request_id", request_id)
        },
        GatewayError::PaymentStateConflict {
            payment_id, state, ..
        } => Mapped::new(Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT")
            .meta("payment_id", payment_id)
            .meta("state", state),
        GatewayError::Provider {
            provider,
            operation,
            source,
        } => {
            tracing::warn!(%provider, operation, error = %source, "provider call failed");
            provider_error(source)
                .meta("provider", provider)
                .meta("operation", operation)
        }
        GatewayError::Store(e) => {
            tracing::warn!(error = %e, "store unavailable");
            Mapped {
                retry_after: Some(RETRY_UNAVAILABLE),
                ..Mapped::new(Code::Unavailable, "STORE_UNAVAILABLE")
            }
        }
        GatewayError::StoreDataLost => Mapped::new(Code::Unavailable, "STORE_DATA_LOST"),
        GatewayError::StoreUnfit(_) => Mapped::new(Code::Unavailable, "STORE_UNAVAILABLE"),
        GatewayError::Internal(detail) => {
            tracing::error!(detail, "internal error");
            Mapped::new(Code::Internal, "INTERNAL")
        }
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(mapped.reason, DOMAIN, mapped.metadata);
    for v in mapped.violations {
        details.add_bad_request_violation(v.field, v.description);
    }
    if let Some(delay) = mapped.retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(mapped.code, message, details)
}

fn provider_error(source: ProviderError) -> Mapped {
    match source {
        ProviderError::Timeout
        | ProviderError::Transport(_)
        | ProviderError::Upstream { .. }
        | ProviderError::Unreadable(_) => Mapped {
            retry_after: Some(RETRY_UNAVAILABLE),
            ..Mapped::new(Code::Unavailable, "PROVIDER_UNAVAILABLE")
        },
        ProviderError::CircuitOpen { retry_after } => Mapped {
            retry_after: Some(retry_after.max(Duration::from_millis(1))),
            ..Mapped::new(Code::Unavailable, "PROVIDER_UNAVAILABLE")
        },
        ProviderError::Auth { status } => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_AUTH_FAILED")
                .meta("http_status", status)
        }
        ProviderError::Rejected { code, message } => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_REJECTED")
                .meta("provider_code", code)
                .meta("provider_message", message)
        }
        ProviderError::NotFound(what) => {
            Mapped::new(Code::NotFound, "NOT_FOUND").meta("resource", what)
        }
        ProviderError::Unrepresentable { field, reason } => Mapped {
            violations: vec![FieldViolation::new(field, reason)],
            ..Mapped::new(Code::InvalidArgument, "INVALID_REQUEST")
        },
        ProviderError::InvalidOrder(violations) => Mapped {
            violations: violations
                .into_iter()
                .map(|(field, why)| FieldViolation::new(field, why))
                .collect(),
            ..Mapped::new(Code::InvalidArgument, "INVALID_REQUEST")
        },
        ProviderError::PriceChanged { expected, actual } => {
            Mapped::new(Code::FailedPrecondition, "PRICE_CHANGED")
                .meta("expected_minor_units", expected.minor_units)
                .meta("actual_minor_units", actual.minor_units)
                .meta("currency_code", actual.currency.code())
        }
        ProviderError::Unsupported(capability) => {
            Mapped::new(Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED")
                .meta("capability", capability.name())
        }
    }
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        to_status(error)
    }
}

//! The one place where errors become gRPC statuses. Every status carries a
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`], reason from `billpay.v1.ErrorReason`, and exactly
//! the metadata keys that reason's proto comment lists), bad input a `BadRequest`, statuses
//! worth retrying a `RetryInfo`, and NOT_FOUND a `ResourceInfo` naming what was not found.
//!
//! The message is the error's words (`GatewayError`'s `Display`), with runs of whitespace and
//! control characters folded to one space: INVALID_ARGUMENT names every violation in the order
//! `BadRequest` lists them. ErrorInfo metadata names providers, capabilities and payment states
//! by their `billpay.v1` enum value names (`PROVIDER_SWITCH`, `CAPABILITY_GET_BALANCE`,
//! `PAYMENT_STATE_FAILED`), as the caller sent or reads them elsewhere.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{ProviderError, ProviderId, Resource};
use crate::error::{FieldViolation, GatewayError};

/// ErrorInfo domain of every error.
pub const DOMAIN: &str = "billpay.gateway";

/// How long a caller should wait before retrying a provider or store outage.
const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);

/// A `google.rpc.ResourceInfo`.
struct ResourceInfo {
    resource_type: String,
    resource_name: String,
    owner: String,
}

struct Mapped {
    code: Code,
    reason: &'static str,
    metadata: HashMap<String, String>,
    violations: Vec<FieldViolation>,
    retry_after: Option<Duration>,
    resource: Option<ResourceInfo>,
}

impl Mapped {
    fn new(code: Code, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            metadata: HashMap::new(),
            violations: Vec::new(),
            retry_after: None,
            resource: None,
        }
    }

    fn meta(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    fn provider(self, provider: ProviderId) -> Self {
        self.meta("provider", provider.proto_name())
    }

    fn violations(self, violations: Vec<FieldViolation>) -> Self {
        Self { violations, ..self }
    }

    fn retry_after(self, delay: Duration) -> Self {
        Self {
            retry_after: Some(delay),
            ..self
        }
    }

    /// NOT_FOUND details: ErrorInfo metadata `resource_type`, `resource_name` (and `provider`
    /// when the provider said so), and a ResourceInfo with the same (owner: the provider).
    fn resource(
        self,
        resource_type: &str,
        resource_name: &str,
        provider: Option<ProviderId>,
    ) -> Self {
        let mut mapped = self
            .meta("resource_type", resource_type)
            .meta("resource_name", resource_name);
        if let Some(p) = provider {
            mapped = mapped.provider(p);
        }
        Self {
            resource: Some(ResourceInfo {
                resource_type: resource_type.to_owned(),
                resource_name: resource_name.to_owned(),
                owner: provider
                    .map(|p| p.proto_name().to_owned())
                    .unwrap_or_default(),
            }),
            ..mapped
        }
    }
}

/// Folds whitespace runs and control characters to one space, so that what a provider wrote
/// (newlines, doubled spaces) reads as one line.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Maps a gateway error to a status with rich error details.
pub fn to_status(error: GatewayError) -> Status {
    let message = match &error {
        GatewayError::Internal(_) => "internal error".to_owned(),
        other => one_line(&other.to_string()),
    };
    let mapped = match error {
        GatewayError::InvalidRequest(violations) => {
            Mapped::new(Code::InvalidArgument, "INVALID_REQUEST").violations(violations)
        }
        GatewayError::AmountRuleViolated {
            provider,
            violation,
        } => Mapped::new(Code::InvalidArgument, "AMOUNT_RULE_VIOLATED")
            .provider(provider)
            .violations(vec![violation]),
        GatewayError::CapabilityNotSupported {
            provider,
            capability,
        } => Mapped::new(Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED")
            .provider(provider)
            .meta("capability", capability.proto_name()),
        GatewayError::ProviderNotConfigured(provider) => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_NOT_CONFIGURED").provider(provider)
        }
        GatewayError::NotFound {
            resource,
            name,
            provider,
        } => {
            Mapped::new(Code::NotFound, "NOT_FOUND").resource(resource.type_name(), &name, provider)
        }
        GatewayError::ProductNotFound {
            provider,
            biller_id,
            product_id,
        } => {
            let name = if biller_id.is_empty() {
                product_id.clone()
            } else {
                format!("billers/{biller_id}/products/{product_id}")
            };
            Mapped::new(Code::NotFound, "PRODUCT_NOT_FOUND")
                .resource(Resource::Product.type_name(), &name, Some(provider))
                .meta("biller_id", biller_id)
                .meta("product_id", product_id)
        }
        GatewayError::IdempotencyKeyReused { request_id } => {
            Mapped::new(Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED")
                .meta("request_id", request_id)
        }
        GatewayError::RequestInFlight {
            request_id,
            retry_after,
        } => Mapped::new(Code::Aborted, "REQUEST_IN_FLIGHT")
            .meta("request_id", request_id)
            .retry_after(retry_after),
        GatewayError::FollowUpInFlight {
            payment_id,
            request_id,
            this_request,
            retry_after,
        } => Mapped::new(Code::Aborted, "REQUEST_IN_FLIGHT")
            .meta("request_id", request_id)
            .meta("payment_id", payment_id)
            .meta(
                "in_flight",
                if this_request {
                    "this_request"
                } else {
                    "another_request"
                },
            )
            .retry_after(retry_after),
        GatewayError::PaymentStateConflict {
            payment_id, state, ..
        } => Mapped::new(Code::FailedPrecondition, "PAYMENT_STATE_CONFLICT")
            .meta("payment_id", payment_id)
            .meta("state", state.proto_name()),
        GatewayError::Provider {
            provider,
            operation,
            source,
        } => {
            tracing::warn!(%provider, operation, error = %source, "provider call failed");
            provider_error(provider, source)
        }
        GatewayError::Store(e) => {
            tracing::warn!(error = %e, "store unavailable");
            Mapped::new(Code::Unavailable, "STORE_UNAVAILABLE").retry_after(RETRY_UNAVAILABLE)
        }
        GatewayError::Unauthenticated => {
            Mapped::new(Code::Unauthenticated, "CALLER_UNAUTHENTICATED")
        }
        GatewayError::CallerNotAllowed {
            caller,
            method,
            provider,
        } => {
            let mapped = Mapped::new(Code::PermissionDenied, "CALLER_NOT_ALLOWED")
                .meta("caller", caller)
                .meta("method", method);
            match provider {
                Some(p) => mapped.provider(p),
                None => mapped,
            }
        }
        GatewayError::RateLimited {
            caller,
            retry_after,
        } => Mapped::new(Code::ResourceExhausted, "RATE_LIMITED")
            .meta("caller", caller)
            .retry_after(retry_after),
        GatewayError::ServerBusy {
            max_calls,
            retry_after,
        } => Mapped::new(Code::ResourceExhausted, "SERVER_BUSY")
            .meta("max_calls", max_calls)
            .retry_after(retry_after),
        GatewayError::StoreDataLost => Mapped::new(Code::Unavailable, "STORE_DATA_LOST"),
        GatewayError::EventsExpired { after_event_id } => {
            Mapped::new(Code::OutOfRange, "EVENTS_EXPIRED").meta("after_event_id", after_event_id)
        }
        GatewayError::WatcherTooSlow { buffered } => {
            Mapped::new(Code::ResourceExhausted, "WATCHER_TOO_SLOW")
                .meta("buffered_changes", buffered)
        }
        GatewayError::EventsNotKept { store, .. } => {
            Mapped::new(Code::FailedPrecondition, "EVENTS_NOT_KEPT").meta("store", store)
        }
        GatewayError::StoreUnfit {
            posture,
            last_read_ago_ms,
            ..
        } => {
            crate::metrics::global().store_posture_refusals.inc();
            tracing::warn!(%posture, "refused: store posture can lose acknowledged writes");
            Mapped::new(Code::Unavailable, "STORE_POSTURE_REFUSED")
                .meta("posture", posture)
                .meta("posture_last_read_ago_ms", last_read_ago_ms)
        }
        GatewayError::ReferenceRateExceeded {
            provider,
            retry_after,
        } => Mapped::new(Code::ResourceExhausted, "REFERENCE_RATE_EXCEEDED")
            .provider(provider)
            .retry_after(retry_after),
        GatewayError::RequestPredatesRecovery {
            request_id,
            created_at_ms,
            recovered_at_ms,
        } => Mapped::new(Code::FailedPrecondition, "REQUEST_PREDATES_RECOVERY")
            .meta("request_id", request_id)
            .meta("request_created_at_ms", created_at_ms)
            .meta("recovered_at_ms", recovered_at_ms),
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
    if let Some(r) = mapped.resource {
        details.set_resource_info(r.resource_type, r.resource_name, r.owner, message.clone());
    }
    Status::with_error_details(mapped.code, message, details)
}

/// The status of a failed call to `provider`.
fn provider_error(provider: ProviderId, source: ProviderError) -> Mapped {
    let mapped = match source {
        // The status of why it was not sent (a token endpoint's timeout is UNAVAILABLE).
        ProviderError::NotSent(why) => return provider_error(provider, *why),
        ProviderError::Timeout | ProviderError::Transport(_) | ProviderError::Unreadable(_) => {
            Mapped::new(Code::Unavailable, "PROVIDER_UNAVAILABLE").retry_after(RETRY_UNAVAILABLE)
        }
        ProviderError::Upstream { status } => {
            Mapped::new(Code::Unavailable, "PROVIDER_UNAVAILABLE")
                .meta("http_status", status)
                .retry_after(RETRY_UNAVAILABLE)
        }
        ProviderError::CircuitOpen { retry_after } => {
            Mapped::new(Code::Unavailable, "PROVIDER_UNAVAILABLE")
                .retry_after(retry_after.max(Duration::from_millis(1)))
        }
        ProviderError::Auth { status } => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_AUTH_FAILED")
                .meta("http_status", status)
        }
        ProviderError::Rejected { code, message } => {
            Mapped::new(Code::FailedPrecondition, "PROVIDER_REJECTED")
                .meta("provider_code", code.trim())
                .meta("provider_message", one_line(&message))
        }
        // `GatewayError::provider` turns these into NOT_FOUND and CAPABILITY_NOT_SUPPORTED;
        // a `Provider` error built around one directly maps the same way.
        ProviderError::NotFound { resource, name } => {
            return Mapped::new(Code::NotFound, "NOT_FOUND").resource(
                resource.type_name(),
                &name,
                Some(provider),
            )
        }
        ProviderError::Unsupported(capability) => {
            Mapped::new(Code::Unimplemented, "CAPABILITY_NOT_SUPPORTED")
                .meta("capability", capability.proto_name())
        }
        ProviderError::Unrepresentable { field, reason } => {
            Mapped::new(Code::InvalidArgument, "INVALID_REQUEST")
                .violations(vec![FieldViolation::new(field, reason)])
        }
        ProviderError::InvalidOrder(violations) => {
            Mapped::new(Code::InvalidArgument, "INVALID_REQUEST").violations(
                violations
                    .into_iter()
                    .map(|(field, why)| FieldViolation::new(field, why))
                    .collect(),
            )
        }
        ProviderError::PriceChanged { expected, actual } => {
            Mapped::new(Code::FailedPrecondition, "PRICE_CHANGED")
                .meta("expected_minor_units", expected.minor_units)
                .meta("actual_minor_units", actual.minor_units)
                .meta("currency_code", actual.currency.code())
        }
    };
    mapped.provider(provider)
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        to_status(error)
    }
}

/// UNIMPLEMENTED with ErrorInfo SERVICE_DISABLED: `service` is off in this deployment.
pub fn service_disabled(service: &str, message: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        "SERVICE_DISABLED",
        DOMAIN,
        HashMap::from([("service".to_owned(), service.to_owned())]),
    );
    Status::with_error_details(Code::Unimplemented, message, details)
}

/// How much of tonic's decode message is kept in ErrorInfo (schema names only, never values).
const DETAIL_LIMIT: usize = 200;

/// Prefixes of the messages tonic and prost give a request body they cannot read. They answer
/// INTERNAL, which blames the gateway for the caller's bytes.
const UNDECODABLE: [&str; 6] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "protocol error: received message with",
    "Error decompressing",
    "Unexpected compression flag",
];

/// The statuses tonic answers before any handler runs (an undecodable body, a message over
/// the size limit, an unknown method) carry no details. This gives them the same ErrorInfo as
/// every other error: INVALID_ARGUMENT/MALFORMED_REQUEST, RESOURCE_EXHAUSTED/
/// REQUEST_TOO_LARGE, UNIMPLEMENTED/UNKNOWN_METHOD. `None` leaves the status as it is (a
/// status that already has details, or one that is not the framework's).
pub fn framework_status(status: &Status, max_request_bytes: usize) -> Option<Status> {
    if !status.details().is_empty() {
        return None;
    }
    let message = status.message();
    let detail: String = message.chars().take(DETAIL_LIMIT).collect();
    let too_large = (status.code() == Code::OutOfRange
        && message.contains("message length too large"))
        || (status.code() == Code::ResourceExhausted && message.contains("size limit"));
    let mapped = if too_large {
        Mapped::new(Code::ResourceExhausted, "REQUEST_TOO_LARGE")
            .meta("limit_bytes", max_request_bytes)
    } else if status.code() == Code::Internal && UNDECODABLE.iter().any(|p| message.starts_with(p))
    {
        Mapped::new(Code::InvalidArgument, "MALFORMED_REQUEST").meta("detail", detail)
    } else if status.code() == Code::Unimplemented && message.is_empty() {
        // tonic's router: no service or method of that name.
        Mapped::new(Code::Unimplemented, "UNKNOWN_METHOD")
    } else {
        return None;
    };
    let text = match mapped.reason {
        "REQUEST_TOO_LARGE" => format!("request message over {max_request_bytes} bytes"),
        "MALFORMED_REQUEST" => "request body is not a valid protobuf message".to_owned(),
        _ => "no such method".to_owned(),
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(mapped.reason, DOMAIN, mapped.metadata);
    Some(Status::with_error_details(mapped.code, text, details))
}

/// The proto's documented metadata keys, read by the tests (shared with the integration tests'
/// harness, tests/common).
#[cfg(test)]
#[path = "../../tests/common/error_doc.rs"]
mod error_doc;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::api::convert;
    use crate::domain::{Capability, Currency, Money, PaymentState, ProviderError, ProviderId};
    use crate::pb;
    use crate::store::StoreError;

    use super::error_doc;

    const SWITCH: ProviderId = ProviderId::Switch;

    /// A failed call to Switch's saved-bill deletion (an operation name that must never reach
    /// the caller).
    fn at_switch(source: ProviderError) -> GatewayError {
        GatewayError::provider(SWITCH, "delete_saved_bill", source)
    }

    /// One of every error the gateway maps, with every optional metadata case.
    fn every_error() -> Vec<GatewayError> {
        let ms = Duration::from_millis;
        let ngn = |k| Money::new(Currency::Ngn, k);
        vec![
            GatewayError::InvalidRequest(vec![
                FieldViolation::new("amount.minor_units", "must be greater than zero"),
                FieldViolation::new("request_id", "required (the idempotency key of this call)"),
            ]),
            GatewayError::AmountRuleViolated {
                provider: ProviderId::Interswitch,
                violation: FieldViolation::new(
                    "amount.minor_units",
                    "must be at least 100000 minor units of NGN (the customer's amount rule)",
                ),
            },
            GatewayError::CapabilityNotSupported {
                provider: ProviderId::Interswitch,
                capability: Capability::GetBalance,
            },
            GatewayError::ProviderNotConfigured(ProviderId::OnePipe),
            GatewayError::not_found(Resource::Payment, "pay_0123"),
            GatewayError::ProductNotFound {
                provider: ProviderId::Interswitch,
                biller_id: "901".into(),
                product_id: "90199".into(),
            },
            GatewayError::ProductNotFound {
                provider: ProviderId::IntelworldIp2,
                biller_id: String::new(),
                product_id: "P9".into(),
            },
            GatewayError::IdempotencyKeyReused {
                request_id: "r-1".into(),
            },
            GatewayError::RequestInFlight {
                request_id: "r-1".into(),
                retry_after: ms(200),
            },
            GatewayError::FollowUpInFlight {
                payment_id: "pay_1".into(),
                request_id: "r-2".into(),
                this_request: true,
                retry_after: ms(200),
            },
            GatewayError::FollowUpInFlight {
                payment_id: "pay_1".into(),
                request_id: "r-3".into(),
                this_request: false,
                retry_after: ms(200),
            },
            GatewayError::PaymentStateConflict {
                payment_id: "pay_1".into(),
                state: PaymentState::Failed,
                refusal: "only a PAYMENT_STATE_SUCCEEDED payment can be reversed",
            },
            at_switch(ProviderError::Timeout),
            at_switch(ProviderError::Transport("connect refused 10.0.0.1".into())),
            at_switch(ProviderError::Upstream { status: 502 }),
            at_switch(ProviderError::Unreadable("expected value at line 1".into())),
            at_switch(ProviderError::CircuitOpen {
                retry_after: ms(1500),
            }),
            at_switch(ProviderError::Timeout.not_sent()),
            at_switch(ProviderError::Auth { status: 401 }),
            at_switch(ProviderError::Rejected {
                code: "400".into(),
                message: "Bill  is\nnot payable".into(),
            }),
            at_switch(ProviderError::Rejected {
                code: String::new(),
                message: String::new(),
            }),
            at_switch(ProviderError::NotFound {
                resource: Resource::SavedBill,
                name: "17".into(),
            }),
            at_switch(ProviderError::Unrepresentable {
                field: "amount.minor_units",
                reason: "must not be negative (Switch amounts are not negative)".into(),
            }),
            at_switch(ProviderError::InvalidOrder(vec![
                (
                    "switch.pin".into(),
                    "required (the Switch user's second factor is a PIN)".into(),
                ),
                ("inputs[meter]".into(), "not an input of this plan".into()),
            ])),
            at_switch(ProviderError::PriceChanged {
                expected: ngn(180_000),
                actual: ngn(188_400),
            }),
            at_switch(ProviderError::Unsupported(Capability::GetBalance)),
            GatewayError::Unauthenticated,
            GatewayError::CallerNotAllowed {
                caller: "shop".into(),
                method: "billpay.v1.AccountService/GetBalance".into(),
                provider: None,
            },
            GatewayError::CallerNotAllowed {
                caller: "shop".into(),
                method: "billpay.v1.CatalogService/ListBillers".into(),
                provider: Some(SWITCH),
            },
            GatewayError::RateLimited {
                caller: "shop".into(),
                retry_after: ms(900),
            },
            GatewayError::Store(StoreError("connection refused".into())),
            GatewayError::ServerBusy {
                max_calls: 4096,
                retry_after: ms(200),
            },
            GatewayError::StoreDataLost,
            GatewayError::EventsExpired {
                after_event_id: "1764770000000-0".into(),
            },
            GatewayError::WatcherTooSlow { buffered: 64 },
            GatewayError::EventsNotKept {
                store: "redis-cluster".into(),
                why: "one stream cannot be written with every slot".into(),
            },
            GatewayError::StoreUnfit {
                posture: "everysec".into(),
                why: "appendfsync everysec can lose a second of writes".into(),
                last_read_ago_ms: 120,
            },
            GatewayError::ReferenceRateExceeded {
                provider: ProviderId::Interswitch,
                retry_after: ms(300),
            },
            GatewayError::RequestPredatesRecovery {
                request_id: "r-9".into(),
                created_at_ms: 1,
                recovered_at_ms: 2,
            },
            GatewayError::Internal("secret detail".into()),
        ]
    }

    /// The statuses answered outside `to_status`.
    fn other_statuses() -> Vec<Status> {
        vec![
            service_disabled("billpay.v1.OperatorService", "the operator service is off"),
            framework_status(
                &Status::internal("failed to decode Protobuf message: x"),
                4096,
            )
            .unwrap(),
            framework_status(&Status::out_of_range("message length too large"), 4096).unwrap(),
            framework_status(&Status::unimplemented(""), 4096).unwrap(),
        ]
    }

    fn keys(status: &Status) -> (String, BTreeSet<String>) {
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("every status carries ErrorInfo");
        assert_eq!(info.domain, DOMAIN);
        (info.reason, info.metadata.into_keys().collect())
    }

    #[test]
    fn every_reason_sends_exactly_the_metadata_keys_its_proto_comment_documents() {
        let documented = error_doc::documented_metadata(error_doc::COMMON_PROTO);
        let statuses: Vec<Status> = every_error()
            .into_iter()
            .map(to_status)
            .chain(other_statuses())
            .collect();
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for status in &statuses {
            let (reason, sent) = keys(status);
            let doc = documented
                .get(&reason)
                .unwrap_or_else(|| panic!("{reason} is not an ErrorReason of common.proto"));
            if let Err(why) = doc.check(&sent) {
                panic!("{reason}: {why} ({status:?})");
            }
            seen.entry(reason).or_default().extend(sent);
        }
        // Every reason of the contract is produced here, with each of its optional keys.
        let mut value = 1;
        while let Ok(reason) = pb::ErrorReason::try_from(value) {
            let name = reason
                .as_str_name()
                .strip_prefix("ERROR_REASON_")
                .expect("prefixed");
            let sent = seen
                .get(name)
                .unwrap_or_else(|| panic!("no case answers {name}"));
            let doc = &documented[name];
            assert!(
                doc.optional.is_subset(sent),
                "{name}: optional keys {:?} never sent ({sent:?})",
                doc.optional
            );
            value += 1;
        }
        assert_eq!(
            (value - 1) as usize,
            documented.len(),
            "every documented reason is in the enum"
        );
    }

    #[test]
    fn metadata_names_providers_capabilities_and_states_as_the_contract_does() {
        for id in ProviderId::ALL {
            assert_eq!(id.proto_name(), convert::provider(id).as_str_name());
        }
        let mut value = 1;
        while let Ok(c) = pb::Capability::try_from(value) {
            let domain = all_capabilities()
                .into_iter()
                .find(|d| convert::capability(*d) == c)
                .unwrap_or_else(|| panic!("{c:?} has no domain capability"));
            assert_eq!(domain.proto_name(), c.as_str_name());
            value += 1;
        }
        for s in [
            PaymentState::Pending,
            PaymentState::Succeeded,
            PaymentState::Failed,
            PaymentState::OtpRequired,
            PaymentState::ValidationRequired,
            PaymentState::Reversed,
            PaymentState::NeedsAttention,
            PaymentState::Scheduled,
        ] {
            assert_eq!(s.proto_name(), convert::payment_state(s).as_str_name());
        }
        for r in Resource::ALL {
            assert!(
                error_doc::COMMON_PROTO.contains(r.type_name()),
                "the proto's ErrorReason comment lists {}",
                r.type_name()
            );
        }

        let status = to_status(GatewayError::CapabilityNotSupported {
            provider: ProviderId::Interswitch,
            capability: Capability::GetBalance,
        });
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["provider"], "PROVIDER_INTERSWITCH");
        assert_eq!(info.metadata["capability"], "CAPABILITY_GET_BALANCE");
        assert_eq!(
            status.message(),
            "PROVIDER_INTERSWITCH does not support CAPABILITY_GET_BALANCE"
        );
        let status = to_status(GatewayError::PaymentStateConflict {
            payment_id: "pay_1".into(),
            state: PaymentState::Failed,
            refusal: "only a PAYMENT_STATE_SUCCEEDED payment can be reversed",
        });
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["state"], "PAYMENT_STATE_FAILED");
    }

    fn all_capabilities() -> Vec<Capability> {
        use Capability::*;
        vec![
            ListCategories,
            ListBillers,
            ListProducts,
            ListPaymentMethods,
            ValidateCustomer,
            LookupBill,
            CreatePayment,
            QueryPayment,
            ValidatePaymentOtp,
            ReversePayment,
            ListProviderPayments,
            SavedBills,
            CreateCollection,
            GetBalance,
            ListAccounts,
            GetPaymentOptions,
            SendOtp,
        ]
    }

    /// The pieces of a message between its separators.
    fn clauses(message: &str) -> Vec<String> {
        message
            .split([':', ';', '(', ')'])
            .map(|c| c.trim().to_lowercase())
            .filter(|c| c.len() > 3)
            .collect()
    }

    #[test]
    fn every_message_is_one_clean_sentence_without_internal_names_or_secrets() {
        for status in every_error().into_iter().map(to_status) {
            let m = status.message();
            assert!(!m.is_empty(), "{status:?}");
            assert_eq!(m, m.trim(), "{status:?}");
            assert!(!m.contains("  "), "double space: {m:?}");
            assert!(!m.chars().any(char::is_control), "control character: {m:?}");
            for internal in ["delete_saved_bill", "switch ", "interswitch ", "onepipe "] {
                assert!(!m.contains(internal), "internal name {internal:?} in {m:?}");
            }
            for secret in ["10.0.0.1", "expected value", "secret detail"] {
                assert!(!m.contains(secret), "{secret:?} in {m:?}");
            }
            let parts = clauses(m);
            let distinct: BTreeSet<&String> = parts.iter().collect();
            assert_eq!(distinct.len(), parts.len(), "doubled text: {m:?}");
        }
    }

    #[test]
    fn invalid_argument_names_every_violation_in_bad_request_order() {
        let status = to_status(every_error().remove(0));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "amount.minor_units: must be greater than zero; request_id: required (the \
             idempotency key of this call)"
        );
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        assert_eq!(status.message(), fields.join("; "));
        let status = to_status(at_switch(ProviderError::InvalidOrder(vec![
            ("switch.pin".into(), "4 digits".into()),
            ("inputs[meter]".into(), "not an input of this plan".into()),
        ])));
        assert_eq!(
            status.message(),
            "switch.pin: 4 digits; inputs[meter]: not an input of this plan"
        );
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["provider"], "PROVIDER_SWITCH");
    }

    #[test]
    fn not_found_names_the_resource_in_resource_info() {
        let status = to_status(GatewayError::not_found(Resource::Payment, "pay_0123"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "payment \"pay_0123\" not found");
        let info = status.get_error_details().resource_info().cloned().unwrap();
        assert_eq!(info.resource_type, "billpay.v1.Payment");
        assert_eq!(info.resource_name, "pay_0123");
        assert_eq!(info.owner, "");
        assert_eq!(info.description, status.message());

        // A saved bill Switch says is gone: NOT_FOUND, not a refusal with an empty code.
        let status = to_status(at_switch(ProviderError::NotFound {
            resource: Resource::SavedBill,
            name: "17".into(),
        }));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "saved bill \"17\" not found at PROVIDER_SWITCH"
        );
        let details = status.get_error_details();
        let info = details.resource_info().unwrap();
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            ("billpay.v1.SavedBill", "17")
        );
        assert_eq!(info.owner, "PROVIDER_SWITCH");
        let meta = &details.error_info().unwrap().metadata;
        assert_eq!(meta["resource_type"], "billpay.v1.SavedBill");
        assert_eq!(meta["resource_name"], "17");
        assert_eq!(meta["provider"], "PROVIDER_SWITCH");
    }

    #[test]
    fn a_provider_refusal_reads_as_a_sentence_with_its_code_and_message() {
        let status = to_status(at_switch(ProviderError::Rejected {
            code: "400".into(),
            message: "Bill  is\nnot payable".into(),
        }));
        assert_eq!(
            status.message(),
            "PROVIDER_SWITCH refused the request: Bill is not payable (code 400)"
        );
        let meta = status
            .get_error_details()
            .error_info()
            .cloned()
            .unwrap()
            .metadata;
        assert_eq!(meta["provider_code"], "400");
        assert_eq!(meta["provider_message"], "Bill is not payable");
        let status = to_status(at_switch(ProviderError::Timeout.not_sent()));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            status.message(),
            "PROVIDER_SWITCH did not answer in time; nothing was sent"
        );
    }
}

//! Logging: tracing to stderr as text or JSON lines, filtered by `RUST_LOG` (default `info`),
//! and a tower layer that gives every RPC a span with its method and request id. The request id
//! is the caller's `x-request-id` header when it sends a sane one, else a new UUID; it is echoed
//! back in the `x-request-id` response header. Request and response bodies are never logged.
//! The same layer counts every call (`billpay_rpc_requests_total`, `billpay_rpc_seconds`) and
//! every error by its ErrorInfo reason (`billpay_rpc_errors_total`): it is the outermost layer,
//! so it sees the status the caller gets, whichever layer answered it.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::{self, RpcErrorLabels, RpcLabels, RpcMethod};

/// Installs the global subscriber. `json` selects JSON lines.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Adds a per-request span and the `x-request-id` header.
#[derive(Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

/// The service made by [`RequestIdLayer`].
#[derive(Clone)]
pub struct RequestId<S> {
    inner: S,
}

/// The method as a metric label: our services' and the standard ones' paths, anything else
/// "other" (callers must not be able to create label values).
pub(crate) fn metric_method(path: &str) -> String {
    let known = ["/billpay.v1.", "/grpc.health.v1.", "/grpc.reflection."]
        .iter()
        .any(|p| path.starts_with(p))
        && path.len() <= 100
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    if known {
        path.to_owned()
    } else {
        "other".to_owned()
    }
}

/// The ErrorInfo reason of an error answered in the headers (a trailers-only response, as
/// every unary error is): one of the contract's ErrorReason names, `NONE` without ErrorInfo,
/// `OTHER` for a reason the contract does not name (kept out of the label set).
pub(crate) fn error_reason(headers: &http::HeaderMap) -> String {
    use tonic_types::StatusExt;
    let Some(info) = tonic::Status::from_header_map(headers)
        .and_then(|status| status.get_error_details().error_info().cloned())
    else {
        return "NONE".to_owned();
    };
    let known = crate::pb::ErrorReason::from_str_name(&format!("ERROR_REASON_{}", info.reason))
        .is_some_and(|r| r != crate::pb::ErrorReason::Unspecified);
    if known {
        info.reason
    } else {
        "OTHER".to_owned()
    }
}

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.to_owned())
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(sane_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!("rpc", method = %request.uri().path(), request_id);
        let method = metric_method(request.uri().path());
        // Take the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let started = Instant::now();
                let mut response = inner.call(request).await?;
                let grpc_status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned();
                let elapsed = started.elapsed();
                // A call the auth layer refused logs at a bounded rate there (a flood of them
                // must not flood the log); it is still counted below.
                if response
                    .extensions()
                    .get::<crate::auth::Refused>()
                    .is_none()
                {
                    tracing::info!(
                        grpc_status,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "rpc finished"
                    );
                }
                let m = metrics::global();
                if grpc_status != "0" {
                    m.rpc_errors
                        .get_or_create(&RpcErrorLabels {
                            method: method.clone(),
                            code: grpc_status.clone(),
                            reason: error_reason(response.headers()),
                        })
                        .inc();
                }
                m.rpc_requests
                    .get_or_create(&RpcLabels {
                        method: method.clone(),
                        code: grpc_status,
                    })
                    .inc();
                m.rpc_seconds
                    .get_or_create(&RpcMethod { method })
                    .observe(elapsed.as_secs_f64());
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("x-request-id", v);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    use super::error_reason;

    fn headers_of(status: Status) -> http::HeaderMap {
        status.into_http::<()>().headers().clone()
    }

    fn with_reason(reason: &str) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            reason,
            "billpay.gateway",
            std::collections::HashMap::<String, String>::new(),
        );
        Status::with_error_details(Code::ResourceExhausted, "refused", details)
    }

    /// The error label takes only the contract's reasons, so callers cannot grow its set.
    #[test]
    fn the_error_label_is_a_contract_reason_or_none_or_other() {
        assert_eq!(
            error_reason(&headers_of(with_reason("RATE_LIMITED"))),
            "RATE_LIMITED"
        );
        assert_eq!(error_reason(&headers_of(with_reason("MADE_UP"))), "OTHER");
        assert_eq!(
            error_reason(&headers_of(with_reason("UNSPECIFIED"))),
            "OTHER"
        );
        assert_eq!(
            error_reason(&headers_of(Status::not_found("no such service"))),
            "NONE"
        );
        assert_eq!(error_reason(&http::HeaderMap::new()), "NONE");
    }
}

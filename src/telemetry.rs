//! Logging and tracing. Logs: tracing to stderr as text or JSON lines, filtered by `RUST_LOG`
//! (default `info`). Per-call `rpc finished` lines are the access log (target `access`), off by
//! default (`[telemetry] access_log`): at a few thousand calls a second they were most of the
//! log, and metrics count every call while audit lines record every mutating one. Calls that
//! end in a gateway fault (UNKNOWN, INTERNAL, DATA_LOSS) always get a warning line.
//!
//! Tracing: with `[telemetry] otlp_endpoint` set, spans go to an OpenTelemetry collector over
//! OTLP/gRPC: one server span per RPC that continues the caller's W3C `traceparent` (what a
//! mesh sidecar forwards), a span per store operation (`crate::store::traced`) and per
//! provider HTTP call (`crate::providers::http`). Spans carry ids, names, codes and states,
//! never a request body, header, URL query or secret. Without an endpoint no exporter runs and
//! the store and provider spans are disabled at their call sites.
//!
//! The tower layer here gives every RPC its span (method and request id) and the
//! `x-request-id` header: the caller's when it sends a sane one, else a new UUID, echoed back
//! in the response. Request and response bodies are never logged.
//!
//! The same layer counts every call (`billpay_rpc_requests_total`, `billpay_rpc_seconds`) and
//! every error by its ErrorInfo reason (`billpay_rpc_errors_total`): it is the outermost layer,
//! so it sees the status the caller gets, whichever layer answered it.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderValue, Request, Response};
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
    Resource,
};
use tower::{Layer, Service};
use tracing::{Instrument, Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, registry::LookupSpan, util::SubscriberInitExt};

use crate::config::{AccessLog, TelemetryConfig};
use crate::metrics::{self, RpcErrorLabels, RpcLabels, RpcMethod};

/// Whether spans are exported (a [`Tracing`] was started): the store is wrapped in spans and
/// the caller's `traceparent` read only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The access log: 0 writes no line, 1 every call's, N every Nth call's.
static ACCESS_LOG_EVERY: AtomicU64 = AtomicU64::new(0);
/// Calls seen by the sampled access log.
static ACCESS_LOG_CALLS: AtomicU64 = AtomicU64::new(0);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Sets which calls get an access log line; `sample_rate` (0 to 1) applies to `Sampled`.
pub fn set_access_log(mode: AccessLog, sample_rate: f64) {
    ACCESS_LOG_EVERY.store(access_log_every(mode, sample_rate), Ordering::Relaxed);
}

/// One call in how many gets an access line (0: none).
fn access_log_every(mode: AccessLog, sample_rate: f64) -> u64 {
    match mode {
        AccessLog::Off => 0,
        AccessLog::All => 1,
        AccessLog::Sampled if sample_rate <= 0.0 || sample_rate.is_nan() => 0,
        AccessLog::Sampled => (1.0 / sample_rate.min(1.0)).round().max(1.0) as u64,
    }
}

/// Whether this call gets an access log line (counting it when sampled).
fn access_log_due() -> bool {
    match ACCESS_LOG_EVERY.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        every => ACCESS_LOG_CALLS
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(every),
    }
}

/// Checks `[telemetry]`: shares between 0 and 1, a timeout above 0.
pub fn check(config: &TelemetryConfig) -> Result<(), String> {
    for (name, value) in [
        ("trace_sample_ratio", config.trace_sample_ratio),
        ("access_log_sample_rate", config.access_log_sample_rate),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(format!("telemetry.{name} must be from 0 to 1"));
        }
    }
    if !config.otlp_endpoint.is_empty() && config.otlp_timeout_ms == 0 {
        return Err("telemetry.otlp_timeout_ms must be above 0".into());
    }
    Ok(())
}

/// The span exporter: an OTLP/gRPC exporter behind a batch processor (its own thread). Dropping
/// it exports what is buffered and stops it (a blocking call: drop it off the async threads).
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the exporter when `config` names an endpoint (`None` otherwise). Must run inside
    /// a Tokio runtime: the exporter's gRPC channel lives on it. The collector is not needed
    /// yet: the channel connects on first export, and spans that cannot be sent are dropped.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Self>, String> {
        check(config)?;
        if config.otlp_endpoint.is_empty() {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(Duration::from_millis(config.otlp_timeout_ms))
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.trace_sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Some(Self { provider }))
    }

    /// The tracing layer that turns this crate's spans (DEBUG and up) and its INFO-and-up
    /// events (span events; the audit line among them) into OpenTelemetry spans. Nothing from
    /// other crates: their spans and events could carry URLs and headers.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        let tracer = self.provider.tracer("billpay-gateway");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                let ours = meta.target().starts_with("billpay_gateway") || meta.target() == "audit";
                ours && (*meta.level() <= Level::INFO
                    || (meta.is_span() && *meta.level() <= Level::DEBUG))
            }))
    }

    /// Exports every finished span now (blocking).
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber (`json` selects JSON lines), the access log setting and,
/// with `[telemetry] otlp_endpoint`, the span exporter, which the caller keeps until exit.
pub fn init(json: bool, config: &TelemetryConfig) -> Result<Option<Tracing>, String> {
    use tracing_subscriber::Layer as _;
    set_access_log(config.access_log, config.access_log_sample_rate);
    let tracing = Tracing::start(config)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(tracing.as_ref().map(|t| t.layer()))
        .try_init();
    Ok(tracing)
}

/// Reads W3C trace context from request headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Whether a gRPC status code (as sent in `grpc-status`) is a fault of the gateway rather than
/// an answer: UNKNOWN, INTERNAL, DATA_LOSS.
fn gateway_fault(grpc_status: &str) -> bool {
    matches!(grpc_status, "2" | "13" | "15")
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
        let method = metric_method(request.uri().path());
        let span = if exporting() {
            rpc_span(&request, &method, &request_id)
        } else {
            tracing::info_span!("rpc", method = %request.uri().path(), request_id)
        };
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
                if exporting() {
                    let span = tracing::Span::current();
                    let code: i64 = grpc_status.parse().unwrap_or(2);
                    span.set_attribute("rpc.grpc.status_code", code);
                    if server_error(code) {
                        span.set_status(opentelemetry::trace::Status::error(format!(
                            "grpc-status {code}"
                        )));
                    }
                }
                // A call the auth layer refused logs at a bounded rate there (a flood of them
                // must not flood the log); it is still counted below.
                let refused = response
                    .extensions()
                    .get::<crate::auth::Refused>()
                    .is_some();
                let elapsed_ms = elapsed.as_millis() as u64;
                if !refused {
                    if gateway_fault(&grpc_status) {
                        tracing::warn!(target: "access", grpc_status, elapsed_ms, "rpc finished");
                    } else if access_log_due() {
                        tracing::info!(target: "access", grpc_status, elapsed_ms, "rpc finished");
                    }
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

/// The RPC's server span while exporting: named after the method (`other` for paths not
/// ours, so callers cannot create span names), a child of the caller's `traceparent` when it
/// sent one, with the OpenTelemetry RPC attributes.
fn rpc_span<B>(request: &Request<B>, method: &str, request_id: &str) -> tracing::Span {
    let name = method.trim_start_matches('/');
    let span = tracing::info_span!(
        "rpc",
        method = %request.uri().path(),
        request_id,
        otel.name = name,
        otel.kind = "server",
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let _ = span.set_parent(parent);
    span.set_attribute("rpc.system", "grpc");
    if let Some((service, rpc)) = name.split_once('/') {
        span.set_attribute("rpc.service", service.to_owned());
        span.set_attribute("rpc.method", rpc.to_owned());
    }
    span
}

/// The gRPC codes OpenTelemetry marks as a server span's error: the server failed, rather
/// than answered the caller's request with a refusal.
fn server_error(code: i64) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn the_access_log_samples_one_call_in_n() {
        assert_eq!(access_log_every(AccessLog::Off, 1.0), 0);
        assert_eq!(access_log_every(AccessLog::All, 0.0), 1);
        assert_eq!(access_log_every(AccessLog::Sampled, 0.01), 100);
        assert_eq!(access_log_every(AccessLog::Sampled, 0.3), 3);
        assert_eq!(access_log_every(AccessLog::Sampled, 1.0), 1);
        assert_eq!(access_log_every(AccessLog::Sampled, 0.0), 0);
    }

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        let bad = TelemetryConfig {
            access_log_sample_rate: 1.5,
            ..Default::default()
        };
        assert!(check(&bad).unwrap_err().contains("access_log_sample_rate"));
        let bad = TelemetryConfig {
            trace_sample_ratio: -0.1,
            ..Default::default()
        };
        assert!(check(&bad).unwrap_err().contains("trace_sample_ratio"));
        assert!(check(&TelemetryConfig::default()).is_ok());
    }

    #[test]
    fn no_endpoint_starts_no_exporter() {
        assert!(Tracing::start(&TelemetryConfig::default())
            .unwrap()
            .is_none());
    }

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

//! HTTP plumbing shared by provider clients: one reqwest client per provider with its timeouts,
//! the mapping of transport failures to [`ProviderError`], and each call's metrics and span
//! (provider, operation, HTTP status or failure kind; never a URL, header or body). Provider-
//! specific headers and bodies stay in each provider's folder.

use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::ProviderError;
use crate::metrics::{self, ProviderLabels, ProviderOperation};

/// Largest provider response body read, in bytes; larger answers are unreadable.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Builds a client with a connect timeout and a whole-request timeout.
pub fn client(connect_timeout: Duration, request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .user_agent(concat!("billpay-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("TLS backend initialises")
}

/// Maps a reqwest failure to a provider error. The message keeps the URL out: URLs may carry
/// references a caller should ask the gateway about, not read in an error.
pub fn transport_error(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout
    } else if err.is_decode() || err.is_body() {
        ProviderError::Unreadable(err.without_url().to_string())
    } else {
        ProviderError::Transport(err.without_url().to_string())
    }
}

/// A provider's raw answer: status and body bytes.
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends `request` and reads the body (bounded by [`MAX_BODY_BYTES`]), recording the call's
/// outcome and latency under `provider` and `operation`, in a client span (DEBUG level,
/// exported only with `[telemetry] otlp_endpoint`) with the same names and the HTTP status.
/// Logs and traces no URL, header or body: URLs may carry references and keys in their query.
pub async fn send(
    provider: &'static str,
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<RawResponse, ProviderError> {
    let span = tracing::debug_span!(
        "provider_call",
        otel.name = format_args!("{provider} {operation}"),
        otel.kind = "client",
        billpay.provider = provider,
        billpay.operation = operation,
        http.response.status_code = tracing::field::Empty,
        billpay.outcome = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = read(request).instrument(span.clone()).await;
    let outcome = match &result {
        Ok(r) => format!("{}xx", r.status / 100),
        Err(ProviderError::Timeout) => "timeout".into(),
        Err(ProviderError::Unreadable(_)) => "unreadable".into(),
        Err(_) => "transport".into(),
    };
    if !span.is_disabled() {
        if let Ok(r) = &result {
            span.record("http.response.status_code", r.status);
        }
        span.record("billpay.outcome", outcome.as_str());
        if transport_failure(&result) {
            span.set_status(opentelemetry::trace::Status::error(outcome.clone()));
        }
    }
    let elapsed = started.elapsed();
    tracing::debug!(
        provider,
        operation,
        outcome,
        elapsed_ms = elapsed.as_millis() as u64,
        "provider call"
    );
    let m = metrics::global();
    m.provider_calls
        .get_or_create(&ProviderLabels {
            provider: provider.into(),
            operation: operation.into(),
            outcome,
        })
        .inc();
    m.provider_seconds
        .get_or_create(&ProviderOperation {
            provider: provider.into(),
            operation: operation.into(),
        })
        .observe(elapsed.as_secs_f64());
    result
}

/// Whether an HTTP call failed to reach a working provider (for the circuit breaker): a
/// timeout, a connection error or a 5xx. Declines, 4xx and odd bodies are answers.
pub fn transport_failure(result: &Result<RawResponse, ProviderError>) -> bool {
    match result {
        Ok(raw) => raw.status >= 500,
        Err(e) => matches!(e, ProviderError::Timeout | ProviderError::Transport(_)),
    }
}

async fn read(request: reqwest::RequestBuilder) -> Result<RawResponse, ProviderError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ProviderError::Unreadable(format!(
                "body larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse { status, body })
}

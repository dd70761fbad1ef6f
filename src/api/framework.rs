//! Statuses the gRPC framework answers before any handler runs — a body that is not protobuf,
//! a message over the size limit, an unknown method — leave tonic as a trailers-only response
//! without details (an undecodable body even as INTERNAL). This layer reads such a response's
//! status and, when [`status::framework_status`] knows it, answers that mapping instead, so
//! every error a caller sees carries ErrorInfo.

use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::api::status;

/// Rewrites the framework's undetailed statuses (see the module doc).
#[derive(Clone, Copy)]
pub struct FrameworkStatusLayer {
    /// The request size limit, reported in REQUEST_TOO_LARGE's metadata, bytes.
    pub max_request_bytes: usize,
}

impl<S> Layer<S> for FrameworkStatusLayer {
    type Service = FrameworkStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FrameworkStatus {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// The service made by [`FrameworkStatusLayer`].
#[derive(Clone)]
pub struct FrameworkStatus<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, B, R> Service<Request<B>> for FrameworkStatus<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: Send + 'static,
    R: Default + Send + 'static,
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
        let limit = self.max_request_bytes;
        // Take the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            // Only a trailers-only answer has its status in the headers; a handler's answer
            // with details is left alone by `framework_status`.
            let Some(original) = Status::from_header_map(response.headers()) else {
                return Ok(response);
            };
            match status::framework_status(&original, limit) {
                Some(mapped) => {
                    tracing::debug!(code = ?original.code(), message = original.message(),
                        "framework status given ErrorInfo");
                    Ok(mapped.into_http())
                }
                None => Ok(response),
            }
        })
    }
}

//! The cap on `billpay.v1` calls in progress across all connections (`[server]
//! max_calls_in_progress`). The listener bounds streams per connection and connections, but
//! their product (256 x 4,096) is far more calls than memory allows: each call admitted holds
//! its state until its request body arrives, so a client that opens streams and never finishes
//! them grows the gateway with every one. Past the cap a call is answered at once,
//! RESOURCE_EXHAUSTED (SERVER_BUSY, with RetryInfo), before any work. Health and reflection are
//! not counted, so the mesh keeps seeing the gateway while it sheds load.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use crate::error::GatewayError;

/// The path prefix of the calls counted.
const COUNTED_PREFIX: &str = "/billpay.v1.";
/// The delay a refused caller is told to wait (RetryInfo).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Caps calls in progress (see the module doc); `None`: unlimited.
#[derive(Clone)]
pub struct CallLimitLayer {
    permits: Option<Arc<Semaphore>>,
    max: usize,
}

impl CallLimitLayer {
    /// At most `max` calls at once; `0`: unlimited.
    pub fn new(max: usize) -> Self {
        Self {
            permits: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            max,
        }
    }
}

impl<S> Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            permits: self.permits.clone(),
            max: self.max,
        }
    }
}

/// The service made by [`CallLimitLayer`].
#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    permits: Option<Arc<Semaphore>>,
    max: usize,
}

impl<S, B, R> Service<Request<B>> for CallLimit<S>
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
        let permit = match &self.permits {
            Some(permits) if request.uri().path().starts_with(COUNTED_PREFIX) => {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        crate::metrics::global().busy_refusals.inc();
                        let status: tonic::Status = GatewayError::ServerBusy {
                            max_calls: self.max,
                            retry_after: RETRY_AFTER,
                        }
                        .into();
                        let (parts, _) = status.into_http::<()>().into_parts();
                        return Box::pin(
                            async move { Ok(Response::from_parts(parts, R::default())) },
                        );
                    }
                }
            }
            _ => None,
        };
        // Take the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Held until the handler answered: the whole life of the call's request.
            let _permit = permit;
            inner.call(request).await
        })
    }
}

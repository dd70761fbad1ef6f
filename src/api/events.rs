//! WatchPayment and WatchPaymentEvents: the payment events outbox (see `gateway::events`) as
//! gRPC server streams.

use std::pin::Pin;

use tonic::{Response, Status};

use crate::gateway::Gateway;
use crate::pb;

/// A server stream of `T`.
pub type EventStream<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

pub(super) async fn watch_payment(
    gateway: &std::sync::Arc<Gateway>,
    request: pb::WatchPaymentRequest,
) -> Result<Response<EventStream<pb::WatchPaymentResponse>>, Status> {
    let _ = (gateway, request);
    Err(Status::unimplemented("WatchPayment"))
}

pub(super) async fn watch_payment_events(
    gateway: &std::sync::Arc<Gateway>,
    request: pb::WatchPaymentEventsRequest,
) -> Result<Response<EventStream<pb::WatchPaymentEventsResponse>>, Status> {
    let _ = (gateway, request);
    Err(Status::unimplemented("WatchPaymentEvents"))
}

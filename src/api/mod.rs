//! gRPC handlers: proto <-> domain conversion, request validation, and the one mapping of
//! errors to `tonic::Status` ([`status`]). Handlers hold an `Arc<Gateway>` and nothing else.

pub mod account;
pub mod audit;
pub mod call_limit;
pub mod catalog;
pub mod convert;
pub mod customer;
pub mod deadline;
pub mod events;
pub mod framework;
pub mod operator;
pub mod page;
pub mod payment;
pub mod status;
pub mod validate;

use std::{sync::Arc, time::Duration};

use crate::gateway::Gateway;

/// The implementation of every `billpay.v1` service: thin handlers over the [`Gateway`].
#[derive(Clone)]
pub struct Api {
    gateway: Arc<Gateway>,
    /// Answer mutating RPCs this long before the caller's deadline.
    deadline_margin: Duration,
}

impl Api {
    /// Handlers over `gateway`.
    pub fn new(gateway: Arc<Gateway>, deadline_margin: Duration) -> Self {
        Self {
            gateway,
            deadline_margin,
        }
    }
}

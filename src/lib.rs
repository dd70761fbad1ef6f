//! billpay-gateway: one typed gRPC contract over five bill-payment providers.
//!
//! A request flows one way: [`api`] validates and converts -> [`gateway`] applies idempotency,
//! caches and the payment journal -> [`providers`] sign and call HTTP -> back up as [`domain`]
//! types -> [`api`] maps to proto. Provider code never sees tonic; handlers never see provider
//! JSON.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod gateway;
pub mod listener;
pub mod metrics;
pub mod pb;
pub mod providers;
pub mod rate_limit;
pub mod relay;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod telemetry;

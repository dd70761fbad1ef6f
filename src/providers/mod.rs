//! One folder per provider: the client (implements [`crate::domain::Provider`]), its wire types
//! beside it, its auth/signing, and its response codes kept as data. Shared HTTP plumbing lives
//! in [`http`].

pub mod call_time;
pub mod guard;
pub mod http;
pub mod interintel;
pub mod interswitch;
pub mod ip2;
pub mod onepipe;
pub mod switch;
pub mod token_cache;

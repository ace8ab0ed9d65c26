//! tollgate: an API gateway on Pingora whose heart is the consumer.
//!
//! Config compiles into an immutable [`snapshot::Snapshot`]; the proxy ([`proxy::Gateway`]) reads
//! one snapshot per request and runs [`pipeline::run`] on it.

pub mod access_log;
pub mod addr;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connection;
pub mod consumer;
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod ids;
pub mod limiter;
pub mod log_limit;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod plugins;
pub mod proxy;
pub mod query;
pub mod reject;
pub mod reload;
pub mod router;
pub mod secret;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod upstream;

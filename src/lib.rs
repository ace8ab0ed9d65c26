//! tollgate: an API gateway on Pingora whose heart is the consumer.
//!
//! Config compiles into an immutable [`snapshot::Snapshot`]; the proxy ([`proxy::Gateway`]) reads
//! one snapshot per request and runs [`pipeline::run`] on it.

pub(crate) mod access_log;
pub(crate) mod addr;
pub(crate) mod auth;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod consumer;
pub(crate) mod cow_map;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod headers;
pub(crate) mod ids;
pub(crate) mod limiter;
pub(crate) mod log_limit;
pub(crate) mod metrics;
pub(crate) mod path;
pub(crate) mod pipeline;
pub(crate) mod plugins;
pub(crate) mod proxy;
pub(crate) mod query;
pub(crate) mod reject;
pub(crate) mod reload;
pub(crate) mod router;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod snapshot;
pub(crate) mod status;
pub(crate) mod upstream;

// The public surface: what the binary (src/main.rs), the benchmarks and the fuzz targets use.
// Everything else is crate-private (`unreachable_pub` in Cargo.toml keeps it so).
pub use cli::{Cli, Command, SecretKind};
pub use config::compile::compile;
pub use config::raw::ResourcesConf;
pub use config::{Loaded, Node, load, load_logged};
pub use limiter::{CounterKey, Limiter};
pub use pipeline::{RequestInfo, run as run_pipeline};
pub use plugins::limit_count::{KeyVars, LimitCount, LimitCountConf, compile_limit_count};
pub use reload::release_free_memory;
pub use server::run as serve;
pub use snapshot::Snapshot;

//! Where a counter lives: locally, or in Redis (one server or a cluster).

use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum LimitPolicy {
    Local,
    Redis(Arc<RedisSettings>),
}

/// Where and how a Redis-backed conf counts.
#[derive(Debug)]
pub struct RedisSettings {
    pub target: RedisTarget,
    /// `redis_timeout`: bounds every call, connecting included.
    pub timeout: Duration,
    /// `sync_interval`: count locally, push deltas this often (see `limiter::redis`).
    pub sync_interval: Option<Duration>,
    /// Which connection to use: a hash of the target and timeout, keyed per process (it covers
    /// the password, so it is not stable and not meant to be shown).
    pub(crate) backend_id: u64,
    /// `host:port/db` or `cluster <name>`, for errors and logs; no secret.
    pub label: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single {
        host: Box<str>,
        port: u16,
        username: Option<Box<str>>,
        password: Option<Secret>,
        database: u32,
    },
    Cluster {
        name: Box<str>,
        nodes: Box<[(Box<str>, u16)]>,
        password: Option<Secret>,
    },
}

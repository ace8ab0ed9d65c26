//! The integration-test harness: everything a test needs to drive the real `tollgate` binary.
//!
//! - [`Gateway`]: writes a node file and resource files to a temp dir, runs the binary on free
//!   loopback ports, waits for `/healthz`, rewrites files, signals, reads its log; killed on drop.
//! - [`Upstream`]: an echo server (see [`echo`]) on `127.0.0.1:0`, steered by request headers.
//! - [`http`], [`Client`], [`tls_connect`]: a hand-written HTTP/1.1 client (and a minimal h2 GET)
//!   that sends request targets byte for byte.
//! - [`Redis`], [`RedisCluster`]: throwaway `redis-server` processes.
//! - [`wait_until`]: the only way a test waits. No bare sleeps.

// Each test group uses part of the harness.
#![allow(dead_code, unused_imports)]

pub mod echo;
mod gateway;
mod http;
mod redis;
mod upstream;

use std::time::{Duration, Instant};

pub use gateway::{Gateway, GatewayBuilder, run_tollgate, tollgate_check};
pub use http::{Client, Resp, TlsConn, http, make_test_cert, tls_connect, try_http};
pub use redis::{Redis, RedisCluster, redis_cmd};
pub use upstream::Upstream;

/// Polls `cond` every ~20 ms until it holds; panics naming `what` after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

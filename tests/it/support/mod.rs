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
pub use http::{Client, Resp, TlsConn, chunked, http, make_test_cert, tls_connect, try_http};
pub use redis::{Redis, RedisCluster, redis_cmd};
pub use upstream::{Seen, Upstream};

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
    // Below the kernel's ephemeral range (32768+), so no client socket or `127.0.0.1:0` server
    // can take the port before the gateway binds it; and never the same port twice in this
    // test process, so two gateways starting at once cannot pick the same one.
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let base = std::process::id() % 12_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 12_000, "no free port left in 20000..32000");
        let port = 20_000 + ((base + n * 7) % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// Runs `check`, expects exit 1 and returns the stderr lines.
pub fn check_fails(files: &[(&str, &str)]) -> Vec<String> {
    let (code, out, err) = tollgate_check(files);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    err.lines().map(str::to_owned).collect()
}

/// Asserts some line starts with `prefix` and contains every one of `parts`.
pub fn assert_line(lines: &[String], prefix: &str, parts: &[&str]) {
    let found = lines
        .iter()
        .any(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)));
    assert!(
        found,
        "no line `{prefix}...` with {parts:?} in:\n{}",
        lines.join("\n")
    );
}

//! Bare Pingora reverse proxy: the framework's floor in `benches/load/run.sh`. One listener, one
//! fixed upstream over a pooled keepalive connection, no routing, auth, header changes or metrics.
//! The same code as `pingora-floor` in the shared benchmark rig, so either can stand for the other
//! (`FLOOR_BIN=target/release/examples/bare_proxy` works with the rig's `compare.sh`).
//!
//! Usage: `bare_proxy -c benches/load/conf/bare-pingora.yaml` (Pingora's standard options; that
//! conf sets `threads: 1`). Environment: `FLOOR_LISTEN` (default `127.0.0.1:9083`),
//! `FLOOR_UPSTREAM` (default `127.0.0.1:1980`).
// A binary crate has no public surface: `pub` here only shares items between its modules.
#![allow(unreachable_pub)]

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::server::Server;
use pingora_core::server::configuration::Opt;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// Proxy that sends every request to one fixed upstream.
struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        // Plain HTTP, no SNI; Pingora's connector keeps the connection in its keepalive pool.
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let listen = std::env::var("FLOOR_LISTEN").unwrap_or_else(|_| "127.0.0.1:9083".to_string());
    let upstream = std::env::var("FLOOR_UPSTREAM").unwrap_or_else(|_| "127.0.0.1:1980".to_string());
    let Ok(mut server) = Server::new(Some(Opt::parse_args())) else {
        eprintln!("bad server configuration");
        std::process::exit(2);
    };
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}

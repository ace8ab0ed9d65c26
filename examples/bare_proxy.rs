//! Bare Pingora reverse proxy, the baseline for `benches/load/run.sh`: one listener, one fixed
//! upstream, no routing, auth or metrics. `bare_proxy LISTEN UPSTREAM [THREADS]`.

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::server::Server;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Bare(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9090".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:9081".into());
    let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let Ok(addr) = upstream.parse() else {
        eprintln!("UPSTREAM must be ip:port");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Bare(addr));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}

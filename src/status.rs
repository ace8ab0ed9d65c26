//! The status listener: `/metrics` (Prometheus text) and `/healthz`; anything else is 404.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::reload::ConfigStore;

pub(crate) struct StatusApp {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    /// The proxy listeners, as addresses to connect to: `/healthz` answers 503 until each
    /// accepts a connection (Pingora opens them in their own threads, maybe after this one).
    pub listeners: Vec<std::net::SocketAddr>,
    pub ready: std::sync::atomic::AtomicBool,
}

impl StatusApp {
    /// True once every proxy listener has accepted a connection.
    async fn listening(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        for addr in &self.listeners {
            let probe = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            );
            if !matches!(probe.await, Ok(Ok(_))) {
                return false;
            }
        }
        self.ready.store(true, Ordering::Relaxed);
        true
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for StatusApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = if matches!(req.method, http::Method::GET | http::Method::HEAD) {
            req.uri.path()
        } else {
            ""
        };
        match path {
            "/healthz" if !self.listening().await => respond(
                503,
                "application/json",
                b"{\"status\":\"starting\"}\n".to_vec(),
            ),
            "/healthz" => {
                let snap = self.store.load_full();
                // Keys in the CONTRACT's order.
                let body = format!(
                    "{{\"status\":\"ok\",\"config_version\":{},\"last_reload\":\"{}\"}}
",
                    serde_json::Value::from(&*snap.version),
                    humantime::format_rfc3339_seconds(snap.loaded_at)
                );
                respond(200, "application/json", body.into_bytes())
            }
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            _ => respond(
                404,
                "application/json",
                b"{\"error_msg\":\"404 Not Found\"}\n".to_vec(),
            ),
        }
    }
}

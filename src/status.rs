//! The status listener: `/metrics` (Prometheus text) and `/healthz`; anything else is 404.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::reload::ConfigStore;

pub struct StatusApp {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
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

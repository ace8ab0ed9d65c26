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
        let path = session.req_header().uri.path();
        match path {
            "/healthz" => {
                let snap = self.store.load_full();
                let body = serde_json::json!({
                    "status": "ok",
                    "config_version": &*snap.version,
                    "last_reload": humantime::format_rfc3339_seconds(snap.loaded_at).to_string(),
                });
                respond(200, "application/json", format!("{body}\n").into_bytes())
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

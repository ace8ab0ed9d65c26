//! Connection-level behaviour Pingora leaves open: a new connection must start its first request
//! within `client_header_timeout` (Pingora's h2c preface peek waits forever), and at shutdown
//! idle keep-alive connections are kept for a short drain window, so a request a client sends on
//! one just then is answered (with `Connection: close`) rather than lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;

/// Wraps the proxy app: waits (bounded) for the first byte of a connection, then hands it on;
/// delays Pingora's drop of idle keep-alive connections at shutdown by `drain_window`.
pub(crate) struct Connections<A> {
    pub inner: Arc<A>,
    pub client_header_timeout: Duration,
    pub drain_window: Duration,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Connections<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.client_header_timeout, stream.try_peek(&mut first)).await {
            // Nothing within the timeout, or the peer closed: drop the connection.
            Err(_) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        // Listeners are closed; requests still arriving on kept-alive connections are served
        // with `Connection: close` (Pingora turns keep-alive off once shutdown began). Only
        // after the window are connections idle in between requests dropped.
        tokio::time::sleep(self.drain_window).await;
        self.inner.cleanup().await;
    }
}

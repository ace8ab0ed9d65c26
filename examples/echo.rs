//! Demo upstream for the README's quick start: an HTTP/1.1 echo server that answers every request
//! with 200 and a JSON description of what it received (see `tests/it/support/echo.rs`, shared
//! with the integration tests).
//!
//! ```text
//! cargo run --example echo                    # listens on 127.0.0.1:9081
//! cargo run --example echo -- 127.0.0.1:9082  # another node; "node" in the answer tells them apart
//! ```
// A binary crate has no public surface: `pub` here only shares items between its modules.
#![allow(unreachable_pub)]

#[path = "../tests/it/support/echo.rs"]
mod echo;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9081".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("echo upstream listening on http://{addr}");
    echo::serve(listener, addr.into(), Arc::new(AtomicUsize::new(0))).await;
    Ok(())
}

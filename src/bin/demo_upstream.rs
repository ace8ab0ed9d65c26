//! `tollgate-demo-upstream`: the demo upstream of the README's quick start, an HTTP/1.1 echo
//! server that answers every request with 200 and a JSON description of what it received
//! (`tests/it/support/echo.rs`, the same code the integration tests run against).
//!
//! A binary target of the package, not an example, so that `cargo build --release` builds it
//! beside the gateway from the normal dependencies alone (an example would pull in the
//! dev-dependencies: criterion, rcgen, ...).
//!
//! ```text
//! target/release/tollgate-demo-upstream                  # listens on 127.0.0.1:9081
//! target/release/tollgate-demo-upstream 127.0.0.1:9082   # another node; "node" in the answer tells them apart
//! ```
// A binary crate has no public surface: `pub` here only shares items between its modules.
#![allow(unreachable_pub)]

#[path = "../../tests/it/support/echo.rs"]
mod echo;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9081".to_owned());
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo upstream: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("demo upstream listening on http://{addr}");
    echo::serve(listener, addr.into(), Arc::new(AtomicUsize::new(0))).await;
    ExitCode::SUCCESS
}

//! [`Upstream`]: the echo server of [`super::echo`] on its own thread and runtime, for one test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::echo;

/// An echo upstream on `127.0.0.1:<free port>`; stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts an echo server whose answers say `"node": name`.
    pub fn start(name: &str) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel::<()>();
        let (name, counter): (Arc<str>, _) = (name.into(), hits.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = echo::serve(listener, name, counter) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels the connection tasks, delayed answers included.
        });
        Upstream {
            addr,
            hits,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `"127.0.0.1:PORT"`, as an upstream node is written.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// An inline upstream with this node alone, as YAML flow text:
    /// `{type: roundrobin, nodes: {"127.0.0.1:PORT": 1}}`.
    pub fn yaml(&self) -> String {
        format!(r#"{{type: roundrobin, nodes: {{"{}": 1}}}}"#, self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

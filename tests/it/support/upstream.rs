//! [`Upstream`]: the echo server of [`super::echo`] on its own thread and runtime, for one test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::echo;

/// An echo upstream on `127.0.0.1:<free port>`; stops when dropped.
pub struct Upstream {
    addr: SocketAddr,
    counters: Arc<echo::Counters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts an echo server whose answers say `"node": name`.
    pub fn start(name: &str) -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let counters = Arc::new(echo::Counters::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (name, counter): (Arc<str>, _) = (name.into(), counters.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    () = echo::serve_counted(listener, name, counter) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels the connection tasks, delayed answers included.
        });
        Upstream {
            addr,
            counters,
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

    /// Requests received whole so far.
    pub fn hits(&self) -> usize {
        self.counters.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn conns(&self) -> usize {
        self.counters.conns.load(Ordering::SeqCst)
    }

    /// Bytes received so far, counted as they arrive (a request head alone counts).
    pub fn bytes(&self) -> usize {
        self.counters.bytes.load(Ordering::SeqCst)
    }

    /// Everything the upstream has seen so far, for [`Self::assert_untouched`].
    pub fn seen(&self) -> Seen {
        Seen {
            hits: self.hits(),
            conns: self.conns(),
            bytes: self.bytes(),
        }
    }

    /// Asserts that nothing reached the upstream since `before`: no connection, no byte, no
    /// request. Watches for [`QUIET`] more, as a head sent on after the client's answer (a
    /// race) arrives within that time on loopback; any change fails at once.
    #[track_caller]
    pub fn assert_untouched(&self, before: Seen, what: &str) {
        let start = Instant::now();
        loop {
            let now = self.seen();
            assert_eq!(now, before, "{what}: something reached the upstream");
            if start.elapsed() >= QUIET {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An inline upstream with this node alone, as YAML flow text:
    /// `{type: roundrobin, nodes: {"127.0.0.1:PORT": 1}}`.
    pub fn yaml(&self) -> String {
        format!(r#"{{type: roundrobin, nodes: {{"{}": 1}}}}"#, self.addr)
    }
}

/// How long [`Upstream::assert_untouched`] watches for a late arrival.
pub const QUIET: Duration = Duration::from_millis(300);

/// A snapshot of an upstream's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub hits: usize,
    pub conns: usize,
    pub bytes: usize,
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

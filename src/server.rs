//! Builds and runs the Pingora server from the node file: proxy listeners (TLS included),
//! the status listener, the reloader, and our signal handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use log::info;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::ShutdownWatch;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::background::{BackgroundService, background_service};
use pingora_core::services::listening::Service;
use tokio::signal::unix::{SignalKind, signal};

use crate::access_log::AccessLog;
use crate::config::Loaded;
use crate::config::node::{ListenConf, Node};
use crate::connection::Connections;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::{ConfigStore, Live, Reloader, ReloaderService, Trigger};
use crate::status::StatusApp;

/// SIGTERM and SIGINT: graceful terminate; SIGQUIT: graceful upgrade.
struct Signals;

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = quit.recv() => {
                info!("SIGQUIT received: handing the listeners to the upgraded process, then draining");
                ShutdownSignal::GracefulUpgrade
            }
            _ = term.recv() => {
                info!("SIGTERM received: graceful shutdown");
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                info!("SIGINT received: graceful shutdown");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// Ends a graceful shutdown as soon as in-flight requests are done (and the grace period has
/// passed), instead of always waiting for the whole bound.
struct Drain {
    inflight: Arc<AtomicUsize>,
    grace: Duration,
    /// `graceful_shutdown_timeout_seconds`, for the log line.
    bound: Duration,
    /// See [`crate::connection::Connections::drain_window`]: no exit before it ends.
    window: Duration,
    pid_file: PidFile,
    access_log: Option<Arc<AccessLog>>,
    limiter: Arc<Limiter>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let started = tokio::time::Instant::now();
        info!(
            "Graceful shutdown: waiting for requests in flight (grace {}s, at most {}s more)",
            self.grace.as_secs(),
            self.bound.as_secs()
        );
        tokio::time::sleep(self.grace.max(self.window)).await;
        while self.inflight.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.limiter.flush().await;
        let flushed = started.elapsed() + Duration::from_secs(1);
        while self.access_log.as_ref().is_some_and(|l| !l.is_flushed())
            && started.elapsed() < flushed
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!("Graceful shutdown: no request in flight, exiting.");
        self.pid_file.remove();
        std::process::exit(0);
    }
}

/// `pid_file`, written by us at start (Pingora writes it only when daemonising) and removed at
/// exit unless an upgraded process has written its own pid there since.
#[derive(Clone)]
struct PidFile(Option<std::path::PathBuf>);

impl PidFile {
    fn write(path: &str) -> Result<PidFile, String> {
        let p = std::path::PathBuf::from(path);
        let tmp = p.with_extension("pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, &p))
            .map_err(|e| format!("pid_file {path}: {e}"))?;
        Ok(PidFile(Some(p)))
    }

    fn remove(&self) {
        let Some(p) = &self.0 else { return };
        let ours =
            std::fs::read_to_string(p).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs the limiter's sweeping and `sync_interval` pushes until shutdown.
struct LimiterService(Arc<Limiter>);

#[async_trait]
impl BackgroundService for LimiterService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.clone().run_background(shutdown).await
    }
}

/// Pingora opens listeners in its service threads and panics there when one cannot be opened
/// (address in use, unreadable certificate) while the rest of the process lives on. Exit instead,
/// so a gateway that cannot serve never looks healthy.
fn exit_when_a_listener_fails() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("");
        if msg.contains("Failed to build listeners")
            || msg.contains("Failed to load provided certificates")
        {
            eprintln!("tollgate: a listener could not be opened; exiting");
            std::process::exit(1);
        }
    }));
}

/// Where to connect to reach each proxy listener (a wildcard address through loopback).
fn probe_addresses(node: &Node) -> Vec<std::net::SocketAddr> {
    node.conf
        .listen
        .iter()
        .filter_map(|l| match l {
            ListenConf::Plain(a) => a.parse::<std::net::SocketAddr>().ok(),
            ListenConf::Full(f) => f.addr.parse().ok(),
        })
        .map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(if a.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            a
        })
        .collect()
}

fn node_path(node: &Node, p: Option<&str>, default: &str) -> String {
    node.resolve(std::path::Path::new(p.unwrap_or(default)))
        .display()
        .to_string()
}

/// Runs the gateway until a shutdown signal. Errors are startup errors (bad TLS files...).
pub fn run(node: Node, first: Loaded, upgrade: bool) -> Result<(), String> {
    let n = &node.conf;
    let grace = n.grace_period_seconds.unwrap_or(0);
    let drain = n.graceful_shutdown_timeout_seconds.unwrap_or(10);
    let conf = ServerConf {
        threads: n.threads,
        // Measured: one runtime per thread is ~10% faster here than work stealing.
        work_stealing: false,
        // Relative paths are relative to the node file's folder, as every path of ours.
        pid_file: node_path(&node, n.pid_file.as_deref(), "/tmp/tollgate.pid"),
        upgrade_sock: node_path(
            &node,
            n.upgrade_sock.as_deref(),
            "/tmp/tollgate_upgrade.sock",
        ),
        // Pingora keeps serving in-flight requests during its grace period and drops them after:
        // give it the whole bound; `Drain` exits earlier, as soon as they are done.
        grace_period_seconds: Some(grace + drain),
        graceful_shutdown_timeout_seconds: Some(1),
        // Timeouts of a second or more (keep-alive, upstream read/send: 60 s by default, nearly
        // always cancelled) on Tokio's timer wheel rather than Pingora's fast timers, which keep
        // a cancelled timer until its deadline: 1.7k fewer instructions per request
        // (benches/RESULTS.md, Performance).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..Default::default()
    };
    exit_when_a_listener_fails();
    let mut server = Server::new_with_opt_and_conf(
        Opt {
            upgrade,
            ..Default::default()
        },
        conf,
    );
    server.bootstrap();

    let Loaded {
        snapshot,
        memory,
        files,
    } = first;
    let metrics = Arc::new(Metrics::new(n.metrics.consumer_label));
    metrics.loaded(&snapshot);
    info!("Loaded config {}: {}.", snapshot.version, snapshot.counts);
    let store = Arc::new(ConfigStore::new(Live::new(snapshot, &metrics)));
    let reloader = Reloader::new(node.clone(), store.clone(), metrics.clone(), memory, &files);

    let limiter = Arc::new(Limiter::new());
    server.add_service(background_service(
        "limiter",
        LimiterService(limiter.clone()),
    ));
    let access_log = match &n.access_log {
        Some(conf) => {
            let mut conf = conf.clone();
            if conf.path != "stderr" {
                conf.path = node
                    .resolve(std::path::Path::new(&conf.path))
                    .display()
                    .to_string();
            }
            Some(Arc::new(AccessLog::start(&conf)?))
        }
        None => None,
    };
    let inflight = Arc::new(AtomicUsize::new(0));
    // Requests still arriving on kept-alive connections once shutdown began are answered (with
    // `Connection: close`) for this long before idle connections are dropped.
    let drain_window = Duration::from_secs(1).min(Duration::from_secs(drain));
    let pid_file = match &n.pid_file {
        Some(_) => PidFile::write(&server.configuration.pid_file)?,
        None => PidFile(None),
    };
    server.add_service(background_service(
        "drain",
        Drain {
            inflight: inflight.clone(),
            grace: Duration::from_secs(grace),
            bound: Duration::from_secs(drain),
            window: drain_window,
            pid_file: pid_file.clone(),
            access_log: access_log.clone(),
            limiter: limiter.clone(),
        },
    ));
    let gateway = Gateway {
        store: store.clone(),
        metrics: metrics.clone(),
        access_log,
        max_body: n.client_max_body_size,
        limiter: limiter.clone(),
        inflight: inflight.clone(),
        keepalive_timeout: n.keepalive_timeout,
    };
    let mut app = pingora_proxy::http_proxy(&server.configuration, gateway);
    // Plain listeners also speak HTTP/2 with prior knowledge (h2c); an idle HTTP/2 connection
    // is closed after keepalive_timeout, as an idle HTTP/1 one.
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    options.h2_idle_timeout = Some(Duration::from_secs(n.keepalive_timeout));
    app.server_options = Some(options);
    let mut proxy = Service::new(
        "tollgate proxy".to_owned(),
        Connections {
            inner: Arc::new(app),
            client_header_timeout: Duration::from_secs(n.client_header_timeout),
            drain_window,
        },
    );
    for l in &n.listen {
        match l {
            ListenConf::Plain(addr) => proxy.add_tcp(addr),
            ListenConf::Full(f) => match &f.tls {
                None => proxy.add_tcp(&f.addr),
                Some(tls) => {
                    let cert = node.resolve(&tls.cert).display().to_string();
                    let key = node.resolve(&tls.key).display().to_string();
                    let mut settings = TlsSettings::intermediate(&cert, &key).map_err(|e| {
                        format!("{}: listen `{}`: TLS: {e}", node.file.display(), f.addr)
                    })?;
                    settings.enable_h2();
                    proxy.add_tls_with_settings(&f.addr, None, settings);
                }
            },
        }
    }
    server.add_service(proxy);

    if let Some(addr) = &n.status_listen {
        let mut status = Service::new(
            "tollgate status".into(),
            StatusApp {
                store: store.clone(),
                metrics: metrics.clone(),
                listeners: probe_addresses(&node),
                ready: Default::default(),
            },
        );
        status.add_tcp(addr);
        server.add_service(status);
    }

    // SIGHUP: caught on a plain thread from the start, so it can never kill the process.
    let tx = reloader.trigger();
    let mut hup = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
        .map_err(|e| format!("cannot catch SIGHUP: {e}"))?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in hup.forever() {
                let _ = tx.send(Trigger::Signal);
            }
        })
        .map_err(|e| format!("cannot start the SIGHUP thread: {e}"))?;
    server.add_service(background_service("reloader", ReloaderService(reloader)));

    server.run(RunArgs {
        shutdown_signal: Box::new(Signals),
    });
    Ok(())
}

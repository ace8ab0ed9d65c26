//! `ConfigStore` (the current snapshot behind `ArcSwap`) and the `Reloader` background service:
//! file-watcher events and SIGHUP arrive on one channel; each reload loads on the blocking pool
//! and applies all or nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ahash::AHashSet;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{info, warn};
use notify::{RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::{self, Node};
use crate::metrics::{Metrics, RouteMetrics};
use crate::snapshot::Snapshot;

pub use crate::config::loader::release_free_memory;

/// Runs `f` (a load) on the loader thread ([`config::loader`]), not on the blocking pool: the
/// pool's threads also run password checks for requests, and a load of a million consumers
/// must not hold one for seconds. The same thread frees the configs reloads replace
/// ([`retire`]), so their memory goes back to the system.
pub(crate) async fn background<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    config::loader::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.map_err(|_| "the load thread failed".to_string())
}

/// Drops a replaced config off the request path: a million consumers take a noticeable while
/// to free, and the last request holding the old config would otherwise free it on a proxy
/// thread. The loader thread frees it once it holds the only reference (or lets go of it after
/// a minute), between loads, and hands the memory back.
fn retire(old: Arc<Live>) {
    config::loader::retire(old);
}

/// What a request reads: a snapshot and the metric handles of its routes, swapped together.
pub(crate) struct Live {
    pub snapshot: Snapshot,
    /// Metric handles per route, indexed by `RouteId`.
    pub route_metrics: Box<[Arc<RouteMetrics>]>,
}

impl Live {
    pub(crate) fn new(snapshot: Snapshot, metrics: &Metrics) -> Live {
        Live {
            route_metrics: metrics.for_routes(&snapshot),
            snapshot,
        }
    }
}

impl std::ops::Deref for Live {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// The [`Live`] config requests read. `load_full` once per request; `store` on a good reload.
pub(crate) struct ConfigStore {
    current: ArcSwap<Live>,
}

impl ConfigStore {
    pub(crate) fn new(live: Live) -> Self {
        ConfigStore {
            current: ArcSwap::from_pointee(live),
        }
    }
    pub(crate) fn load_full(&self) -> Arc<Live> {
        self.current.load_full()
    }
    pub(crate) fn store(&self, live: Live) {
        self.current.store(Arc::new(live));
    }
}

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Signal,
    FileChange,
}

/// Watches the resource files and reloads on change or SIGHUP.
pub(crate) struct Reloader {
    node: Node,
    store: Arc<ConfigStore>,
    metrics: Arc<Metrics>,
    tx: UnboundedSender<Trigger>,
    rx: Mutex<Option<UnboundedReceiver<Trigger>>>,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    memory: config::Memory,
    watched: AHashSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// `first` is the load the gateway started with.
    pub(crate) fn new(
        node: Node,
        store: Arc<ConfigStore>,
        metrics: Arc<Metrics>,
        memory: config::Memory,
        files: &[PathBuf],
    ) -> Arc<Reloader> {
        let (tx, rx) = unbounded_channel();
        let r = Arc::new(Reloader {
            node,
            store,
            metrics,
            tx,
            rx: Mutex::new(Some(rx)),
            state: Mutex::new(ReloadState {
                memory,
                watched: AHashSet::new(),
                watcher: None,
            }),
        });
        r.watch(files);
        r
    }

    /// A sender for SIGHUP handlers.
    pub(crate) fn trigger(&self) -> UnboundedSender<Trigger> {
        self.tx.clone()
    }

    /// Folders to watch: each file's folder and each glob's fixed base folder.
    fn folders(&self, files: &[PathBuf]) -> AHashSet<PathBuf> {
        let mut dirs: AHashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(PathBuf::from))
            .collect();
        for pattern in &self.node.conf.resources {
            let full = self.node.resolve(std::path::Path::new(pattern));
            let mut base = PathBuf::new();
            for c in full.components() {
                if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
                    break;
                }
                base.push(c);
            }
            let base = if base == full {
                full.parent().map(PathBuf::from).unwrap_or(base)
            } else {
                base
            };
            dirs.insert(base);
        }
        dirs
    }

    fn watch(&self, files: &[PathBuf]) {
        let dirs = self.folders(files);
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.watcher.is_none() {
            let tx = self.tx.clone();
            // Only the resource files (or files their globs match) trigger a reload: other files
            // in the same folders, such as a busy log, must not.
            let patterns: Vec<glob::Pattern> = self
                .node
                .conf
                .resources
                .iter()
                .filter_map(|r| {
                    glob::Pattern::new(
                        &self.node.resolve(std::path::Path::new(r)).to_string_lossy(),
                    )
                    .ok()
                })
                .collect();
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !ev.kind.is_access()
                    && ev
                        .paths
                        .iter()
                        .any(|p| patterns.iter().any(|pat| pat.matches_path(p)))
                {
                    let _ = tx.send(Trigger::FileChange);
                }
            }) {
                Ok(w) => st.watcher = Some(w),
                Err(e) => warn!("File watcher unavailable ({e}); reload with SIGHUP."),
            }
        }
        for d in dirs {
            if st.watched.contains(&d) {
                continue;
            }
            if let Some(w) = st.watcher.as_mut() {
                match w.watch(&d, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        st.watched.insert(d);
                    }
                    Err(e) => warn!("Cannot watch {}: {e}", d.display()),
                }
            }
        }
    }

    /// Loads the files again and swaps the snapshot if they changed and are valid.
    pub(crate) async fn reload(&self, trigger: Trigger) {
        let node = self.node.clone();
        let memory = self
            .state
            .lock()
            .map(|s| s.memory.clone())
            .unwrap_or_default();
        // The config being replaced: consumers that read the same are shared with it.
        let old = self.store.load_full();
        let report = match background(move || {
            let r = config::load_logged_reusing(&node, &memory, &old.snapshot);
            drop(old);
            release_free_memory();
            r
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!("Reload refused, the previous config keeps serving: the load failed ({e})");
                self.metrics.reload_failure();
                return;
            }
        };
        match report.result {
            Ok(loaded) => {
                let current = self.store.load_full();
                if current.version == loaded.snapshot.version && trigger == Trigger::FileChange {
                    return;
                }
                for w in &report.warnings {
                    warn!("{w}");
                }
                let s = &loaded.snapshot;
                info!("Reloaded config {}: {}.", s.version, s.counts);
                if report.shared > 0 {
                    info!(
                        "{} unchanged consumers shared with the previous config.",
                        report.shared
                    );
                }
                self.metrics.reload_success(s);
                if let Ok(mut st) = self.state.lock() {
                    st.memory = loaded.memory.clone();
                }
                self.watch(&loaded.files);
                let dropped = self.metrics.config_replaced(
                    &loaded.snapshot,
                    &current.snapshot,
                    &current.route_metrics,
                );
                if dropped > 0 {
                    info!("Dropped {dropped} request series of consumers no longer configured.");
                }
                // The prune's name index (10 MB at a million consumers) was freed on this
                // thread, which now sleeps until the next reload: give that memory back now.
                release_free_memory();
                self.store.store(Live::new(loaded.snapshot, &self.metrics));
                retire(current);
            }
            Err(errors) => {
                warn!(
                    "Reload refused, the previous config keeps serving ({} error{}):",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                for e in &errors {
                    warn!("  {e}");
                }
                self.metrics.reload_failure();
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        loop {
            let trigger = tokio::select! {
                _ = shutdown.changed() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
            };
            let Some(trigger) = debounce(trigger, &mut rx).await else {
                return;
            };
            self.reload(trigger).await;
        }
    }
}

/// Waits out a burst of file events (an editor's save is several): until none came for 200 ms,
/// but never more than 1 s in all. SIGHUP reloads at once, and ends a wait it interrupts.
/// None when the channel closed.
async fn debounce(first: Trigger, rx: &mut UnboundedReceiver<Trigger>) -> Option<Trigger> {
    if first == Trigger::Signal {
        return Some(first);
    }
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(Trigger::Signal)) => return Some(Trigger::Signal),
            Ok(Some(Trigger::FileChange)) => {}
            Ok(None) => return None,
            Err(_) => break,
        }
    }
    Some(first)
}

/// Background service wrapper, so the `Arc<Reloader>` can also be used by the signal thread.
pub(crate) struct ReloaderService(pub Arc<Reloader>);

#[async_trait]
impl BackgroundService for ReloaderService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.start(shutdown).await
    }
}

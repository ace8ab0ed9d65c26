//! Prometheus metrics: our own `Registry`, every family defined here. Labels come only from the
//! config (route and service ids, consumer usernames, plugin names) and from fixed sets (status
//! codes, kinds), never from raw request data, so cardinality is bounded by the config.
//!
//! Per-route handles are resolved when a snapshot is loaded ([`Metrics::for_routes`]). The series
//! of `tollgate_http_requests_total` (route, service, consumer, code) live in [`RouteSeries`], one
//! per (route, service) that outlives reloads: a sharded map from consumer name to its codes. A
//! request whose series exists takes one shard's read lock and adds atomically; the first request
//! of a (consumer, code) takes one shard's write lock and inserts: O(1), whatever the number of
//! series. A reload keeps every series of a consumer that stayed ([`Metrics::config_replaced`]) and
//! drops those of consumers that left. That family is rendered by [`Metrics::render`] itself, in
//! the exact text the `prometheus` crate gives a counter vector, without building a protobuf
//! message per series.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::time::UNIX_EPOCH;

use ahash::{AHashMap, AHashSet};
use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::consumer::NameIndex;
use crate::cow_map::CowMap;
use crate::snapshot::{ConsumerId, Snapshot};

const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

const REQUESTS_NAME: &str = "tollgate_http_requests_total";
const REQUESTS_HELP: &str = "HTTP requests by route, service, consumer and status code.";

/// Shards of each route's request series: a write (a new series, a reload's prune) blocks only
/// the requests that hash to the same shard.
const SHARDS: usize = 32;

/// Access-log lines dropped because the writer's queue was full. Process-wide, because the
/// access log is started apart from [`Metrics`]; registered by [`Metrics::new`].
#[expect(clippy::expect_used, reason = "a constant metric definition")]
pub(crate) static ACCESS_LOG_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tollgate_access_log_dropped_total",
        "Access-log lines dropped because the writer fell behind (its queue was full).",
    )
    .expect("valid metric")
});

/// Every metric family tollgate exports.
pub(crate) struct Metrics {
    registry: Registry,
    consumer_label: bool,
    duration: HistogramVec,
    bandwidth: IntCounterVec,
    auth_failures: IntCounterVec,
    /// Requests a registry plugin answered itself (rejections, CORS preflights).
    plugin_rejections: IntCounterVec,
    restriction_rejections: IntCounterVec,
    limit_rejections: IntCounterVec,
    limit_degraded: IntCounter,
    upstream_errors: IntCounterVec,
    reloads: IntCounterVec,
    last_reload: IntGauge,
    resources: IntGaugeVec,
    /// Every (route, service) ever loaded, with its series; read by `render`, written on load.
    series: AllSeries,
    /// The consumers the last reload removed: a request still running on the snapshot before
    /// it (its handles are `retired`) does not bring their series back.
    departed: ArcSwap<AHashSet<Arc<str>>>,
    hasher: ahash::RandomState,
    /// The consumer key of requests without a consumer (or with `consumer_label: false`).
    nobody: Arc<str>,
    /// Handles for requests that matched no route (`route=""`).
    unmatched: Arc<RouteMetrics>,
}

/// A counter family's counters by one key from a small fixed set (plugin names, error kinds),
/// each resolved once.
type LazyCounters<K> = CowMap<K, IntCounter>;

/// The count of each status code a consumer got on one route (usually one or two codes).
type Codes = Vec<(u16, AtomicU64)>;
type Shard = RwLock<HashMap<Arc<str>, Codes, ahash::RandomState>>;
/// Every (route, service) ever loaded, with its series.
type AllSeries = Mutex<AHashMap<(Arc<str>, Arc<str>), Arc<RouteSeries>>>;

/// What one (route, service) keeps across reloads: its request series by consumer and code,
/// and its auth-failure and upstream-error counters.
pub(crate) struct RouteSeries {
    route: Arc<str>,
    service: Arc<str>,
    requests: Box<[Shard]>,
    auth_failures: LazyCounters<&'static str>,
    upstream_errors: LazyCounters<&'static str>,
}

impl RouteSeries {
    fn new(route: Arc<str>, service: Arc<str>, hasher: &ahash::RandomState) -> RouteSeries {
        RouteSeries {
            route,
            service,
            requests: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            auth_failures: LazyCounters::new(),
            upstream_errors: LazyCounters::new(),
        }
    }

    /// Number of (consumer, code) series.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.requests
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum()
    }
}

/// The handles of one route in one snapshot.
pub(crate) struct RouteMetrics {
    pub request: Histogram,
    pub upstream: Histogram,
    pub gateway: Histogram,
    pub ingress: IntCounter,
    pub egress: IntCounter,
    pub restriction_rejections: IntCounter,
    pub limit_rejections: IntCounter,
    series: Arc<RouteSeries>,
    /// Set when a reload replaced the snapshot these handles belong to.
    retired: AtomicBool,
}

fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    let _ = r.register(Box::new(c.clone()));
    c
}

#[expect(
    clippy::expect_used,
    reason = "metric names and labels are constants, checked by the unit test"
)]
fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

/// A label value as the text format writes it.
fn escape_label(v: &str, out: &mut Vec<u8>) {
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants, checked by the unit test"
    )]
    pub(crate) fn new(consumer_label: bool) -> Metrics {
        let r = Registry::new();
        let duration = reg(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "tollgate_http_request_duration_seconds",
                    "Request duration: request (total), upstream, gateway (total minus upstream).",
                )
                .buckets(BUCKETS.to_vec()),
                &["route", "type"],
            )
            .expect("valid metric"),
        );
        let bandwidth = counter_vec(
            &r,
            "tollgate_bandwidth_bytes_total",
            "Bytes received from clients (ingress) and sent to them (egress).",
            &["route", "direction"],
        );
        let auth_failures = counter_vec(
            &r,
            "tollgate_auth_failures_total",
            "Requests refused by an auth plugin.",
            &["route", "plugin"],
        );
        let plugin_rejections = counter_vec(
            &r,
            "tollgate_plugin_rejections_total",
            "Requests answered by a plugin without reaching the upstream (ip-restriction, limit-req, cors preflight, ...).",
            &["route", "plugin"],
        );
        let restriction_rejections = counter_vec(
            &r,
            "tollgate_consumer_restriction_rejections_total",
            "Requests refused by consumer-restriction.",
            &["route"],
        );
        let limit_rejections = counter_vec(
            &r,
            "tollgate_limit_count_rejections_total",
            "Requests refused by limit-count.",
            &["route"],
        );
        let limit_degraded = reg(
            &r,
            IntCounter::new(
                "tollgate_limit_count_degraded_total",
                "Requests let through by allow_degradation while the counter backend failed.",
            )
            .expect("valid metric"),
        );
        let upstream_errors = counter_vec(
            &r,
            "tollgate_upstream_errors_total",
            "Upstream failures by kind (connect, timeout, reset, other).",
            &["route", "kind"],
        );
        let reloads = counter_vec(
            &r,
            "tollgate_config_reloads_total",
            "Config reloads by result.",
            &["result"],
        );
        let last_reload = reg(
            &r,
            IntGauge::new(
                "tollgate_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config load.",
            )
            .expect("valid metric"),
        );
        let resources = reg(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "tollgate_config_resources",
                    "Resources in the loaded config.",
                ),
                &["kind"],
            )
            .expect("valid metric"),
        );
        reg(&r, ACCESS_LOG_DROPPED.clone());
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let hasher = ahash::RandomState::new();
        let placeholder = Arc::new(RouteMetrics::placeholder(&hasher));
        let mut m = Metrics {
            registry: r,
            consumer_label,
            duration,
            bandwidth,
            auth_failures,
            plugin_rejections,
            restriction_rejections,
            limit_rejections,
            limit_degraded,
            upstream_errors,
            reloads,
            last_reload,
            resources,
            series: Mutex::new(AHashMap::new()),
            departed: ArcSwap::from_pointee(AHashSet::new()),
            hasher,
            nobody: "".into(),
            unmatched: placeholder,
        };
        m.unmatched = Arc::new(m.route_metrics("", ""));
        m
    }

    fn route_metrics(&self, route: &str, service: &str) -> RouteMetrics {
        let d = |t: &str| self.duration.with_label_values(&[route, t]);
        let series = {
            let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
            let key: (Arc<str>, Arc<str>) = (route.into(), service.into());
            all.entry(key.clone())
                .or_insert_with(|| Arc::new(RouteSeries::new(key.0, key.1, &self.hasher)))
                .clone()
        };
        RouteMetrics {
            request: d("request"),
            upstream: d("upstream"),
            gateway: d("gateway"),
            ingress: self.bandwidth.with_label_values(&[route, "ingress"]),
            egress: self.bandwidth.with_label_values(&[route, "egress"]),
            restriction_rejections: self.restriction_rejections.with_label_values(&[route]),
            limit_rejections: self.limit_rejections.with_label_values(&[route]),
            series,
            retired: AtomicBool::new(false),
        }
    }

    /// Every route's series, copied out of the lock.
    fn all_series(&self) -> Vec<Arc<RouteSeries>> {
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Handles for every route of a snapshot, indexed by `RouteId`.
    pub(crate) fn for_routes(&self, s: &Snapshot) -> Box<[Arc<RouteMetrics>]> {
        s.routes
            .iter()
            .map(|r| Arc::new(self.route_metrics(&r.id, r.service.as_deref().unwrap_or(""))))
            .collect()
    }

    /// Handles for requests that matched no route.
    pub(crate) fn unmatched(&self) -> &Arc<RouteMetrics> {
        &self.unmatched
    }

    /// Counts one finished request. A series that exists: one shard read lock and an atomic
    /// add. A new one: one shard write lock and an insert.
    pub(crate) fn request(
        &self,
        rm: &RouteMetrics,
        consumer: Option<(ConsumerId, &str)>,
        code: u16,
    ) {
        let name = match consumer {
            Some((_, name)) if self.consumer_label => name,
            _ => "",
        };
        let shard = &rm.series.requests[self.hasher.hash_one(name) as usize % SHARDS];
        {
            let map = shard.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(codes) = map.get(name)
                && let Some((_, n)) = codes.iter().find(|(c, _)| *c == code)
            {
                n.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(codes) = map.get_mut(name) {
            if let Some((_, n)) = codes.iter().find(|(c, _)| *c == code) {
                n.fetch_add(1, Ordering::Relaxed);
            } else {
                codes.push((code, AtomicU64::new(1)));
            }
            return;
        }
        // A consumer's first request on this route. Checked under the shard lock, so a reload
        // pruning now either sees this series or this request sees the departed set.
        let key = if name.is_empty() {
            self.nobody.clone()
        } else if rm.retired.load(Ordering::SeqCst) && self.departed.load().contains(name) {
            return; // the consumer left the config while this request ran
        } else {
            Arc::from(name)
        };
        map.insert(key, vec![(code, AtomicU64::new(1))]);
    }

    pub(crate) fn auth_failure(&self, rm: &RouteMetrics, plugin: &'static str) {
        let s = &rm.series;
        s.auth_failures
            .get_or_insert_with(&plugin, || {
                self.auth_failures.with_label_values(&[&s.route, plugin])
            })
            .inc();
    }

    /// A registry plugin answered a request (a rare path: no per-route handle cache).
    /// consumer-restriction and limit-count have their own families.
    pub(crate) fn plugin_rejection(&self, rm: &RouteMetrics, plugin: &'static str) {
        match plugin {
            "consumer-restriction" => return rm.restriction_rejections.inc(),
            "limit-count" => return rm.limit_rejections.inc(),
            _ => {}
        }
        self.plugin_rejections
            .with_label_values(&[&rm.series.route, plugin])
            .inc();
    }

    pub(crate) fn upstream_error(&self, rm: &RouteMetrics, kind: &'static str) {
        let s = &rm.series;
        s.upstream_errors
            .get_or_insert_with(&kind, || {
                self.upstream_errors.with_label_values(&[&s.route, kind])
            })
            .inc();
    }

    /// Called with the config about to be stored and the one it replaces: drops the series of every consumer `new` no longer has and keeps (with their values) the
    /// others. O(consumers + series), on the reloader; each shard is write-locked only while it
    /// is pruned. Returns the number of series dropped.
    pub(crate) fn config_replaced(
        &self,
        new: &Snapshot,
        old: &Snapshot,
        old_routes: &[Arc<RouteMetrics>],
    ) -> usize {
        // 5 bytes a consumer (a set of names would take 17).
        let list = &new.consumers.list;
        let names = NameIndex::of(list);
        let stays = |name: &str| names.get(list, name).is_some();
        let departed: AHashSet<Arc<str>> = old
            .consumers
            .list
            .iter()
            .filter(|c| !stays(&c.username))
            .map(|c| c.username.clone())
            .collect();
        self.departed.store(Arc::new(departed));
        for rm in old_routes {
            rm.retired.store(true, Ordering::SeqCst);
        }
        let mut dropped = 0;
        for rs in self.all_series() {
            for shard in &rs.requests {
                let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
                map.retain(|name, codes| {
                    let keep = name.is_empty() || stays(name);
                    if !keep {
                        dropped += codes.len();
                    }
                    keep
                });
            }
        }
        dropped
    }

    /// Number of `tollgate_http_requests_total` series.
    #[cfg(test)]
    pub(crate) fn request_series(&self) -> usize {
        let all = self.all_series();
        all.iter().map(|rs| rs.len()).sum()
    }

    /// Records the config a gateway serves (at start and after each good reload).
    pub(crate) fn loaded(&self, s: &Snapshot) {
        let secs = s
            .loaded_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.last_reload.set(secs);
        let c = s.counts;
        for (k, v) in [
            ("routes", c.routes),
            ("services", c.services),
            ("upstreams", c.upstreams),
            ("consumers", c.consumers),
            ("credentials", c.credentials),
            ("consumer_groups", c.consumer_groups),
        ] {
            self.resources.with_label_values(&[k]).set(v as i64);
        }
    }

    pub(crate) fn reload_success(&self, s: &Snapshot) {
        self.reloads.with_label_values(&["success"]).inc();
        self.loaded(s);
    }

    pub(crate) fn reload_failure(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
    }

    /// Brings `tollgate_limit_count_degraded_total` up to limit-count's own count (the plugin
    /// counts in a process-wide atomic: it has no handle on the metrics).
    fn sync_degraded(&self) {
        static SYNC: Mutex<()> = Mutex::new(());
        let _guard = SYNC.lock().unwrap_or_else(PoisonError::into_inner);
        let total = crate::plugins::limit_count::degraded_total();
        let shown = self.limit_degraded.get();
        if total > shown {
            self.limit_degraded.inc_by(total - shown);
        }
    }

    /// The text exposition of every family, sorted by name as the registry sorts them.
    pub(crate) fn render(&self) -> Vec<u8> {
        self.sync_degraded();
        // The request counter is read before the other families: a request is counted last
        // (after its durations and bytes), so whatever this scrape counts, it also shows.
        let mut requests = Vec::new();
        self.render_requests(&mut requests);
        let mut out = Vec::new();
        let mut requests_done = false;
        for mf in self.registry.gather() {
            if !requests_done && mf.name() > REQUESTS_NAME {
                out.extend_from_slice(&requests);
                requests_done = true;
            }
            let _ = TextEncoder::new().encode(std::slice::from_ref(&mf), &mut out);
        }
        if !requests_done {
            out.extend_from_slice(&requests);
        }
        out
    }

    /// `tollgate_http_requests_total` as `TextEncoder` writes an `IntCounterVec`: labels in name
    /// order, series sorted by label values, nothing when there is no series.
    fn render_requests(&self, out: &mut Vec<u8>) {
        let all = self.all_series();
        let mut rows: Vec<(u16, Arc<str>, u32, u64)> = Vec::new();
        for (i, rs) in all.iter().enumerate() {
            for shard in &rs.requests {
                let map = shard.read().unwrap_or_else(PoisonError::into_inner);
                for (name, codes) in map.iter() {
                    for (code, n) in codes {
                        rows.push((*code, name.clone(), i as u32, n.load(Ordering::Relaxed)));
                    }
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        // Label values compared as strings, in label-name order: code, consumer, route,
        // service. Codes are 0 or three digits, so numeric order is string order.
        rows.sort_unstable_by(|a, b| {
            let (ra, rb) = (&all[a.2 as usize], &all[b.2 as usize]);
            a.0.cmp(&b.0)
                .then_with(|| a.1.cmp(&b.1))
                .then_with(|| ra.route.cmp(&rb.route))
                .then_with(|| ra.service.cmp(&rb.service))
        });
        out.reserve(rows.len() * 96);
        let _ = writeln!(out, "# HELP {REQUESTS_NAME} {REQUESTS_HELP}");
        let _ = writeln!(out, "# TYPE {REQUESTS_NAME} counter");
        for (code, consumer, i, n) in rows {
            let rs = &all[i as usize];
            let _ = write!(out, "{REQUESTS_NAME}{{code=\"{code}\",consumer=\"");
            escape_label(&consumer, out);
            out.extend_from_slice(b"\",route=\"");
            escape_label(&rs.route, out);
            out.extend_from_slice(b"\",service=\"");
            escape_label(&rs.service, out);
            let _ = writeln!(out, "\"}} {}", n as f64);
        }
    }
}

impl RouteMetrics {
    #[expect(clippy::expect_used, reason = "constant metric definitions")]
    fn placeholder(hasher: &ahash::RandomState) -> RouteMetrics {
        let h = || {
            Histogram::with_opts(HistogramOpts::new("placeholder", "placeholder"))
                .expect("valid metric")
        };
        let c = || IntCounter::new("placeholder", "placeholder").expect("valid metric");
        RouteMetrics {
            request: h(),
            upstream: h(),
            gateway: h(),
            ingress: c(),
            egress: c(),
            restriction_rejections: c(),
            limit_rejections: c(),
            series: Arc::new(RouteSeries::new("".into(), "".into(), hasher)),
            retired: AtomicBool::new(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_and_render() {
        let m = Metrics::new(true);
        let rm = m.route_metrics("r1", "s1");
        m.request(&rm, Some((ConsumerId(0), "bob")), 200);
        m.request(&rm, Some((ConsumerId(0), "bob")), 200);
        m.auth_failure(&rm, "key-auth");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tollgate_http_requests_total{code=\"200\",consumer=\"bob\",route=\"r1\",service=\"s1\"} 2"), "{text}");
        assert!(text.contains("tollgate_auth_failures_total{plugin=\"key-auth\",route=\"r1\"} 1"));
        assert!(
            text.contains("\ntollgate_access_log_dropped_total "),
            "{text}"
        );
    }

    /// The requests family renders byte for byte as the `IntCounterVec` it replaced, in the
    /// same place among the families.
    #[test]
    fn requests_render_as_a_counter_vec() {
        let m = Metrics::new(true);
        let r = Registry::new();
        let vec = counter_vec(
            &r,
            REQUESTS_NAME,
            REQUESTS_HELP,
            &["route", "service", "consumer", "code"],
        );
        let routes = [("r2", "s"), ("r1", ""), ("", ""), ("r\"q\\\n", "x")];
        let people = ["zed", "amy", "b\"o\\b", "", "Amy"];
        let codes = [404, 200, 0, 502, 200];
        let mut i = 0;
        for (route, service) in routes {
            let rm = m.route_metrics(route, service);
            for (j, who) in people.iter().enumerate() {
                for code in codes.iter().take(j + 1) {
                    for _ in 0..=(i % 3) {
                        let c = (!who.is_empty()).then_some((ConsumerId(0), *who));
                        m.request(&rm, c, *code);
                        vec.with_label_values(&[route, service, who, &code.to_string()])
                            .inc();
                    }
                    i += 1;
                }
            }
        }
        let mut want = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut want).unwrap();
        let want = String::from_utf8(want).unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        let start = text.find("# HELP tollgate_http_requests_total").unwrap();
        assert_eq!(&text[start..start + want.len()], want);
        let before = &text[..start];
        let prev = before.rfind("# HELP ").unwrap();
        assert!(
            &before[prev..] < "# HELP tollgate_http_requests_total",
            "{text}"
        );
        assert!(
            text[start + want.len()..].starts_with("# HELP tollgate_limit_count"),
            "{text}"
        );
        assert_eq!(m.request_series(), routes.len() * 14);
    }

    #[test]
    fn consumer_label_off_keys_everyone_as_empty() {
        let m = Metrics::new(false);
        let rm = m.route_metrics("r", "");
        m.request(&rm, Some((ConsumerId(0), "bob")), 200);
        m.request(&rm, None, 200);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tollgate_http_requests_total{code=\"200\",consumer=\"\",route=\"r\",service=\"\"} 2"), "{text}");
        assert!(!text.contains("bob"));
    }

    /// Series outlive the per-snapshot handles: a reload's new handles count on.
    #[test]
    fn series_outlive_route_handles() {
        let m = Metrics::new(true);
        let rm = m.route_metrics("r", "s");
        m.request(&rm, Some((ConsumerId(3), "bob")), 200);
        drop(rm);
        let rm = m.route_metrics("r", "s");
        m.request(&rm, Some((ConsumerId(7), "bob")), 200);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("consumer=\"bob\",route=\"r\",service=\"s\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn no_request_no_family() {
        let m = Metrics::new(true);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains(REQUESTS_NAME), "{text}");
    }
}

//! Prometheus metrics: our own `Registry`, every family defined here. Labels come only from the
//! config (route and service ids, consumer usernames, plugin names) and from fixed sets (status
//! codes, kinds), never from raw request data, so cardinality is bounded by the config.
//!
//! Per-route handles are resolved when a snapshot is loaded ([`Metrics::for_routes`]); counters
//! labelled by consumer and status are created on first use and then read lock-free.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::UNIX_EPOCH;

use ahash::AHashMap;
use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::snapshot::{ConsumerId, Snapshot};

const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Access-log lines dropped because the writer's queue was full. Process-wide, because the
/// access log is started apart from [`Metrics`]; registered by [`Metrics::new`].
#[expect(clippy::expect_used, reason = "a constant metric definition")]
pub static ACCESS_LOG_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tollgate_access_log_dropped_total",
        "Access-log lines dropped because the writer fell behind (its queue was full).",
    )
    .expect("valid metric")
});

/// Every metric family tollgate exports.
pub struct Metrics {
    registry: Registry,
    consumer_label: bool,
    requests: IntCounterVec,
    duration: HistogramVec,
    bandwidth: IntCounterVec,
    auth_failures: IntCounterVec,
    /// Requests a registry plugin answered itself (rejections, CORS preflights).
    plugin_rejections: IntCounterVec,
    restriction_rejections: IntCounterVec,
    limit_rejections: IntCounterVec,
    pub limit_degraded: IntCounter,
    upstream_errors: IntCounterVec,
    reloads: IntCounterVec,
    last_reload: IntGauge,
    resources: IntGaugeVec,
    /// Handles for requests that matched no route (`route=""`).
    unmatched: Arc<RouteMetrics>,
}

/// A counter family with label values fixed but one key, resolved once per key.
pub struct LazyCounters<K> {
    map: ArcSwap<AHashMap<K, IntCounter>>,
    write: Mutex<()>,
}

impl<K: std::hash::Hash + Eq + Clone> LazyCounters<K> {
    fn new() -> Self {
        LazyCounters {
            map: ArcSwap::from_pointee(AHashMap::new()),
            write: Mutex::new(()),
        }
    }
    /// The counter for `key`, made with `make` the first time.
    pub fn get(&self, key: &K, make: impl FnOnce() -> IntCounter) -> IntCounter {
        if let Some(c) = self.map.load().get(key) {
            return c.clone();
        }
        let _guard = self.write.lock();
        let current = self.map.load();
        if let Some(c) = current.get(key) {
            return c.clone();
        }
        let c = make();
        let mut next = (**current).clone();
        next.insert(key.clone(), c.clone());
        self.map.store(Arc::new(next));
        c
    }
}

/// The handles of one route.
pub struct RouteMetrics {
    route: Arc<str>,
    service: Arc<str>,
    pub request: Histogram,
    pub upstream: Histogram,
    pub gateway: Histogram,
    pub ingress: IntCounter,
    pub egress: IntCounter,
    requests: LazyCounters<(Option<ConsumerId>, u16)>,
    auth_failures: LazyCounters<&'static str>,
    pub restriction_rejections: IntCounter,
    pub limit_rejections: IntCounter,
    upstream_errors: LazyCounters<&'static str>,
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

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants, checked by the unit test"
    )]
    pub fn new(consumer_label: bool) -> Metrics {
        let r = Registry::new();
        let requests = counter_vec(
            &r,
            "tollgate_http_requests_total",
            "HTTP requests by route, service, consumer and status code.",
            &["route", "service", "consumer", "code"],
        );
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
        let mut m = Metrics {
            registry: r,
            consumer_label,
            requests,
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
            unmatched: Arc::new(RouteMetrics::placeholder()),
        };
        m.unmatched = Arc::new(m.route_metrics("", ""));
        m
    }

    fn route_metrics(&self, route: &str, service: &str) -> RouteMetrics {
        let d = |t: &str| self.duration.with_label_values(&[route, t]);
        RouteMetrics {
            route: route.into(),
            service: service.into(),
            request: d("request"),
            upstream: d("upstream"),
            gateway: d("gateway"),
            ingress: self.bandwidth.with_label_values(&[route, "ingress"]),
            egress: self.bandwidth.with_label_values(&[route, "egress"]),
            requests: LazyCounters::new(),
            auth_failures: LazyCounters::new(),
            restriction_rejections: self.restriction_rejections.with_label_values(&[route]),
            limit_rejections: self.limit_rejections.with_label_values(&[route]),
            upstream_errors: LazyCounters::new(),
        }
    }

    /// Handles for every route of a snapshot, indexed by `RouteId`.
    pub fn for_routes(&self, s: &Snapshot) -> Box<[Arc<RouteMetrics>]> {
        s.routes
            .iter()
            .map(|r| Arc::new(self.route_metrics(&r.id, r.service.as_deref().unwrap_or(""))))
            .collect()
    }

    /// Handles for requests that matched no route.
    pub fn unmatched(&self) -> &Arc<RouteMetrics> {
        &self.unmatched
    }

    /// Counts one finished request.
    pub fn request(&self, rm: &RouteMetrics, consumer: Option<(ConsumerId, &str)>, code: u16) {
        let consumer = consumer.filter(|_| self.consumer_label);
        rm.requests
            .get(&(consumer.map(|c| c.0), code), || {
                let code = code.to_string();
                self.requests.with_label_values(&[
                    &*rm.route,
                    &*rm.service,
                    consumer.map_or("", |c| c.1),
                    &code,
                ])
            })
            .inc();
    }

    pub fn auth_failure(&self, rm: &RouteMetrics, plugin: &'static str) {
        rm.auth_failures
            .get(&plugin, || {
                self.auth_failures.with_label_values(&[&rm.route, plugin])
            })
            .inc();
    }

    /// A registry plugin answered a request (a rare path: no per-route handle cache).
    pub fn plugin_rejection(&self, rm: &RouteMetrics, plugin: &'static str) {
        self.plugin_rejections
            .with_label_values(&[&rm.route, plugin])
            .inc();
    }

    pub fn upstream_error(&self, rm: &RouteMetrics, kind: &'static str) {
        rm.upstream_errors
            .get(&kind, || {
                self.upstream_errors.with_label_values(&[&rm.route, kind])
            })
            .inc();
    }

    /// Records the config a gateway serves (at start and after each good reload).
    pub fn loaded(&self, s: &Snapshot) {
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

    pub fn reload_success(&self, s: &Snapshot) {
        self.reloads.with_label_values(&["success"]).inc();
        self.loaded(s);
    }

    pub fn reload_failure(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
    }

    /// The text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl RouteMetrics {
    #[expect(clippy::expect_used, reason = "constant metric definitions")]
    fn placeholder() -> RouteMetrics {
        let h = || {
            Histogram::with_opts(HistogramOpts::new("placeholder", "placeholder"))
                .expect("valid metric")
        };
        let c = || IntCounter::new("placeholder", "placeholder").expect("valid metric");
        RouteMetrics {
            route: "".into(),
            service: "".into(),
            request: h(),
            upstream: h(),
            gateway: h(),
            ingress: c(),
            egress: c(),
            requests: LazyCounters::new(),
            auth_failures: LazyCounters::new(),
            restriction_rejections: c(),
            limit_rejections: c(),
            upstream_errors: LazyCounters::new(),
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
}

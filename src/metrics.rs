//! Prometheus metrics: our own `Registry`, every family defined here, labels taken only from
//! the config (route ids, consumer usernames), never from raw request data.

use std::time::UNIX_EPOCH;

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::snapshot::Snapshot;

/// Every metric family tollgate exports.
pub struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    last_reload: IntGauge,
    resources: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reloads = IntCounterVec::new(
            Opts::new("tollgate_config_reloads_total", "Config reloads by result."),
            &["result"],
        )
        .expect("valid metric");
        let last_reload = IntGauge::new(
            "tollgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("valid metric");
        let resources = IntGaugeVec::new(
            Opts::new(
                "tollgate_config_resources",
                "Resources in the loaded config.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for c in [
            Box::new(reloads.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(last_reload.clone()),
            Box::new(resources.clone()),
        ] {
            let _ = registry.register(c);
        }
        #[cfg(target_os = "linux")]
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            registry,
            reloads,
            last_reload,
            resources,
        }
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! limit-conn (APISIX priority 1003; route side, consumer and consumer group): concurrent
//! requests per key, as lua-resty-limit-traffic's `limit.conn` counts them. A request takes a
//! slot in `request` and gives it back when it is over (`done`, after the response is logged);
//! the `n`-th concurrent request of a key is admitted at once while `n <= conn`, admitted after
//! `unit_delay * floor((n - 1) / conn)` seconds (an async sleep) while `n <= conn + burst`, and
//! refused beyond with `rejected_code` (default 503) and `{"error_msg": rejected_msg}`.
//!
//! `unit_delay` starts at `default_conn_delay`; unless `only_use_default_delay` is set, each
//! request leaving moves it halfway towards that request's latency (time from admission to the
//! end), as `limit.conn`'s `leaving` does when its object is kept per conf (APISIX before 3.16).
//!
//! **State.** Counts live in a table per (owner, conf), found again by that pair when a config is
//! compiled (see limit-req's `Tables`): a reload that leaves the conf unchanged keeps the counts
//! and the slots of requests in flight; a changed conf starts from zero, while requests admitted
//! under the old one release into the old table. The slot is held by a guard in the request's
//! plugin state, so it is released even when the request is dropped before `done` (a client
//! gone during the delay). `conn`/`burst` as variables, `rules`, and Redis policies are refused
//! by name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::limit_count::{KeySpec, KeyType, Policy};
use super::limit_req::{KeyHasher, Tables, check_local, compile_key, compile_rejection};
use super::shape::{CompileCx, CompileError, Instance, Plugin, RequestView, State, Step};
use crate::limiter::CounterKey;
use crate::limiter::local::{Expiring, Sharded};
use crate::reject::Reject;

/// The APISIX conf. The Redis fields are read only to be refused by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Required, an integer > 0 (APISIX also takes a variable expression: refused).
    pub conn: Option<serde_yaml::Value>,
    /// Required, an integer >= 0 (or a variable expression: refused).
    pub burst: Option<serde_yaml::Value>,
    /// Required, seconds > 0.
    pub default_conn_delay: Option<f64>,
    /// Default false.
    pub only_use_default_delay: Option<bool>,
    /// Required.
    pub key: Option<String>,
    /// `var` (default) or `var_combination`.
    pub key_type: Option<KeyType>,
    /// Only `local`.
    pub policy: Option<Policy>,
    /// Default 503, 200..=599.
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
    /// Default false. The local policy cannot fail, so it changes nothing.
    pub allow_degradation: Option<bool>,
    /// APISIX 3.16 multi-rule form: refused.
    pub rules: Option<IgnoredAny>,
    pub redis_host: Option<IgnoredAny>,
    pub redis_port: Option<IgnoredAny>,
    pub redis_username: Option<IgnoredAny>,
    pub redis_password: Option<IgnoredAny>,
    pub redis_database: Option<IgnoredAny>,
    pub redis_timeout: Option<IgnoredAny>,
    pub redis_ssl: Option<IgnoredAny>,
    pub redis_ssl_verify: Option<IgnoredAny>,
    pub redis_keepalive_timeout: Option<IgnoredAny>,
    pub redis_keepalive_pool: Option<IgnoredAny>,
    pub redis_cluster_nodes: Option<IgnoredAny>,
    pub redis_cluster_name: Option<IgnoredAny>,
    pub redis_cluster_ssl: Option<IgnoredAny>,
    pub redis_cluster_ssl_verify: Option<IgnoredAny>,
    pub key_ttl: Option<IgnoredAny>,
}

/// Requests in flight for one key.
#[derive(Debug, Clone, Copy)]
struct Count(u64);

impl Expiring for Count {
    fn expired(&self, _now_ms: u64) -> bool {
        self.0 == 0
    }
}

/// The counts of one (owner, conf), and its current unit delay.
pub(crate) struct Counts {
    map: Sharded<Count>,
    keys: KeyHasher,
    /// Seconds, as `f64` bits.
    unit_delay: AtomicU64,
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counts")
    }
}

static TABLES: Tables<Counts> = Tables::new();

impl Counts {
    fn new(default_delay: f64) -> Counts {
        Counts {
            map: Sharded::new(),
            keys: KeyHasher::new(),
            unit_delay: AtomicU64::new(default_delay.to_bits()),
        }
    }

    fn unit_delay(&self) -> f64 {
        f64::from_bits(self.unit_delay.load(Ordering::Relaxed))
    }

    /// `incoming(key, commit = true)`: the delay before the request may go on, or `None` when
    /// refused (nothing taken).
    fn incoming(&self, key: CounterKey, conn: u64, burst: u64) -> Option<Duration> {
        let mut shard = self.map.lock(key);
        let c = shard.map.entry(key).or_insert(Count(0));
        if c.0 + 1 > conn + burst {
            if c.0 == 0 {
                shard.map.remove(&key);
            }
            return None;
        }
        c.0 += 1;
        let n = c.0;
        drop(shard);
        if n > conn {
            let steps = ((n - 1) / conn) as f64;
            Some(Duration::from_secs_f64(
                (self.unit_delay() * steps).max(0.0),
            ))
        } else {
            Some(Duration::ZERO)
        }
    }

    /// `leaving(key)`: gives the slot back.
    fn leaving(&self, key: CounterKey) {
        let mut shard = self.map.lock(key);
        if let Some(c) = shard.map.get_mut(&key) {
            c.0 = c.0.saturating_sub(1);
            if c.0 == 0 {
                shard.map.remove(&key);
            }
        }
    }

    /// `leaving(key, latency)`'s adjustment: the unit delay moves halfway to `latency`.
    fn adapt(&self, latency: Duration) {
        let next = (self.unit_delay() + latency.as_secs_f64()) / 2.0;
        self.unit_delay.store(next.to_bits(), Ordering::Relaxed);
    }

    #[cfg(test)]
    fn in_flight(&self, key: CounterKey) -> u64 {
        self.map.lock(key).map.get(&key).map_or(0, |c| c.0)
    }
}

/// A taken slot; dropping it gives the slot back.
struct Slot {
    counts: Arc<Counts>,
    key: CounterKey,
    /// When the request was let through (after its delay).
    admitted: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.leaving(self.key);
    }
}

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct LimitConn {
    conn: u64,
    burst: u64,
    adapt: bool,
    key: KeySpec,
    rejection: Reject,
    counts: Arc<Counts>,
}

/// `conn` or `burst`: an integer (at least `min`); a string is APISIX's variable form.
fn count(field: &str, v: Option<&serde_yaml::Value>, min: u64) -> Result<u64, CompileError> {
    let what = if min == 0 {
        "an integer of at least 0"
    } else {
        "an integer greater than 0"
    };
    match v {
        None => Err((field.into(), format!("required, {what}"))),
        Some(serde_yaml::Value::String(_)) => Err((
            field.into(),
            "a variable expression is not supported by tollgate; write an integer".into(),
        )),
        Some(v) => match v.as_u64() {
            Some(n) if n >= min => Ok(n),
            _ => Err((field.into(), format!("must be {what}"))),
        },
    }
}

pub(crate) fn compile(conf: &Conf, cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        conn,
        burst,
        default_conn_delay,
        only_use_default_delay,
        key,
        key_type,
        policy,
        rejected_code,
        rejected_msg,
        allow_degradation: _,
        rules,
        redis_host,
        redis_port,
        redis_username,
        redis_password,
        redis_database,
        redis_timeout,
        redis_ssl,
        redis_ssl_verify,
        redis_keepalive_timeout,
        redis_keepalive_pool,
        redis_cluster_nodes,
        redis_cluster_name,
        redis_cluster_ssl,
        redis_cluster_ssl_verify,
        key_ttl,
    } = conf;
    check_local(
        "limit-conn",
        *policy,
        &[
            ("redis_host", redis_host.is_some()),
            ("redis_port", redis_port.is_some()),
            ("redis_username", redis_username.is_some()),
            ("redis_password", redis_password.is_some()),
            ("redis_database", redis_database.is_some()),
            ("redis_timeout", redis_timeout.is_some()),
            ("redis_ssl", redis_ssl.is_some()),
            ("redis_ssl_verify", redis_ssl_verify.is_some()),
            ("redis_keepalive_timeout", redis_keepalive_timeout.is_some()),
            ("redis_keepalive_pool", redis_keepalive_pool.is_some()),
            ("redis_cluster_nodes", redis_cluster_nodes.is_some()),
            ("redis_cluster_name", redis_cluster_name.is_some()),
            ("redis_cluster_ssl", redis_cluster_ssl.is_some()),
            (
                "redis_cluster_ssl_verify",
                redis_cluster_ssl_verify.is_some(),
            ),
            ("key_ttl", key_ttl.is_some()),
        ],
    )?;
    if rules.is_some() {
        return Err((
            "rules".into(),
            "not supported by tollgate; use conn, burst and key".into(),
        ));
    }
    let conn = count("conn", conn.as_ref(), 1)?;
    let burst = count("burst", burst.as_ref(), 0)?;
    let delay = match *default_conn_delay {
        None => {
            return Err((
                "default_conn_delay".into(),
                "required, seconds greater than 0".into(),
            ));
        }
        Some(d) if !(d > 0.0 && d.is_finite() && d < 1e9) => {
            return Err((
                "default_conn_delay".into(),
                format!("must be greater than 0, got {d}"),
            ));
        }
        Some(d) => d,
    };
    let key_spec = compile_key(*key_type, key.as_deref())?;
    let rejection = compile_rejection(*rejected_code, rejected_msg.as_deref())?;
    let counts = TABLES.get(cx.owner, format!("{conf:?}"), || Counts::new(delay));
    Ok(Arc::new(LimitConn {
        conn,
        burst,
        adapt: !only_use_default_delay.unwrap_or(false),
        key: key_spec,
        rejection,
        counts,
    }))
}

impl Plugin for LimitConn {
    fn name(&self) -> &'static str {
        "limit-conn"
    }

    fn priority(&self) -> i32 {
        1003
    }

    fn request(&self, r: &RequestView<'_>, state: &mut State) -> Option<Step> {
        let key = self.counts.keys.key("limit-conn", &self.key, r);
        let Some(delay) = self.counts.incoming(key, self.conn, self.burst) else {
            return Some(Step::Respond(self.rejection.clone()));
        };
        // The guard is in the state, which the pipeline keeps before it waits out the delay:
        // a request dropped while waiting still gives the slot back.
        *state = Some(Box::new(Slot {
            counts: self.counts.clone(),
            key,
            admitted: Instant::now() + delay,
        }));
        Some(if delay >= Duration::from_millis(1) {
            Step::Delay(delay)
        } else {
            Step::Continue
        })
    }

    fn done(&self, state: &mut State) {
        if let Some(slot) = state.take().and_then(|s| s.downcast::<Slot>().ok())
            && self.adapt
        {
            self.counts
                .adapt(Instant::now().saturating_duration_since(slot.admitted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shape::Side;

    fn build(yaml: &str) -> Result<Instance, CompileError> {
        let conf: Conf = serde_yaml::from_str(yaml).unwrap();
        compile(
            &conf,
            &CompileCx {
                owner: "route:unit",
                side: Side::Route,
            },
        )
    }

    #[test]
    fn slots_delays_and_refusals_as_resty_limit_conn() {
        let c = Counts::new(0.1);
        let k = CounterKey(1);
        // conn 2, burst 1: two at once, the third after one unit, the fourth refused.
        assert_eq!(c.incoming(k, 2, 1), Some(Duration::ZERO));
        assert_eq!(c.incoming(k, 2, 1), Some(Duration::ZERO));
        assert_eq!(c.incoming(k, 2, 1), Some(Duration::from_secs_f64(0.1)));
        assert_eq!(c.incoming(k, 2, 1), None);
        assert_eq!(c.in_flight(k), 3);
        c.leaving(k);
        assert_eq!(c.incoming(k, 2, 1), Some(Duration::from_secs_f64(0.1)));
        for _ in 0..3 {
            c.leaving(k);
        }
        assert_eq!(c.in_flight(k), 0);
        assert!(c.map.lock(k).map.is_empty(), "an idle key is forgotten");
        // conn 1, burst 3: delays of 1, 2, 3 units.
        let c = Counts::new(1.0);
        let got: Vec<_> = (0..5).map(|_| c.incoming(k, 1, 3)).collect();
        assert_eq!(
            got,
            [
                Some(Duration::ZERO),
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(3)),
                None
            ]
        );
    }

    #[test]
    fn the_unit_delay_follows_latency() {
        let c = Counts::new(1.0);
        c.adapt(Duration::from_millis(200));
        assert!((c.unit_delay() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn a_dropped_slot_is_given_back() {
        let counts = Arc::new(Counts::new(0.1));
        let k = CounterKey(9);
        assert!(counts.incoming(k, 1, 0).is_some());
        let slot = Slot {
            counts: counts.clone(),
            key: k,
            admitted: Instant::now(),
        };
        assert_eq!(counts.incoming(k, 1, 0), None);
        drop(slot);
        assert_eq!(counts.in_flight(k), 0);
    }

    #[test]
    fn confs_refused_by_name() {
        let err = |y: &str| build(y).unwrap_err();
        let ok = "conn: 2, burst: 1, default_conn_delay: 0.1, key: remote_addr";
        build(&format!("{{{ok}}}")).unwrap();
        build(&format!(
            "{{{ok}, key_type: var, only_use_default_delay: true, rejected_code: 429, rejected_msg: busy, allow_degradation: true, policy: local}}"
        ))
        .unwrap();
        assert_eq!(
            err("{burst: 1, default_conn_delay: 0.1, key: remote_addr}").0,
            "conn"
        );
        assert_eq!(
            err("{conn: 0, burst: 1, default_conn_delay: 0.1, key: remote_addr}").0,
            "conn"
        );
        let e = err("{conn: '$http_x_conn', burst: 1, default_conn_delay: 0.1, key: remote_addr}");
        assert_eq!(e.0, "conn");
        assert!(e.1.contains("not supported"), "{}", e.1);
        assert_eq!(
            err("{conn: 1, burst: -1, default_conn_delay: 0.1, key: remote_addr}").0,
            "burst"
        );
        assert_eq!(
            err("{conn: 1, burst: 1, key: remote_addr}").0,
            "default_conn_delay"
        );
        assert_eq!(
            err("{conn: 1, burst: 1, default_conn_delay: 0, key: remote_addr}").0,
            "default_conn_delay"
        );
        assert_eq!(err("{conn: 1, burst: 1, default_conn_delay: 1}").0, "key");
        assert_eq!(err(&format!("{{{ok}, rules: []}}")).0, "rules");
        assert_eq!(err(&format!("{{{ok}, policy: redis-cluster}}")).0, "policy");
        assert_eq!(err(&format!("{{{ok}, key_ttl: 10}}")).0, "key_ttl");
    }
}

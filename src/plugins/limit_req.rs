//! limit-req (APISIX priority 1001; route side, consumer and consumer group): a leaky bucket per
//! key, as lua-resty-limit-traffic's `limit.req` counts it. Each request adds one to the key's
//! excess, which drains at `rate` per second; a request that would take the excess over `burst`
//! is refused with `rejected_code` (default 503) and `{"error_msg": rejected_msg}`, and an
//! admitted request with an excess waits `excess / rate` seconds (an async sleep, no thread
//! held) unless `nodelay` is set.
//!
//! **State.** Buckets live in a table per (owner, conf): the resource that holds the conf
//! (`route:<id>`, `service:<id>`, `consumer:<name>`, `consumer_group:<id>`) and the conf's text.
//! Tables are found again by that pair when a config is compiled ([`Tables`]), so a reload
//! that leaves the conf unchanged keeps every bucket; a changed conf, or a conf moved to another
//! resource, starts from empty buckets (the old table goes when the last request using it ends).
//! An idle bucket is dropped once it has drained. Only `policy: local` is built: `redis` and
//! `redis-cluster` (and their `redis_*` fields) are refused by name.
//!
//! The key helpers here ([`compile_key`], [`KeyHasher`]) serve limit-conn too: `key_type` `var`
//! or `var_combination` with limit-count's variables (limit-count's key parser), a key whose
//! variables are all empty falls back to `remote_addr` (warned once per instance).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::limit_count::{
    DEFAULT_REJECTED_MSG, KeyPart, KeySpec, KeyType, KeyVar, KeyVars, Policy, parse_template,
    warn_fallback,
};
use super::shape::{CompileCx, CompileError, Instance, Plugin, RequestView, State, Step};
use crate::limiter::CounterKey;
use crate::limiter::local::{Expiring, Sharded};
use crate::reject::Reject;

/// The APISIX conf. The Redis fields are read only to be refused by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Required, > 0: requests per second.
    pub rate: Option<f64>,
    /// Required, >= 0: requests over the rate that are delayed rather than refused.
    pub burst: Option<f64>,
    /// Required.
    pub key: Option<String>,
    /// `var` (default) or `var_combination`.
    pub key_type: Option<KeyType>,
    /// Only `local`.
    pub policy: Option<Policy>,
    /// Default 503, 200..=599.
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
    /// Default false.
    pub nodelay: Option<bool>,
    /// Default false. The local policy cannot fail, so it changes nothing.
    pub allow_degradation: Option<bool>,
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
}

/// Refuses a policy other than `local` and any Redis field set (`(name, is set)` pairs).
pub(crate) fn check_local(
    plugin: &str,
    policy: Option<Policy>,
    redis: &[(&str, bool)],
) -> Result<(), CompileError> {
    match policy.unwrap_or_default() {
        Policy::Local => {}
        p => {
            return Err((
                "policy".into(),
                format!(
                    "`{}` is not supported by tollgate for {plugin} (only `local`)",
                    p.as_str()
                ),
            ));
        }
    }
    match redis.iter().find(|(_, set)| *set) {
        Some((f, _)) => Err((
            (*f).into(),
            format!("not supported by tollgate: {plugin} counts locally (policy `local`)"),
        )),
        None => Ok(()),
    }
}

/// `key_type` and `key` as limit-req and limit-conn take them (no `constant`, and no
/// `server_addr`, which a plugin hook does not see).
pub(crate) fn compile_key(
    key_type: Option<KeyType>,
    key: Option<&str>,
) -> Result<KeySpec, CompileError> {
    let key = key.ok_or_else(|| ("key".to_owned(), "required".to_owned()))?;
    let spec = match key_type.unwrap_or_default() {
        KeyType::Var => KeyVar::parse(key).map(KeySpec::Var),
        KeyType::VarCombination => parse_template(key).map(KeySpec::Template),
        KeyType::Constant => {
            return Err((
                "key_type".into(),
                "`constant` is not a key_type of this plugin (`var` or `var_combination`)".into(),
            ));
        }
    }
    .map_err(|m| ("key".to_owned(), m))?;
    let names_server_addr = match &spec {
        KeySpec::Var(v) => *v == KeyVar::ServerAddr,
        KeySpec::Template(parts) => parts
            .iter()
            .any(|p| matches!(p, KeyPart::Var(KeyVar::ServerAddr))),
        KeySpec::Constant(_) => false,
    };
    if names_server_addr {
        return Err((
            "key".into(),
            "`server_addr` is not supported by tollgate in this plugin's key".into(),
        ));
    }
    Ok(spec)
}

/// The `{"error_msg": ...}` rejection.
pub(crate) fn compile_rejection(
    code: Option<u16>,
    msg: Option<&str>,
) -> Result<Reject, CompileError> {
    let code = code.unwrap_or(503);
    if !(200..=599).contains(&code) {
        return Err((
            "rejected_code".into(),
            format!("must be between 200 and 599, got {code}"),
        ));
    }
    if msg == Some("") {
        return Err(("rejected_msg".into(), "must not be empty".into()));
    }
    Ok(Reject::new(
        code,
        Reject::json_body("error_msg", msg.unwrap_or(DEFAULT_REJECTED_MSG)),
    ))
}

/// Hashes a request's key into a [`CounterKey`] (128 bits from two keyed hashes; the table
/// already names owner and conf), without allocating. It belongs to the table, not to the
/// compiled instance: its seeds must survive a reload with the table.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    seeds: (ahash::RandomState, ahash::RandomState),
    warned: AtomicBool,
}

impl KeyHasher {
    pub(crate) fn new() -> KeyHasher {
        KeyHasher {
            seeds: (ahash::RandomState::new(), ahash::RandomState::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// The key of this request under `spec`; a key that resolves to nothing falls back to
    /// `remote_addr` (logged once per instance).
    pub(crate) fn key(&self, plugin: &str, spec: &KeySpec, r: &RequestView<'_>) -> CounterKey {
        let mut bufs = [[0u8; 46]; 2];
        let vars = KeyVars::of(r, &mut bufs);
        let (mut a, mut b) = (self.seeds.0.build_hasher(), self.seeds.1.build_hasher());
        let src = spec.write(&vars, |piece| {
            a.write(piece);
            b.write(piece);
        });
        warn_fallback(src, &self.warned, plugin, r.route_id);
        CounterKey((u128::from(a.finish()) << 64) | u128::from(b.finish()))
    }
}

/// The tables of one plugin, by (owner, conf text), held weakly: compiling an unchanged conf
/// for the same owner finds the live table again, so state survives a reload.
pub(crate) struct Tables<T> {
    map: LazyLock<Mutex<TableMap<T>>>,
}

/// (owner, conf text) to a table.
type TableMap<T> = HashMap<(Box<str>, String), Weak<T>>;

impl<T> Tables<T> {
    pub(crate) const fn new() -> Tables<T> {
        Tables {
            map: LazyLock::new(|| Mutex::new(HashMap::new())),
        }
    }

    /// The live table of `owner` and `conf`, or a new one from `make`. Compile time only.
    pub(crate) fn get(&self, owner: &str, conf: String, make: impl FnOnce() -> T) -> Arc<T> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, w| w.strong_count() > 0);
        let key = (Box::<str>::from(owner), conf);
        if let Some(t) = map.get(&key).and_then(Weak::upgrade) {
            return t;
        }
        let t = Arc::new(make());
        map.insert(key, Arc::downgrade(&t));
        t
    }
}

/// Milliseconds on a process-wide monotonic clock.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    EPOCH.elapsed().as_millis() as u64
}

/// One key's bucket: its excess (in thousandths of a request) at `last_ms`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    excess: f64,
    last_ms: u64,
    /// When the excess has drained to zero: the bucket can be forgotten.
    empty_at_ms: u64,
}

impl Expiring for Bucket {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.empty_at_ms
    }
}

/// The buckets of one (owner, conf).
pub(crate) struct Buckets {
    map: Sharded<Bucket>,
    keys: KeyHasher,
}

impl std::fmt::Debug for Buckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Buckets")
    }
}

static TABLES: Tables<Buckets> = Tables::new();

/// What a bucket said about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Admit {
    /// Admitted; wait this long first (zero when under the rate).
    Delay(Duration),
    Rejected,
}

impl Buckets {
    /// lua-resty-limit-traffic's `incoming(key, commit = true)`, with `rate` and `burst` in
    /// thousandths of a request per second.
    fn incoming(&self, key: CounterKey, rate: f64, burst: f64, now_ms: u64) -> Admit {
        let mut shard = self.map.lock(key);
        shard.make_room_for(key, now_ms);
        let excess = match shard.map.get(&key) {
            Some(b) => {
                let elapsed = now_ms.abs_diff(b.last_ms) as f64;
                let e = (b.excess - rate * elapsed / 1000.0 + 1000.0).max(0.0);
                if e > burst {
                    return Admit::Rejected;
                }
                e
            }
            None => 0.0,
        };
        // Drained after excess / rate seconds; one more millisecond covers rounding.
        let drain_ms = (excess / rate * 1000.0).ceil() as u64 + 1;
        shard.map.insert(
            key,
            Bucket {
                excess,
                last_ms: now_ms,
                empty_at_ms: now_ms.saturating_add(drain_ms),
            },
        );
        Admit::Delay(Duration::from_secs_f64(excess / rate))
    }
}

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct LimitReq {
    /// Thousandths of a request per second.
    rate: f64,
    /// Thousandths of a request.
    burst: f64,
    key: KeySpec,
    nodelay: bool,
    rejection: Reject,
    buckets: Arc<Buckets>,
}

pub(crate) fn compile(conf: &Conf, cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        rate,
        burst,
        key,
        key_type,
        policy,
        rejected_code,
        rejected_msg,
        nodelay,
        allow_degradation: _,
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
    } = conf;
    check_local(
        "limit-req",
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
        ],
    )?;
    let rate = match *rate {
        None => return Err(("rate".into(), "required, a number greater than 0".into())),
        Some(r) if !(r > 0.0 && r.is_finite()) => {
            return Err(("rate".into(), format!("must be greater than 0, got {r}")));
        }
        Some(r) => r,
    };
    let burst = match *burst {
        None => {
            return Err(("burst".into(), "required, a number of at least 0".into()));
        }
        Some(b) if !(b >= 0.0 && b.is_finite()) => {
            return Err(("burst".into(), format!("must be at least 0, got {b}")));
        }
        Some(b) => b,
    };
    let key_spec = compile_key(*key_type, key.as_deref())?;
    let rejection = compile_rejection(*rejected_code, rejected_msg.as_deref())?;
    let buckets = TABLES.get(cx.owner, format!("{conf:?}"), || Buckets {
        map: Sharded::new(),
        keys: KeyHasher::new(),
    });
    Ok(Arc::new(LimitReq {
        rate: rate * 1000.0,
        burst: burst * 1000.0,
        key: key_spec,
        nodelay: nodelay.unwrap_or(false),
        rejection,
        buckets,
    }))
}

impl Plugin for LimitReq {
    fn name(&self) -> &'static str {
        "limit-req"
    }

    fn priority(&self) -> i32 {
        1001
    }

    fn request(&self, r: &RequestView<'_>, _state: &mut State) -> Option<Step> {
        let key = self.buckets.keys.key("limit-req", &self.key, r);
        Some(
            match self.buckets.incoming(key, self.rate, self.burst, now_ms()) {
                Admit::Rejected => Step::Respond(self.rejection.clone()),
                Admit::Delay(d) if !self.nodelay && d >= Duration::from_millis(1) => Step::Delay(d),
                Admit::Delay(_) => Step::Continue,
            },
        )
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

    fn buckets() -> Buckets {
        Buckets {
            map: Sharded::new(),
            keys: KeyHasher::new(),
        }
    }

    #[test]
    fn leaky_bucket_as_resty_limit_req() {
        let b = buckets();
        let k = CounterKey(7);
        // rate 1/s, burst 1: the first passes at once, the second waits 1 s, the third is refused.
        let (rate, burst) = (1000.0, 1000.0);
        assert_eq!(b.incoming(k, rate, burst, 0), Admit::Delay(Duration::ZERO));
        assert_eq!(
            b.incoming(k, rate, burst, 0),
            Admit::Delay(Duration::from_secs(1))
        );
        assert_eq!(b.incoming(k, rate, burst, 0), Admit::Rejected);
        // Half a second later one more would make 1.5 > burst; a second later it fits and
        // waits a full second behind the one already waiting.
        assert_eq!(b.incoming(k, rate, burst, 500), Admit::Rejected);
        assert_eq!(
            b.incoming(k, rate, burst, 1000),
            Admit::Delay(Duration::from_secs(1))
        );
        // Other keys are not affected.
        assert_eq!(
            b.incoming(CounterKey(8), rate, burst, 500),
            Admit::Delay(Duration::ZERO)
        );
        // Burst 0: one per second.
        let b = buckets();
        assert_eq!(b.incoming(k, 1000.0, 0.0, 0), Admit::Delay(Duration::ZERO));
        assert_eq!(b.incoming(k, 1000.0, 0.0, 10), Admit::Rejected);
        assert_eq!(
            b.incoming(k, 1000.0, 0.0, 1000),
            Admit::Delay(Duration::ZERO)
        );
    }

    #[test]
    fn drained_buckets_expire() {
        let b = Bucket {
            excess: 1000.0,
            last_ms: 0,
            empty_at_ms: 1001,
        };
        assert!(!b.expired(1000));
        assert!(b.expired(1001));
    }

    #[test]
    fn confs_refused_by_name() {
        let err = |y: &str| build(y).unwrap_err();
        assert_eq!(err("{burst: 0, key: remote_addr}").0, "rate");
        assert_eq!(err("{rate: 0, burst: 0, key: remote_addr}").0, "rate");
        assert_eq!(err("{rate: 1, key: remote_addr}").0, "burst");
        assert_eq!(err("{rate: 1, burst: -1, key: remote_addr}").0, "burst");
        assert_eq!(err("{rate: 1, burst: 0}").0, "key");
        assert_eq!(err("{rate: 1, burst: 0, key: nope}").0, "key");
        assert_eq!(err("{rate: 1, burst: 0, key: server_addr}").0, "key");
        assert_eq!(
            err("{rate: 1, burst: 0, key: x, key_type: constant}").0,
            "key_type"
        );
        let e = err("{rate: 1, burst: 0, key: remote_addr, policy: redis, redis_host: h}");
        assert_eq!(e.0, "policy");
        assert!(e.1.contains("not supported"), "{}", e.1);
        assert_eq!(
            err("{rate: 1, burst: 0, key: remote_addr, redis_host: h}").0,
            "redis_host"
        );
        assert_eq!(
            err("{rate: 1, burst: 0, key: remote_addr, rejected_code: 600}").0,
            "rejected_code"
        );
        assert!(serde_yaml::from_str::<Conf>("{rate: 1, burst: 0, key: x, keys: y}").is_err());
        build("{rate: 1, burst: 0.5, key: '$remote_addr $consumer_name', key_type: var_combination, rejected_code: 429, nodelay: true, allow_degradation: true, policy: local}").unwrap();
    }

    #[test]
    fn an_unchanged_conf_finds_its_table_again() {
        let conf: Conf = serde_yaml::from_str("{rate: 3, burst: 1, key: remote_addr}").unwrap();
        let a = TABLES.get("route:same", format!("{conf:?}"), buckets);
        let b = TABLES.get("route:same", format!("{conf:?}"), buckets);
        assert!(Arc::ptr_eq(&a, &b));
        let c = TABLES.get("route:other", format!("{conf:?}"), buckets);
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        let d = TABLES.get("route:same", format!("{conf:?}"), buckets);
        assert_eq!(Arc::strong_count(&d), 1, "a dropped table is not kept");
    }
}

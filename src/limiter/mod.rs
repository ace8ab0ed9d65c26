//! The limiter: owns every limit-count counter (local windows, Redis connections, sync state).
//!
//! One [`Limiter`] is created at start and shared as `Arc<Limiter>`; it outlives config
//! snapshots. A counter is named by a [`CounterKey`], a digest of the owner, the conf hash and
//! the key value: an unchanged conf finds its counters again after a reload, a changed one starts
//! from zero (its old windows simply expire). [`Limiter::run_background`] must run for the life
//! of the gateway: it pushes `sync_interval` deltas to Redis and sweeps expired windows.

pub(crate) mod local;
pub(crate) mod policy;
pub(crate) mod redis;

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub(crate) use policy::{LimitPolicy, RedisSettings, RedisTarget};

/// The identity of one counter: 128 bits over owner, conf hash and key value. For a Redis
/// policy, SHA-256, so it is the same in every process (two gateways sharing one Redis count
/// together); for the local policy, two aHash with per-process random seeds (a tenth of the
/// cost; local counters never leave the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterKey(pub u128);

/// Per-process seeds of the local counter hash (the same for the life of the process, so an
/// unchanged conf finds its local counters again after a reload).
static LOCAL_SEEDS: LazyLock<(ahash::RandomState, ahash::RandomState)> =
    LazyLock::new(|| (ahash::RandomState::new(), ahash::RandomState::new()));

/// The fixed fields of a local counter key (owner or group, conf hash), hashed once into two
/// aHash states with the per-process seeds; a limit-count instance keeps its own, so a request
/// hashes only its key value.
#[derive(Debug, Clone)]
pub(crate) struct LocalPrefix(ahash::AHasher, ahash::AHasher);

impl LocalPrefix {
    pub(crate) fn new(owner: &str, group: Option<&str>, conf_hash: u64) -> LocalPrefix {
        let (tag, name) = match group {
            Some(g) => (b"g", g),
            None => (b"o", owner),
        };
        let (a, b) = &*LOCAL_SEEDS;
        let (mut a, mut b) = (a.build_hasher(), b.build_hasher());
        for h in [&mut a, &mut b] {
            h.write(b"tollgate lc v1\0");
            h.write(tag);
            h.write_u64(name.len() as u64);
            h.write(name.as_bytes());
            h.write_u64(conf_hash);
        }
        LocalPrefix(a, b)
    }
}

/// The local policy's hash: the [`LocalPrefix`], then the key value, gathered in one buffer (on
/// the stack unless long) and hashed whole at the end, so that pieces hash like their
/// concatenation, as with SHA-256.
struct LocalHash {
    prefix: LocalPrefix,
    stack: [u8; 128],
    len: usize,
    heap: Vec<u8>,
}

impl LocalHash {
    fn new(prefix: LocalPrefix) -> LocalHash {
        LocalHash {
            prefix,
            stack: [0; 128],
            len: 0,
            heap: Vec::new(),
        }
    }
    fn update(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() && self.len + bytes.len() <= self.stack.len() {
            self.stack[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.len]);
            }
            self.heap.extend_from_slice(bytes);
        }
    }
    fn finish(self) -> CounterKey {
        let bytes = if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap[..]
        };
        let LocalPrefix(mut a, mut b) = self.prefix;
        a.write(bytes);
        b.write(bytes);
        CounterKey((u128::from(a.finish()) << 64) | u128::from(b.finish()))
    }
}

/// Builds a [`CounterKey`] from its fields: the owner (or group), the conf hash, then the key
/// value, which may arrive in pieces. See [`CounterKey::builder`].
pub struct KeyBuilder(KeyHash);

enum KeyHash {
    Local(LocalHash),
    Stable(Sha256),
}

impl KeyBuilder {
    /// A local key whose fixed fields are already hashed (the same key as
    /// [`CounterKey::builder`] with `stable` false and the prefix's fields).
    pub(crate) fn local(prefix: &LocalPrefix) -> KeyBuilder {
        KeyBuilder(KeyHash::Local(LocalHash::new(prefix.clone())))
    }

    /// Feeds bytes of the key value.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            KeyHash::Local(h) => h.update(bytes),
            KeyHash::Stable(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> CounterKey {
        match self.0 {
            KeyHash::Local(h) => h.finish(),
            KeyHash::Stable(h) => CounterKey::from_digest(&h.finalize()),
        }
    }
}

impl CounterKey {
    /// Starts the key of a counter. `owner` names the resource that holds the conf:
    /// `route:<id>`, `service:<id>`, `consumer:<username>`, `consumer_group:<id>`; with a
    /// `group`, the group replaces the owner, so every conf naming it shares counters. `stable`
    /// (Redis policies) asks for SHA-256, the same in every process; otherwise a cheaper
    /// per-process hash. The key value is fed last, so it needs no length prefix.
    pub fn builder(stable: bool, owner: &str, group: Option<&str>, conf_hash: u64) -> KeyBuilder {
        if !stable {
            return KeyBuilder::local(&LocalPrefix::new(owner, group, conf_hash));
        }
        let mut b = KeyBuilder(KeyHash::Stable(Sha256::new()));
        let (tag, name) = match group {
            Some(g) => (b"g", g),
            None => (b"o", owner),
        };
        b.update(b"tollgate lc v1\0");
        b.update(tag);
        b.update(&(name.len() as u64).to_le_bytes());
        b.update(name.as_bytes());
        b.update(&conf_hash.to_le_bytes());
        b
    }

    /// The local policy's key from an already-resolved key value (same process only).
    pub fn local_from_parts(
        owner: &str,
        group: Option<&str>,
        conf_hash: u64,
        key: &[u8],
    ) -> CounterKey {
        let mut b = CounterKey::builder(false, owner, group, conf_hash);
        b.update(key);
        b.finish()
    }

    /// The Redis policies' digest from an already-resolved key value.
    pub fn from_parts(owner: &str, group: Option<&str>, conf_hash: u64, key: &[u8]) -> CounterKey {
        let mut b = CounterKey::builder(true, owner, group, conf_hash);
        b.update(key);
        b.finish()
    }

    fn from_digest(d: &[u8]) -> CounterKey {
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        CounterKey(u128::from_be_bytes(b))
    }

    /// `tollgate:lc:<32 hex digits>`, the key's name in Redis.
    pub fn redis_key(&self) -> [u8; 44] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 44];
        out[..12].copy_from_slice(b"tollgate:lc:");
        for (i, byte) in self.0.to_be_bytes().iter().enumerate() {
            out[12 + 2 * i] = HEX[usize::from(byte >> 4)];
            out[13 + 2 * i] = HEX[usize::from(byte & 0xf)];
        }
        out
    }
}

/// The outcome of one acquire, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    /// Requests left in the window after this one; 0 when rejected.
    pub remaining: u64,
    /// Whole seconds until the window ends, rounded up; the first request of a window reports
    /// `time_window`.
    pub reset_secs: u64,
    pub allowed: bool,
}

impl Quota {
    /// `used` counts this request when it was admitted.
    pub(crate) fn new(limit: u64, used: u64, allowed: bool, window_left_ms: u64) -> Quota {
        Quota {
            limit,
            remaining: if allowed {
                limit.saturating_sub(used)
            } else {
                0
            },
            reset_secs: window_left_ms.div_ceil(1000).max(1),
            allowed,
        }
    }
}

/// A counter backend failed. The caller applies `allow_degradation`: pass the request (and
/// count that in its metrics; the limiter keeps no count of degraded decisions), or answer
/// [`LimitCount::backend_failure`] (500 `{"error_msg":"failed to limit count"}`).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("Redis {target}: no answer within {timeout_ms} ms")]
    Timeout { target: Arc<str>, timeout_ms: u64 },
    #[error("Redis {target}: {message}")]
    Backend { target: Arc<str>, message: String },
}

/// Owns every counter; see the module docs.
pub struct Limiter {
    epoch: Instant,
    local: local::LocalCounters,
    redis: redis::RedisCounters,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("local_windows", &self.local.len())
            .finish_non_exhaustive()
    }
}

/// How often [`Limiter::run_background`] wakes to look for due syncs (`sync_interval` >= 0.1 s).
const TICK: Duration = Duration::from_millis(50);
/// How often it sweeps expired windows (inserts also sweep a shard that doubled).
const SWEEP_EVERY_MS: u64 = 10_000;

impl Limiter {
    /// Needs no runtime: Redis connections are made on first use.
    pub fn new() -> Limiter {
        Limiter {
            epoch: Instant::now(),
            local: local::LocalCounters::new(),
            redis: redis::RedisCounters::new(),
        }
    }

    /// Milliseconds of `now` on the limiter's monotonic clock.
    pub fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts one request against `counter`: `count` per `window_ms` under `policy`. Local and
    /// `sync_interval` decisions never wait; a Redis round trip is bounded by `redis_timeout`.
    pub async fn acquire(
        &self,
        policy: &LimitPolicy,
        count: u64,
        window_ms: u64,
        counter: CounterKey,
        now: Instant,
    ) -> Result<Quota, LimiterError> {
        match (
            self.acquire_now(policy, count, window_ms, counter, now),
            policy,
        ) {
            (Some(quota), _) => quota,
            (None, LimitPolicy::Redis(settings)) => {
                self.redis
                    .acquire_remote(settings, counter, count, window_ms)
                    .await
            }
            (None, LimitPolicy::Local) => unreachable!("local counters answer at once"),
        }
    }

    /// [`Limiter::acquire`] when it needs no round trip (local counters, and redis ones with
    /// `sync_interval`); `None` when it must ask redis.
    pub fn acquire_now(
        &self,
        policy: &LimitPolicy,
        count: u64,
        window_ms: u64,
        counter: CounterKey,
        now: Instant,
    ) -> Option<Result<Quota, LimiterError>> {
        let now_ms = self.ms(now);
        match policy {
            LimitPolicy::Local => Some(Ok(self.local.acquire(counter, count, window_ms, now_ms))),
            LimitPolicy::Redis(settings) => settings.sync_interval.map(|_| {
                self.redis
                    .acquire_synced(settings, counter, count, window_ms, now_ms)
            }),
        }
    }

    /// Drops expired windows everywhere; returns how many. `run_background` calls it.
    pub fn sweep(&self, now: Instant) -> usize {
        let now_ms = self.ms(now);
        self.local.sweep(now_ms) + self.redis.sweep(now_ms)
    }

    /// Live local windows plus `sync_interval` entries (for tests and gauges).
    pub fn len(&self) -> usize {
        self.local.len() + self.redis.synced_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes every pending `sync_interval` delta now, whatever the interval (at shutdown, and
    /// in tests).
    pub async fn flush(&self) {
        self.redis.sync_due(|| self.ms(Instant::now()), true).await;
    }

    /// The limiter's background work, for the gateway's background service: pushes
    /// `sync_interval` deltas when due and sweeps expired windows, until `shutdown` turns true
    /// (or its sender is dropped); then flushes pending deltas once and returns.
    pub async fn run_background(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_sweep = self.ms(Instant::now()) + SWEEP_EVERY_MS;
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = tick.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
            }
            self.redis.sync_due(|| self.ms(Instant::now()), false).await;
            let now = Instant::now();
            if self.ms(now) >= next_sweep {
                let removed = self.sweep(now);
                log::debug!("limit-count: swept {removed} expired windows");
                next_sweep = self.ms(now) + SWEEP_EVERY_MS;
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::limit_count::{LimitCountConf, compile_limit_count};

    use crate::plugins::limit_count::{KeySource, KeyVars, LimitCount};

    pub(crate) fn lc(yaml: &str) -> LimitCount {
        let conf: LimitCountConf = serde_yaml::from_str(yaml).expect("yaml");
        compile_limit_count(&conf).expect("valid conf")
    }

    fn vars<'a>(headers: &'a http::HeaderMap, consumer: Option<&'a str>) -> KeyVars<'a> {
        KeyVars {
            remote_addr: "10.0.0.1",
            server_addr: "127.0.0.1",
            consumer_name: consumer,
            consumer_group_id: None,
            route_id: "r1",
            service_id: None,
            headers,
            query: None,
        }
    }

    /// Polls a future that must not wait (local policy).
    fn now_or_never<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("local acquire waited"),
        }
    }

    /// Runs the identity checks for one policy (`extra` is added to every conf); `parts` is the
    /// same key from a resolved value.
    fn counter_key_identity_for(
        extra: &str,
        parts: fn(&str, Option<&str>, u64, &[u8]) -> CounterKey,
    ) {
        let h = http::HeaderMap::new();
        let lc = |body: &str| lc(&format!("{{{body}{extra}}}"));
        let a = lc("count: 2, time_window: 5");
        let b = lc("count: 2, time_window: 5");
        let c = lc("count: 3, time_window: 5");
        let v = vars(&h, Some("FetchBot"));
        let (k1, s1) = a.counter_key("route:1", &v);
        assert_eq!(s1, KeySource::Configured);
        assert_eq!(
            b.counter_key("route:1", &v).0,
            k1,
            "recompiled unchanged conf keeps its key"
        );
        assert_ne!(a.counter_key("route:2", &v).0, k1, "another owner");
        assert_ne!(c.counter_key("route:1", &v).0, k1, "changed conf");
        assert_eq!(k1, parts("route:1", None, a.conf_hash, b"10.0.0.1"));
        // Groups ignore the owner.
        let g = lc("count: 2, time_window: 5, group: shared");
        let (g1, _) = g.counter_key("route:1", &v);
        let (g2, _) = g.counter_key("service:9", &v);
        assert_eq!(g1, g2);
        assert_eq!(
            g1,
            parts("route:1", Some("shared"), g.conf_hash, b"10.0.0.1")
        );
        assert_ne!(g1, parts("shared", None, g.conf_hash, b"10.0.0.1"));
        // Template pieces hash like the whole string.
        let t = lc(
            "count: 2, time_window: 5, key_type: var_combination, key: '$remote_addr $consumer_name'",
        );
        let (kt, _) = t.counter_key("route:1", &v);
        assert_eq!(
            kt,
            parts("route:1", None, t.conf_hash, b"10.0.0.1 FetchBot")
        );
        // Fallback is reported.
        let n = lc("count: 2, time_window: 5, key: consumer_name");
        let (kn, sn) = n.counter_key("route:1", &vars(&h, None));
        assert_eq!(sn, KeySource::FallbackRemoteAddr);
        assert_eq!(kn, parts("route:1", None, n.conf_hash, b"10.0.0.1"));
    }

    #[test]
    fn counter_key_identity() {
        counter_key_identity_for("", CounterKey::local_from_parts);
        counter_key_identity_for(
            ", policy: redis, redis_host: 127.0.0.1",
            CounterKey::from_parts,
        );
        // Redis keys are fixed across processes and builds (gateways sharing a Redis agree).
        let k = CounterKey::from_parts("route:1", None, 42, b"10.0.0.1");
        assert_eq!(
            format!("{:032x}", k.0),
            "77b78f627b9c9b51e660b82d3848937c",
            "the Redis counter key format changed"
        );
        assert_eq!(
            std::str::from_utf8(&k.redis_key()).expect("ascii"),
            format!("tollgate:lc:{:032x}", k.0)
        );
        // A long key value (past the stack buffer) hashes like its pieces.
        let long = "k".repeat(300);
        let h = http::HeaderMap::new();
        let t = lc("{count: 2, time_window: 5, key_type: constant, key: PLACE}"
            .replace("PLACE", &long)
            .as_str());
        let (kl, _) = t.counter_key("route:1", &vars(&h, None));
        assert_eq!(
            kl,
            CounterKey::local_from_parts("route:1", None, t.conf_hash, long.as_bytes())
        );
        // The local hash is a different one.
        assert_ne!(
            k,
            CounterKey::local_from_parts("route:1", None, 42, b"10.0.0.1")
        );
    }

    #[test]
    fn local_hash_pieces_hash_like_the_whole() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
        let prefix = LocalPrefix::new("route:1", None, 42);
        for len in [0, 1, 127, 128, 129, 400] {
            let whole = {
                let mut h = LocalHash::new(prefix.clone());
                h.update(&data[..len]);
                h.finish()
            };
            for cut in [0, 1.min(len), len / 2, len.saturating_sub(1), len] {
                let mut h = LocalHash::new(prefix.clone());
                h.update(&data[..cut]);
                h.update(&data[cut..len]);
                assert_eq!(h.finish(), whole, "len {len}, cut {cut}");
            }
        }
    }

    #[test]
    fn acquire_local_through_limiter() {
        let limiter = Limiter::new();
        let t0 = limiter.epoch;
        let conf = lc("{count: 2, time_window: 5}");
        let key = CounterKey(7);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let q = now_or_never(limiter.acquire(&conf.policy, conf.count, conf.window_ms, key, at(0)))
            .expect("local never fails");
        assert_eq!(
            q,
            Quota {
                limit: 2,
                remaining: 1,
                reset_secs: 5,
                allowed: true
            }
        );
        let q =
            now_or_never(limiter.acquire(&conf.policy, conf.count, conf.window_ms, key, at(1500)))
                .expect("ok");
        assert_eq!(
            q,
            Quota {
                limit: 2,
                remaining: 0,
                reset_secs: 4,
                allowed: true
            }
        );
        let q =
            now_or_never(limiter.acquire(&conf.policy, conf.count, conf.window_ms, key, at(4999)))
                .expect("ok");
        assert_eq!(
            q,
            Quota {
                limit: 2,
                remaining: 0,
                reset_secs: 1,
                allowed: false
            }
        );
        let q =
            now_or_never(limiter.acquire(&conf.policy, conf.count, conf.window_ms, key, at(5000)))
                .expect("ok");
        assert_eq!(
            q,
            Quota {
                limit: 2,
                remaining: 1,
                reset_secs: 5,
                allowed: true
            }
        );
        assert_eq!(limiter.len(), 1);
        assert_eq!(limiter.sweep(at(10_000)), 1);
        assert!(limiter.is_empty());
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let limiter = Arc::new(Limiter::new());
        let conf = lc("{count: 1, time_window: 1}");
        let f = limiter.acquire(
            &conf.policy,
            conf.count,
            conf.window_ms,
            CounterKey(1),
            Instant::now(),
        );
        send(&f);
        drop(f);
        let (_tx, rx) = watch::channel(false);
        send(&limiter.clone().run_background(rx));
        send(&limiter.flush());
    }

    #[tokio::test]
    async fn background_stops_on_shutdown() {
        let limiter = Arc::new(Limiter::new());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(limiter.clone().run_background(rx));
        tx.send(true).expect("receiver alive");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops")
            .expect("no panic");
        // A dropped sender stops it too.
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(limiter.run_background(rx));
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

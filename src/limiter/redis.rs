//! Counters in Redis (`policy: redis` and `redis-cluster`), with or without `sync_interval`.
//!
//! One connection per distinct target (address, credentials, database, timeout), made on first
//! use and kept for the life of the limiter: a multiplexed [`ConnectionManager`] (which
//! reconnects by itself) for a single server, a [`ClusterConnection`] for a cluster. Every call,
//! connecting included, is bounded by `redis_timeout`, so a dead or silent Redis costs a request
//! at most that long and never hangs the gateway.
//!
//! Without `sync_interval` each request runs one script, one round trip: `INCRBY key 1`, and
//! `PEXPIRE key <time_window>` when the key has no expiry yet (it was just created), returning
//! the count and `PTTL`. Redis owns the window, so every gateway sharing it shares the quota.
//!
//! With `sync_interval`, requests are decided locally and the deltas pushed once per interval in
//! one pipelined batch per target (for a cluster, one concurrent request per key, pipelined per
//! node by the multiplexed connections), each answered with the shared total and `PTTL`, which
//! become the node's view until the next sync.
//!
//! **Over-admission bound.** A node admits while its last-known shared total plus its own
//! unpushed admissions stays under `count`. Other nodes' admissions since their last push are
//! invisible to it, so in one window the gateways together admit at most `count` plus, for each
//! node, the admissions it makes in one sync interval (the interval in which the shared total
//! crosses `count`): with N nodes, at most N intervals' worth of traffic beyond `count`. A key a
//! node has not seen before starts from zero locally, which is within the same bound. Windows
//! start in Redis at the first push, so they may begin up to one interval after the first
//! request. A push that times out may still have been applied; it is pushed again, which can
//! only over-count (admit less), never under-count.
//!
//! While a target's last sync failed, `sync_interval` requests on it get
//! [`LimiterError::Backend`] (so `allow_degradation` decides, as without `sync_interval`); the
//! next sync, at most one interval later, probes it again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, RedisResult, Script,
    ServerErrorKind,
};
use arc_swap::ArcSwapOption;

use super::local::{Expiring, Sharded};
use super::policy::{RedisSettings, RedisTarget};
use super::{CounterKey, LimiterError, Quota};
use crate::cow_map::CowMap;

/// `KEYS[1]` += `ARGV[1]`; a key without expiry gets `ARGV[2]` ms. Returns `{count, pttl}`.
const INCR_SRC: &str = "\
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {c, ttl}
";

static INCR: LazyLock<Script> = LazyLock::new(|| Script::new(INCR_SRC));

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// One Redis target and its connection.
struct Backend {
    target: RedisTarget,
    timeout: Duration,
    label: Arc<str>,
    conn: tokio::sync::OnceCell<Conn>,
}

impl Backend {
    /// The connection, made on first use. A failed attempt is not kept: the next call tries
    /// again; concurrent callers wait for the attempt in flight (each within its own timeout).
    async fn conn(&self) -> RedisResult<Conn> {
        self.conn
            .get_or_try_init(|| connect(&self.target, self.timeout))
            .await
            .cloned()
    }

    fn error(&self, e: &RedisError) -> LimiterError {
        if e.is_timeout() {
            self.timeout_error()
        } else {
            LimiterError::Backend {
                target: self.label.clone(),
                message: e.to_string(),
            }
        }
    }

    fn timeout_error(&self) -> LimiterError {
        LimiterError::Timeout {
            target: self.label.clone(),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

async fn connect(target: &RedisTarget, timeout: Duration) -> RedisResult<Conn> {
    match target {
        RedisTarget::Single {
            host,
            port,
            username,
            password,
            database,
        } => {
            let mut redis = RedisConnectionInfo::default()
                .set_db(i64::from(*database))
                .set_skip_set_lib_name();
            if let Some(u) = username {
                redis = redis.set_username(u);
            }
            if let Some(p) = password {
                redis = redis.set_password(String::from_utf8_lossy(p.expose()));
            }
            let info = ConnectionAddr::Tcp(host.to_string(), *port)
                .into_connection_info()?
                .set_redis_settings(redis);
            let client = ::redis::Client::open(info)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1);
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster {
            nodes, password, ..
        } => {
            let nodes = nodes
                .iter()
                .map(|(h, p)| ConnectionAddr::Tcp(h.to_string(), *p));
            let mut builder = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1);
            if let Some(p) = password {
                builder = builder.password(String::from_utf8_lossy(p.expose()));
            }
            Ok(Conn::Cluster(
                builder.build()?.get_async_connection().await?,
            ))
        }
    }
}

/// One `INCR` script call: `(count, pttl)`.
async fn incr(conn: &Conn, key: &[u8], delta: u64, window_ms: u64) -> RedisResult<(i64, i64)> {
    let mut inv = INCR.prepare_invoke();
    inv.key(key).arg(delta).arg(window_ms);
    match conn {
        Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
        Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
    }
}

/// A `sync_interval` counter as this node sees it.
#[derive(Debug, Clone, Copy)]
struct SyncEntry {
    /// The shared total at the last sync (this node's pushed deltas included).
    total: u64,
    /// Taken by a push not answered yet.
    in_flight: u64,
    /// Admitted here since the last take.
    pending: u64,
    end_ms: u64,
    window_ms: u64,
    /// Bumped when the window restarts, so a late answer for the old window is ignored.
    generation: u32,
    /// Listed in its shard's `dirty`.
    dirty: bool,
}

impl Expiring for SyncEntry {
    fn expired(&self, now_ms: u64) -> bool {
        self.end_ms <= now_ms
    }
}

struct Taken {
    key: CounterKey,
    delta: u64,
    generation: u32,
    window_ms: u64,
}

/// The `sync_interval` counters of one (target, interval).
struct SyncGroup {
    backend: Arc<Backend>,
    interval_ms: u64,
    entries: Sharded<SyncEntry>,
    next_due_ms: AtomicU64,
    healthy: AtomicBool,
    last_error: ArcSwapOption<String>,
}

impl SyncGroup {
    fn acquire(
        &self,
        key: CounterKey,
        limit: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Quota, LimiterError> {
        if !self.healthy.load(Ordering::Relaxed) {
            let why = self.last_error.load_full();
            return Err(LimiterError::Backend {
                target: self.backend.label.clone(),
                message: format!(
                    "last sync failed: {}",
                    why.as_deref().map_or("unknown", |s| s)
                ),
            });
        }
        let mut guard = self.entries.lock(key);
        let shard = &mut *guard;
        shard.make_room_for(key, now_ms);
        let fresh = SyncEntry {
            total: 0,
            in_flight: 0,
            pending: 0,
            end_ms: now_ms + window_ms,
            window_ms,
            generation: 0,
            dirty: false,
        };
        let e = shard.map.entry(key).or_insert(fresh);
        if e.expired(now_ms) {
            *e = SyncEntry {
                generation: e.generation.wrapping_add(1),
                dirty: e.dirty,
                ..fresh
            };
        }
        let used = e.total + e.in_flight + e.pending;
        let allowed = used < limit;
        if allowed {
            e.pending += 1;
            if !e.dirty {
                e.dirty = true;
                shard.dirty.push(key);
            }
        }
        Ok(Quota::new(
            limit,
            used + u64::from(allowed),
            allowed,
            e.end_ms - now_ms,
        ))
    }

    /// Takes every pending delta, pushes them, and applies the answers (or puts the deltas back).
    async fn sync(&self, now_ms: &(dyn Fn() -> u64 + Sync)) {
        self.next_due_ms
            .store(now_ms() + self.interval_ms, Ordering::Relaxed);
        let mut batch = Vec::new();
        for mut guard in self.entries.shards() {
            let shard = &mut *guard;
            for key in shard.dirty.drain(..) {
                if let Some(e) = shard.map.get_mut(&key)
                    && e.dirty
                {
                    e.dirty = false;
                    if e.pending > 0 {
                        batch.push(Taken {
                            key,
                            delta: e.pending,
                            generation: e.generation,
                            window_ms: e.window_ms,
                        });
                        e.in_flight += e.pending;
                        e.pending = 0;
                    }
                }
            }
        }
        if batch.is_empty() && self.healthy.load(Ordering::Relaxed) {
            return;
        }
        let answers =
            match tokio::time::timeout(self.backend.timeout, push(&self.backend, &batch)).await {
                Ok(Ok(answers)) => answers,
                Ok(Err(e)) => all_failed(&batch, self.backend.error(&e).to_string()),
                Err(_) => all_failed(&batch, self.backend.timeout_error().to_string()),
            };
        let answers = if batch.is_empty() || answers.len() == batch.len() {
            answers
        } else {
            all_failed(
                &batch,
                format!("{} answers for {} keys", answers.len(), batch.len()),
            )
        };
        let now = now_ms();
        let mut failure: Option<String> = None;
        for (i, answer) in answers.into_iter().enumerate() {
            let Some(t) = batch.get(i) else {
                // The probe of an empty batch.
                if let Err(m) = answer {
                    failure = Some(m);
                }
                continue;
            };
            let mut guard = self.entries.lock(t.key);
            let shard = &mut *guard;
            let entry = shard
                .map
                .get_mut(&t.key)
                .filter(|e| e.generation == t.generation);
            match answer {
                Ok((count, pttl)) => {
                    if let Some(e) = entry {
                        e.in_flight = e.in_flight.saturating_sub(t.delta);
                        e.total = u64::try_from(count).unwrap_or(0);
                        let left = u64::try_from(pttl)
                            .ok()
                            .filter(|&p| p > 0)
                            .unwrap_or(t.window_ms);
                        e.end_ms = now + left;
                    }
                }
                Err(m) => {
                    if let Some(e) = entry {
                        e.in_flight = e.in_flight.saturating_sub(t.delta);
                        e.pending += t.delta;
                        if !e.dirty {
                            e.dirty = true;
                            shard.dirty.push(t.key);
                        }
                    }
                    failure.get_or_insert(m);
                }
            }
        }
        match failure {
            Some(m) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    log::warn!(
                        "limit-count: sync to Redis {} failed: {m}; its sync_interval limits fail \
                         (or pass with allow_degradation) until a sync succeeds",
                        self.backend.label
                    );
                }
                self.last_error.store(Some(Arc::new(m)));
            }
            None => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    log::info!(
                        "limit-count: sync to Redis {} works again",
                        self.backend.label
                    );
                }
            }
        }
    }
}

/// One failure per entry of `batch`, or one for the probe of an empty batch.
fn all_failed(batch: &[Taken], msg: String) -> Vec<Result<(i64, i64), String>> {
    (0..batch.len().max(1)).map(|_| Err(msg.clone())).collect()
}

/// Pushes a batch: one answer per entry, or one for the probe of an empty batch.
async fn push(backend: &Backend, batch: &[Taken]) -> RedisResult<Vec<Result<(i64, i64), String>>> {
    let conn = backend.conn().await?;
    if batch.is_empty() {
        let pong: RedisResult<String> = match &conn {
            Conn::Single(c) => ::redis::cmd("PING").query_async(&mut c.clone()).await,
            Conn::Cluster(c) => ::redis::cmd("PING").query_async(&mut c.clone()).await,
        };
        return Ok(vec![
            pong.map(|_| (0, 0))
                .map_err(|e| backend.error(&e).to_string()),
        ]);
    }
    let keys: Vec<[u8; 44]> = batch.iter().map(|t| t.key.redis_key()).collect();
    match conn {
        Conn::Single(mut c) => {
            let mut answers: Vec<RedisResult<(i64, i64)>> =
                pipeline(&mut c, batch, &keys, None).await?;
            let missing: Vec<usize> = answers
                .iter()
                .enumerate()
                .filter(|(_, a)| matches!(a, Err(e) if e.kind() == ::redis::ErrorKind::Server(ServerErrorKind::NoScript)))
                .map(|(i, _)| i)
                .collect();
            if !missing.is_empty() {
                // The server forgot the script (restarted or flushed): load it, resend those.
                INCR.prepare_invoke().load_async(&mut c).await?;
                let again = pipeline(&mut c, batch, &keys, Some(&missing)).await?;
                for (i, a) in missing.into_iter().zip(again) {
                    answers[i] = a;
                }
            }
            Ok(answers
                .into_iter()
                .map(|a| a.map_err(|e| backend.error(&e).to_string()))
                .collect())
        }
        Conn::Cluster(c) => {
            let conn = Conn::Cluster(c);
            let calls = batch
                .iter()
                .zip(&keys)
                .map(|(t, k)| incr(&conn, k, t.delta, t.window_ms));
            let answers = futures::future::join_all(calls).await;
            Ok(answers
                .into_iter()
                .map(|a| a.map_err(|e| backend.error(&e).to_string()))
                .collect())
        }
    }
}

/// One pipeline of script calls for `batch` (or the entries at `only`), errors kept per entry.
async fn pipeline(
    c: &mut ConnectionManager,
    batch: &[Taken],
    keys: &[[u8; 44]],
    only: Option<&[usize]>,
) -> RedisResult<Vec<RedisResult<(i64, i64)>>> {
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    let all: Vec<usize>;
    let indexes = match only {
        Some(o) => o,
        None => {
            all = (0..batch.len()).collect();
            &all
        }
    };
    for &i in indexes {
        let mut inv = INCR.prepare_invoke();
        inv.key(&keys[i][..])
            .arg(batch[i].delta)
            .arg(batch[i].window_ms);
        pipe.invoke_script(&inv);
    }
    pipe.query_async(c).await
}

type GroupId = (u64, u64);

/// Every Redis target and `sync_interval` group the limiter has seen.
pub(crate) struct RedisCounters {
    backends: CowMap<u64, Arc<Backend>>,
    groups: CowMap<GroupId, Arc<SyncGroup>>,
}

impl Default for RedisCounters {
    fn default() -> Self {
        RedisCounters::new()
    }
}

impl RedisCounters {
    pub(crate) fn new() -> RedisCounters {
        RedisCounters {
            backends: CowMap::new(),
            groups: CowMap::new(),
        }
    }

    fn backend(&self, s: &RedisSettings) -> Arc<Backend> {
        self.backends.get_or_insert_with(&s.backend_id, || {
            Arc::new(Backend {
                target: s.target.clone(),
                timeout: s.timeout,
                label: s.label.clone(),
                conn: tokio::sync::OnceCell::new(),
            })
        })
    }

    fn with_group<T>(
        &self,
        s: &RedisSettings,
        interval_ms: u64,
        now_ms: u64,
        f: impl FnOnce(&SyncGroup) -> T,
    ) -> T {
        let id = (s.backend_id, interval_ms);
        if let Some(g) = self.groups.load().get(&id) {
            return f(g);
        }
        let backend = self.backend(s);
        let g = self.groups.get_or_insert_with(&id, || {
            Arc::new(SyncGroup {
                backend,
                interval_ms,
                entries: Sharded::new(),
                next_due_ms: AtomicU64::new(now_ms + interval_ms),
                healthy: AtomicBool::new(true),
                last_error: ArcSwapOption::empty(),
            })
        });
        f(&g)
    }

    /// One round trip to Redis, bounded by `redis_timeout`.
    pub(crate) async fn acquire_remote(
        &self,
        s: &RedisSettings,
        key: CounterKey,
        limit: u64,
        window_ms: u64,
    ) -> Result<Quota, LimiterError> {
        let backend = self.backend(s);
        let name = key.redis_key();
        let work = async {
            let conn = backend.conn().await?;
            incr(&conn, &name, 1, window_ms).await
        };
        match tokio::time::timeout(backend.timeout, work).await {
            Err(_) => Err(backend.timeout_error()),
            Ok(Err(e)) => Err(backend.error(&e)),
            Ok(Ok((count, pttl))) => {
                let count = u64::try_from(count).unwrap_or(0);
                let left = u64::try_from(pttl)
                    .ok()
                    .filter(|&p| p > 0)
                    .unwrap_or(window_ms);
                Ok(Quota::new(limit, count, count <= limit, left))
            }
        }
    }

    /// A local decision against the last synced total; never waits.
    pub(crate) fn acquire_synced(
        &self,
        s: &RedisSettings,
        key: CounterKey,
        limit: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Quota, LimiterError> {
        let interval_ms = s
            .sync_interval
            .map_or(1000, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.with_group(s, interval_ms, now_ms, |g| {
            g.acquire(key, limit, window_ms, now_ms)
        })
    }

    /// Syncs the groups that are due (all with `force`), concurrently.
    pub(crate) async fn sync_due(&self, now_ms: impl Fn() -> u64 + Sync, force: bool) {
        let groups = self.groups.load_full();
        let now = now_ms();
        let due: Vec<&Arc<SyncGroup>> = groups
            .values()
            .filter(|g| force || g.next_due_ms.load(Ordering::Relaxed) <= now)
            .collect();
        if due.is_empty() {
            return;
        }
        futures::future::join_all(due.into_iter().map(|g| g.sync(&now_ms))).await;
    }

    pub(crate) fn sweep(&self, now_ms: u64) -> usize {
        self.groups
            .load()
            .values()
            .map(|g| g.entries.sweep(now_ms))
            .sum()
    }

    pub(crate) fn synced_len(&self) -> usize {
        self.groups.load().values().map(|g| g.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    //! Against real `redis-server` processes on free loopback ports (skipped, with a note, when
    //! `redis-server` is not on PATH), killed by PID when dropped.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::limiter::tests::lc;
    use crate::limiter::{CounterKey, Limiter, LimiterError, Quota};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// scripts/setup.sh installs redis-server: a missing one fails the test, never skips it.
    fn require_redis() {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "redis-server is not on PATH: run scripts/setup.sh (these tests need a real Redis)"
        );
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port()
    }

    /// Sends one command in RESP, returns the raw reply.
    fn raw(port: u16, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    struct Server {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    }

    impl Server {
        fn start(port: u16, cluster: bool) -> Server {
            Server::try_start(port, cluster)
                .unwrap_or_else(|| panic!("redis-server on {port} exited at start"))
        }

        /// A server on a free port. A port found free can be taken again before redis-server
        /// binds it (by another test's outgoing connection): then it exits, and another pair
        /// of ports is tried.
        fn start_any(cluster: bool) -> Server {
            (0..5)
                .find_map(|_| Server::try_start(free_port(), cluster))
                .expect("redis-server started on one of 5 free ports")
        }

        /// None when redis-server exits before it answers (its port was taken).
        fn try_start(port: u16, cluster: bool) -> Option<Server> {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path());
            if cluster {
                cmd.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                    .arg(dir.path().join("nodes.conf"))
                    .args(["--cluster-port", &free_port().to_string()]);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = Server {
                child,
                port,
                _dir: dir,
            };
            let mut exited = false;
            wait_until(&format!("redis-server on {port} answers PING"), || {
                exited = !matches!(server.child.try_wait(), Ok(None));
                exited || raw(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG"))
            });
            (!exited).then_some(server)
        }

        fn cmd(&self, args: &[&str]) -> String {
            raw(self.port, args).expect("redis answers")
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn redis_conf(port: u16, extra: &str) -> crate::plugins::limit_count::LimitCount {
        lc(&format!(
            "{{policy: redis, redis_host: 127.0.0.1, redis_port: {port}, {extra}}}"
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_atomically_and_shares_between_gateways() {
        require_redis();
        let server = Server::start_any(false);
        let conf = redis_conf(server.port, "count: 30, time_window: 60");
        let a = Arc::new(Limiter::new());
        let key = CounterKey(0xfeed);
        let q = a
            .acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                key,
                Instant::now(),
            )
            .await
            .expect("redis answers");
        assert_eq!(
            q,
            Quota {
                limit: 30,
                remaining: 29,
                reset_secs: 60,
                allowed: true
            }
        );
        // 40 concurrent requests from two "gateways": exactly 29 more are admitted.
        let b = Arc::new(Limiter::new());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
            let conf = conf.clone();
            tasks.push(tokio::spawn(async move {
                limiter
                    .acquire(
                        &conf.policy,
                        conf.count,
                        conf.window_ms,
                        key,
                        Instant::now(),
                    )
                    .await
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            let q = t.await.expect("task").expect("redis answers");
            assert!(q.reset_secs <= 60 && q.reset_secs >= 1);
            if q.allowed {
                admitted += 1;
            } else {
                assert_eq!(q.remaining, 0);
            }
        }
        assert_eq!(admitted, 29);
        // The key, its value and its expiry in Redis.
        let name = String::from_utf8(key.redis_key().to_vec()).expect("ascii");
        assert_eq!(name, format!("tollgate:lc:{:032x}", 0xfeed));
        assert_eq!(server.cmd(&["GET", &name]), "$2\r\n41\r\n");
        let pttl: i64 = server
            .cmd(&["PTTL", &name])
            .trim_start_matches(':')
            .trim()
            .parse()
            .expect("int");
        assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
        // A changed conf counts elsewhere (its key includes the conf hash via LimitCount::counter_key).
        let other = redis_conf(server.port, "count: 1, time_window: 60");
        assert!(
            a.acquire(
                &other.policy,
                other.count,
                other.window_ms,
                CounterKey(0xbeef),
                Instant::now()
            )
            .await
            .expect("ok")
            .allowed
        );
        assert!(
            !a.acquire(
                &other.policy,
                other.count,
                other.window_ms,
                CounterKey(0xbeef),
                Instant::now()
            )
            .await
            .expect("ok")
            .allowed
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts connections (the kernel completes the handshake) but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let conf = redis_conf(port, "count: 5, time_window: 60, redis_timeout: 200");
        let limiter = Limiter::new();
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            limiter.acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                CounterKey(1),
                Instant::now(),
            ),
        )
        .await
        .expect("bounded by redis_timeout, not hung");
        assert!(
            matches!(
                r,
                Err(LimiterError::Timeout {
                    timeout_ms: 200,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            format!("Redis 127.0.0.1:{port}/0: no answer within 200 ms")
        );
        // Again, with the connection attempt possibly made: still bounded.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            limiter.acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                CounterKey(1),
                Instant::now(),
            ),
        )
        .await
        .expect("bounded");
        assert!(r.is_err());
        drop(listener);
    }

    #[tokio::test]
    async fn refused_connection_is_an_error() {
        let port = free_port();
        let conf = redis_conf(port, "count: 5, time_window: 60, redis_password: s3cr3t-pw");
        let limiter = Limiter::new();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            limiter.acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                CounterKey(1),
                Instant::now(),
            ),
        )
        .await
        .expect("bounded");
        let e = r.expect_err("nothing listens");
        assert!(!e.to_string().contains("s3cr3t-pw"));
        assert!(!format!("{e:?}").contains("s3cr3t-pw"));
    }

    /// Two gateways with `sync_interval` on one Redis: each admits locally until it syncs; in
    /// total at most `count` plus what each admitted within one interval.
    #[tokio::test]
    async fn sync_interval_shares_totals_with_bounded_overadmission() {
        require_redis();
        let server = Server::start_any(false);
        let conf = redis_conf(
            server.port,
            "count: 10, time_window: 60, sync_interval: 0.5",
        );
        let (a, b) = (Limiter::new(), Limiter::new());
        let key = CounterKey(0x5151);
        let admit = |l: &Limiter, n: usize| {
            let mut ok = 0;
            for _ in 0..n {
                let mut f = std::pin::pin!(l.acquire(
                    &conf.policy,
                    conf.count,
                    conf.window_ms,
                    key,
                    Instant::now()
                ));
                let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(q)) => ok += usize::from(q.allowed),
                    other => panic!("sync_interval decisions never wait or fail here: {other:?}"),
                }
            }
            ok
        };
        // Interval 1: both nodes see nothing of each other and admit 8 each.
        let (a1, b1) = (admit(&a, 8), admit(&b, 8));
        assert_eq!((a1, b1), (8, 8));
        a.flush().await; // Redis: 8; A's view 8.
        b.flush().await; // Redis: 16; B's view 16.
        // Interval 2: B knows the limit is reached; A's view is one sync old and admits 2.
        assert_eq!(admit(&b, 5), 0);
        assert_eq!(admit(&a, 5), 2);
        a.flush().await; // Redis: 18; A's view 18.
        assert_eq!(admit(&a, 5), 0);
        assert_eq!(admit(&b, 5), 0);
        let admitted = a1 + b1 + 2;
        let in_redis: usize = server
            .cmd(&["GET", std::str::from_utf8(&key.redis_key()).expect("ascii")])
            .lines()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a count");
        assert_eq!(
            in_redis, admitted,
            "Redis holds exactly the admitted requests"
        );
        // The documented bound: count + each node's admissions within one interval.
        assert!(admitted <= 10 + 8 + 8);
        // Quota headers come from the synced window: Reset counts down from Redis' PTTL.
        let mut f = std::pin::pin!(a.acquire(
            &conf.policy,
            conf.count,
            conf.window_ms,
            key,
            Instant::now()
        ));
        let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Ok(q)) = f.as_mut().poll(cx) else {
            panic!("ready")
        };
        assert_eq!((q.allowed, q.remaining), (false, 0));
        assert!(q.reset_secs >= 1 && q.reset_secs <= 60);
    }

    /// Redis dies under `sync_interval`: the next sync fails, requests then get errors (the
    /// caller applies allow_degradation); a new server comes up, the next sync recovers and
    /// re-sends the deltas it could not push (loading the script the new server lacks).
    #[tokio::test]
    async fn sync_interval_outage_and_recovery() {
        require_redis();
        let port = free_port();
        let server = Server::start(port, false);
        let conf = redis_conf(
            port,
            "count: 10, time_window: 60, sync_interval: 0.5, redis_timeout: 300",
        );
        let limiter = Limiter::new();
        let key = CounterKey(0xdead);
        for _ in 0..3 {
            assert!(
                limiter
                    .acquire(
                        &conf.policy,
                        conf.count,
                        conf.window_ms,
                        key,
                        Instant::now()
                    )
                    .await
                    .expect("local")
                    .allowed
            );
        }
        limiter.flush().await;
        assert_eq!(
            server.cmd(&["GET", std::str::from_utf8(&key.redis_key()).expect("ascii")]),
            "$1\r\n3\r\n"
        );
        assert!(
            limiter
                .acquire(
                    &conf.policy,
                    conf.count,
                    conf.window_ms,
                    key,
                    Instant::now()
                )
                .await
                .expect("local")
                .allowed
        );
        drop(server);
        limiter.flush().await;
        let e = limiter
            .acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                key,
                Instant::now(),
            )
            .await
            .expect_err("last sync failed");
        assert!(e.to_string().contains("last sync failed"), "{e}");
        let server = Server::start(port, false);
        limiter.flush().await;
        let q = limiter
            .acquire(
                &conf.policy,
                conf.count,
                conf.window_ms,
                key,
                Instant::now(),
            )
            .await
            .expect("recovered");
        // The new server had nothing: it now holds the one delta that failed; local view 1 + 1.
        assert_eq!(q.remaining, 8);
        assert_eq!(
            server.cmd(&["GET", std::str::from_utf8(&key.redis_key()).expect("ascii")]),
            "$1\r\n1\r\n"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_cluster_counts_across_slots() {
        require_redis();
        let servers: Vec<Server> = (0..3).map(|_| Server::start_any(true)).collect();
        let addrs: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        wait_until("the cluster is ok on every node", || {
            servers
                .iter()
                .all(|s| s.cmd(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        let nodes = addrs
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let plain = lc(&format!(
            "{{count: 3, time_window: 60, policy: redis-cluster, redis_cluster_name: test, \
             redis_cluster_nodes: [{nodes}], redis_timeout: 2000}}"
        ));
        let limiter = Limiter::new();
        // Many keys land on all three masters.
        for k in 0..30u128 {
            for i in 0..4u64 {
                let q = limiter
                    .acquire(
                        &plain.policy,
                        plain.count,
                        plain.window_ms,
                        CounterKey(k),
                        Instant::now(),
                    )
                    .await
                    .expect("cluster answers");
                assert_eq!(q.allowed, i < 3, "key {k} request {i}");
                assert_eq!(q.remaining, 2u64.saturating_sub(i));
            }
        }
        let synced = lc(&format!(
            "{{count: 3, time_window: 60, policy: redis-cluster, redis_cluster_name: test, \
             redis_cluster_nodes: [{nodes}], sync_interval: 1}}"
        ));
        for k in 100..130u128 {
            assert!(
                limiter
                    .acquire(
                        &synced.policy,
                        synced.count,
                        synced.window_ms,
                        CounterKey(k),
                        Instant::now()
                    )
                    .await
                    .expect("local")
                    .allowed
            );
        }
        limiter.flush().await;
        let mut total = 0;
        for s in &servers {
            let n: usize = s
                .cmd(&["DBSIZE"])
                .trim_start_matches(':')
                .trim()
                .parse()
                .expect("int");
            assert!(n > 0, "every master holds some keys");
            total += n;
        }
        assert_eq!(total, 60);
    }
}

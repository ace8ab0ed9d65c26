//! limit-count: fixed-window request quotas, counted locally or in Redis.
//!
//! This file owns the plugin's raw conf ([`LimitCountConf`]), its validation and compiled form
//! ([`compile_limit_count`] → [`LimitCount`]), the counting key ([`KeySpec`], resolved per
//! request from [`KeyVars`]), and the instance the pipeline runs ([`LimitCountPlugin`]). The
//! counters themselves live in [`crate::limiter::Limiter`], which outlives config snapshots.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use log::warn;
use pingora_http::ResponseHeader;
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};

use super::shape::{LazyView, Plugin, RequestView, State, Step};
use crate::addr::ip_str;
use crate::headers::{Head, number_value, write};
use crate::limiter::{
    CounterKey, KeyBuilder, LimitPolicy, LimiterError, LocalPrefix, Quota, RedisSettings,
    RedisTarget,
};
use crate::reject::Reject;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    #[default]
    Var,
    VarCombination,
    Constant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    Local,
    Redis,
    RedisCluster,
    /// APISIX 3.18; refused by [`compile_limit_count`].
    RedisSentinel,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Var => "var",
            KeyType::VarCombination => "var_combination",
            KeyType::Constant => "constant",
        }
    }
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Local => "local",
            Policy::Redis => "redis",
            Policy::RedisCluster => "redis-cluster",
            Policy::RedisSentinel => "redis-sentinel",
        }
    }

    /// Whether the counters live in Redis (the policies tollgate builds).
    fn is_redis(self) -> bool {
        matches!(self, Policy::Redis | Policy::RedisCluster)
    }
}

/// APISIX 3.18 `window_type`; only `fixed` is supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowType {
    #[default]
    Fixed,
    Sliding,
}

/// The plugin conf as written. `Debug` never shows `redis_password`.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCountConf {
    pub count: Option<u64>,
    pub time_window: Option<u64>,
    pub key_type: Option<KeyType>,
    pub key: Option<String>,
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
    pub show_limit_quota_header: Option<bool>,
    pub group: Option<String>,
    pub policy: Option<Policy>,
    pub allow_degradation: Option<bool>,
    pub sync_interval: Option<f64>,
    pub window_type: Option<WindowType>,
    /// APISIX 3.16 multi-rule form; refused as not supported.
    pub rules: Option<IgnoredAny>,
    pub redis_host: Option<String>,
    pub redis_port: Option<u16>,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    pub redis_database: Option<u32>,
    pub redis_timeout: Option<u64>,
    pub redis_ssl: Option<bool>,
    pub redis_ssl_verify: Option<bool>,
    pub redis_keepalive_timeout: Option<u64>,
    pub redis_keepalive_pool: Option<u32>,
    pub redis_cluster_nodes: Option<Vec<String>>,
    pub redis_cluster_name: Option<String>,
    pub redis_cluster_ssl: Option<bool>,
    pub redis_cluster_ssl_verify: Option<bool>,
}

impl fmt::Debug for LimitCountConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            count,
            time_window,
            key_type,
            key,
            rejected_code,
            rejected_msg,
            show_limit_quota_header,
            group,
            policy,
            allow_degradation,
            sync_interval,
            window_type,
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
        } = self;
        f.debug_struct("LimitCountConf")
            .field("count", count)
            .field("time_window", time_window)
            .field("key_type", key_type)
            .field("key", key)
            .field("rejected_code", rejected_code)
            .field("rejected_msg", rejected_msg)
            .field("show_limit_quota_header", show_limit_quota_header)
            .field("group", group)
            .field("policy", policy)
            .field("allow_degradation", allow_degradation)
            .field("sync_interval", sync_interval)
            .field("window_type", window_type)
            .field("rules", &rules.map(|_| "..."))
            .field("redis_host", redis_host)
            .field("redis_port", redis_port)
            .field("redis_username", redis_username)
            .field("redis_password", &redis_password.as_ref().map(|_| "***"))
            .field("redis_database", redis_database)
            .field("redis_timeout", redis_timeout)
            .field("redis_ssl", redis_ssl)
            .field("redis_ssl_verify", redis_ssl_verify)
            .field("redis_keepalive_timeout", redis_keepalive_timeout)
            .field("redis_keepalive_pool", redis_keepalive_pool)
            .field("redis_cluster_nodes", redis_cluster_nodes)
            .field("redis_cluster_name", redis_cluster_name)
            .field("redis_cluster_ssl", redis_cluster_ssl)
            .field("redis_cluster_ssl_verify", redis_cluster_ssl_verify)
            .finish()
    }
}

/// The rejection body when `rejected_msg` is unset (APISIX sends nginx's HTML page instead).
pub(crate) const DEFAULT_REJECTED_MSG: &str = "API rate limit exceeded";
/// Upper bound on `time_window`, so that milliseconds never overflow (about 136 years).
const MAX_TIME_WINDOW: u64 = u32::MAX as u64;

/// A compiled limit-count conf: immutable, shared by every request of the resource that holds it.
#[derive(Debug, Clone)]
pub struct LimitCount {
    /// Stable hash of the conf (fixed seed, same in every process and after every reload);
    /// part of each counter key, so a changed conf restarts its counters from zero.
    /// `redis_password` is left out: rotating it keeps the counts.
    pub conf_hash: u64,
    pub count: u64,
    /// Seconds.
    pub time_window: u64,
    pub window_ms: u64,
    pub key: KeySpec,
    /// `rejected_code` with `{"error_msg":"<rejected_msg>"}\n`.
    pub rejection: Reject,
    pub show_limit_quota_header: bool,
    pub allow_degradation: bool,
    pub policy: LimitPolicy,
    /// With a group, every conf naming it shares the counters (the owner is the group).
    pub group: Option<Arc<str>>,
}

impl LimitCount {
    /// The counter of this request (see [`CounterKey::builder`]), and whether the key fell back
    /// to `remote_addr`.
    pub fn counter_key(&self, owner: &str, vars: &KeyVars<'_>) -> (CounterKey, KeySource) {
        let stable = !matches!(self.policy, LimitPolicy::Local);
        let mut b = CounterKey::builder(stable, owner, self.group.as_deref(), self.conf_hash);
        let src = self.key.write(vars, |bytes| b.update(bytes));
        (b.finish(), src)
    }

    /// The 500 answered when the backend fails and `allow_degradation` is off.
    pub fn backend_failure() -> Reject {
        Reject::new(
            500,
            bytes::Bytes::from_static(b"{\"error_msg\":\"failed to limit count\"}\n"),
        )
    }
}

/// A compiled limit-count and the resource that holds it (`route:<id>`, `service:<id>`,
/// `consumer:<name>`, `global_rule:<id>`...): the counters belong to that owner, or to the conf's
/// `group`.
#[derive(Debug)]
pub(crate) struct LimitCountPlugin {
    pub owner: Arc<str>,
    pub conf: LimitCount,
    /// Set once the "key is empty" warning was logged for this instance.
    fallback_warned: AtomicBool,
    /// The local policy's counter key with owner (or group) and conf hash already hashed.
    local_prefix: Option<LocalPrefix>,
    /// `X-RateLimit-Limit`, the same on every answer.
    limit_value: HeaderValue,
    /// Whether the key reads `remote_addr` / `server_addr` (only then are they formatted).
    reads_remote: bool,
    reads_server: bool,
}

impl LimitCountPlugin {
    pub(crate) fn new(owner: &str, conf: LimitCount) -> LimitCountPlugin {
        let local_prefix = matches!(conf.policy, LimitPolicy::Local)
            .then(|| LocalPrefix::new(owner, conf.group.as_deref(), conf.conf_hash));
        LimitCountPlugin {
            owner: owner.into(),
            limit_value: HeaderValue::from(conf.count),
            reads_remote: conf.key.reads(|v| matches!(v, KeyVar::RemoteAddr)),
            reads_server: conf.key.reads(|v| matches!(v, KeyVar::ServerAddr)),
            conf,
            fallback_warned: AtomicBool::new(false),
            local_prefix,
        }
    }

    /// [`LimitCount::counter_key`], from the instance's [`LocalPrefix`] for the local policy.
    fn counter_key(&self, vars: &KeyVars<'_>) -> (CounterKey, KeySource) {
        match &self.local_prefix {
            Some(prefix) => {
                let mut b = KeyBuilder::local(prefix);
                let src = self.conf.key.write(vars, |bytes| b.update(bytes));
                (b.finish(), src)
            }
            None => self.conf.counter_key(&self.owner, vars),
        }
    }

    /// The counter of this request: [`LimitCount::counter_key`] over [`KeyVars::of`], except
    /// that the addresses are formatted only for a key that reads them (a `consumer_name` key
    /// does not), or when the key falls back to the client's address.
    fn request_key(&self, r: &RequestView<'_>) -> (CounterKey, KeySource) {
        let (remote, server) = (self.reads_remote, self.reads_server);
        let mut bufs = [[0u8; 46]; 2];
        let vars = KeyVars::of_only(r, &mut bufs, remote, server);
        match self.counter_key(&vars) {
            (_, KeySource::FallbackRemoteAddr) if !remote => {
                let mut buf = [0u8; 46];
                let vars = KeyVars {
                    remote_addr: ip_str(r.remote, &mut buf),
                    ..vars
                };
                self.counter_key(&vars)
            }
            k => k,
        }
    }
}

/// Requests let through by `allow_degradation` while the counter backend failed, since start.
static DEGRADED: AtomicU64 = AtomicU64::new(0);

/// Requests let through by `allow_degradation` since start (`tollgate_limit_count_degraded_total`).
pub(crate) fn degraded_total() -> u64 {
    DEGRADED.load(Ordering::Relaxed)
}

impl LimitCountPlugin {
    /// [`Self::request_key`], warning (once per instance) when it fell back to the client's
    /// address.
    fn counter(&self, r: &RequestView<'_>) -> CounterKey {
        let (key, source) = self.request_key(r);
        warn_fallback(source, &self.fallback_warned, "limit-count", r.route_id);
        key
    }

    /// The request step's answer from the counter's.
    fn decide(
        &self,
        quota: Result<Quota, LimiterError>,
        r: &RequestView<'_>,
        state: &mut State,
    ) -> Step {
        let lc = &self.conf;
        match quota {
            Ok(q) if q.allowed => {
                if lc.show_limit_quota_header {
                    *state = Some(Box::new(q));
                }
                Step::Continue
            }
            Ok(q) => {
                // The quota headers come from `response`, which runs on the rejection too, in
                // the order the instances ran: the last to count sets them, as in APISIX.
                if lc.show_limit_quota_header {
                    *state = Some(Box::new(q));
                }
                Step::Respond(lc.rejection.clone())
            }
            Err(e) if lc.allow_degradation => {
                crate::limited_log!(
                    log::Level::Warn,
                    "route {}: limit-count: {e}; allow_degradation lets the request through",
                    r.route_id
                );
                DEGRADED.fetch_add(1, Ordering::Relaxed);
                Step::Continue
            }
            Err(e) => {
                crate::limited_log!(log::Level::Warn, "route {}: limit-count: {e}", r.route_id);
                Step::Respond(LimitCount::backend_failure())
            }
        }
    }
}

#[async_trait]
impl Plugin for LimitCountPlugin {
    fn name(&self) -> &'static str {
        "limit-count"
    }

    fn priority(&self) -> i32 {
        1002
    }

    fn request(&self, r: &RequestView<'_>, state: &mut State) -> Option<Step> {
        let lc = &self.conf;
        let key = self.counter(r);
        let quota =
            r.limiter
                .acquire_now(&lc.policy, lc.count, lc.window_ms, key, Instant::now())?;
        Some(self.decide(quota, r, state))
    }

    async fn request_io(&self, r: &RequestView<'_>, state: &mut State) -> Step {
        let lc = &self.conf;
        let key = self.counter(r);
        let quota = r
            .limiter
            .acquire(&lc.policy, lc.count, lc.window_ms, key, Instant::now())
            .await;
        self.decide(quota, r, state)
    }

    fn edits_response(&self) -> bool {
        true
    }

    /// The quota headers, on every answer of a request that was counted (the upstream's, a
    /// 429/503 of its own or a later plugin's, a 502).
    fn response(
        &self,
        resp: &mut Head<'_, ResponseHeader>,
        _r: &LazyView<'_>,
        state: &mut State,
    ) -> pingora_core::Result<()> {
        if let Some(q) = state.as_ref().and_then(|s| s.downcast_ref::<Quota>()) {
            let limit = if q.limit == self.conf.count {
                self.limit_value.clone()
            } else {
                HeaderValue::from(q.limit)
            };
            resp.set_all([
                (&write::X_RATELIMIT_LIMIT, limit),
                (&write::X_RATELIMIT_REMAINING, number_value(q.remaining)),
                (&write::X_RATELIMIT_RESET, number_value(q.reset_secs)),
            ])?;
        }
        Ok(())
    }
}

/// How the counting key is built per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// `key_type: var`.
    Var(KeyVar),
    /// `key_type: var_combination`: literal text and variables, concatenated.
    Template(Box<[KeyPart]>),
    /// `key_type: constant`.
    Constant(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Literal(Box<str>),
    Var(KeyVar),
}

/// A variable a key can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVar {
    RemoteAddr,
    ServerAddr,
    ConsumerName,
    ConsumerGroupId,
    RouteId,
    ServiceId,
    /// `http_<name>`: the first value of that request header.
    Header(HeaderName),
    /// `arg_<name>`: the first value of that query argument, decoded, as APISIX's
    /// `ctx.var.arg_<name>` reads it ([`crate::query::first`]).
    Arg(Box<str>),
}

/// The request facts a key can read, filled by the pipeline per request.
#[derive(Debug, Clone, Copy)]
pub struct KeyVars<'a> {
    pub remote_addr: &'a str,
    pub server_addr: &'a str,
    pub consumer_name: Option<&'a str>,
    pub consumer_group_id: Option<&'a str>,
    pub route_id: &'a str,
    pub service_id: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
}

impl<'a> KeyVars<'a> {
    /// The key variables of a request; the two addresses are written into `bufs`.
    pub fn of(r: &'a RequestView<'_>, bufs: &'a mut [[u8; 46]; 2]) -> KeyVars<'a> {
        KeyVars::of_only(r, bufs, true, true)
    }

    /// As [`KeyVars::of`], with `remote_addr` and `server_addr` left empty unless asked for.
    pub(crate) fn of_only(
        r: &'a RequestView<'_>,
        bufs: &'a mut [[u8; 46]; 2],
        remote: bool,
        server: bool,
    ) -> KeyVars<'a> {
        let [rb, sb] = bufs;
        KeyVars {
            remote_addr: if remote { ip_str(r.remote, rb) } else { "" },
            server_addr: if server { ip_str(r.local, sb) } else { "" },
            consumer_name: r.consumer,
            consumer_group_id: r.consumer_group,
            route_id: r.route_id,
            service_id: r.service_id,
            headers: &r.req.headers,
            query: r.req.uri.query(),
        }
    }
}

/// Logs once per `warned` flag (one per instance or table) that a request's key resolved to
/// nothing and fell back to the client IP.
pub(crate) fn warn_fallback(source: KeySource, warned: &AtomicBool, plugin: &str, route_id: &str) {
    if source == KeySource::FallbackRemoteAddr && !warned.swap(true, Ordering::Relaxed) {
        warn!("route {route_id}: {plugin} key is empty for a request, using the client IP instead");
    }
}

/// Whether the configured key was used, or the request fell back to `remote_addr` because it
/// resolved to nothing (the caller warns once per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum KeySource {
    Configured,
    FallbackRemoteAddr,
}

const KNOWN_VARS: &str = "remote_addr, server_addr, consumer_name, consumer_group_id, route_id, \
                          service_id, http_<header>, arg_<name>";

impl KeyVar {
    /// Parses a variable name as written without `$`.
    pub fn parse(name: &str) -> Result<KeyVar, String> {
        Ok(match name {
            "remote_addr" => KeyVar::RemoteAddr,
            "server_addr" => KeyVar::ServerAddr,
            "consumer_name" => KeyVar::ConsumerName,
            "consumer_group_id" => KeyVar::ConsumerGroupId,
            "route_id" => KeyVar::RouteId,
            "service_id" => KeyVar::ServiceId,
            _ => {
                if let Some(h) = name.strip_prefix("http_") {
                    let lower: String = h
                        .chars()
                        .map(|c| {
                            if c == '_' {
                                '-'
                            } else {
                                c.to_ascii_lowercase()
                            }
                        })
                        .collect();
                    match HeaderName::from_bytes(lower.as_bytes()) {
                        Ok(n) if !h.is_empty() => KeyVar::Header(n),
                        _ => return Err(format!("`{name}` names no valid header")),
                    }
                } else if let Some(a) = name.strip_prefix("arg_") {
                    if a.is_empty() || a.contains(['&', '=', ' ']) {
                        return Err(format!("`{name}` names no valid query argument"));
                    }
                    KeyVar::Arg(a.into())
                } else if name.starts_with('$') {
                    return Err(format!(
                        "unknown variable `{name}` (with key_type var, write the name without `$`)"
                    ));
                } else {
                    return Err(format!(
                        "unknown variable `{name}`; tollgate knows {KNOWN_VARS}"
                    ));
                }
            }
        })
    }

    /// The variable's value for this request; `None` when unset or empty.
    pub fn resolve<'a>(&'a self, v: &KeyVars<'a>) -> Option<Cow<'a, [u8]>> {
        let value: &[u8] = match self {
            KeyVar::RemoteAddr => v.remote_addr.as_bytes(),
            KeyVar::ServerAddr => v.server_addr.as_bytes(),
            KeyVar::ConsumerName => v.consumer_name?.as_bytes(),
            KeyVar::ConsumerGroupId => v.consumer_group_id?.as_bytes(),
            KeyVar::RouteId => v.route_id.as_bytes(),
            KeyVar::ServiceId => v.service_id?.as_bytes(),
            KeyVar::Header(name) => v.headers.get(name)?.as_bytes(),
            KeyVar::Arg(name) => {
                return match crate::query::first(v.query, name)? {
                    Cow::Borrowed(s) => (!s.is_empty()).then_some(Cow::Borrowed(s.as_bytes())),
                    Cow::Owned(s) => (!s.is_empty()).then_some(Cow::Owned(s.into_bytes())),
                };
            }
        };
        (!value.is_empty()).then_some(Cow::Borrowed(value))
    }
}

impl KeySpec {
    /// Feeds the key's bytes to `out` (possibly in several pieces, never allocating); a key that
    /// resolves to nothing falls back to `remote_addr`.
    pub fn write<F: FnMut(&[u8])>(&self, vars: &KeyVars<'_>, mut out: F) -> KeySource {
        match self {
            KeySpec::Constant(c) => {
                out(c.as_bytes());
                KeySource::Configured
            }
            KeySpec::Var(var) => match var.resolve(vars) {
                Some(value) => {
                    out(&value);
                    KeySource::Configured
                }
                None => {
                    out(vars.remote_addr.as_bytes());
                    KeySource::FallbackRemoteAddr
                }
            },
            KeySpec::Template(parts) => {
                let any = parts
                    .iter()
                    .any(|p| matches!(p, KeyPart::Var(v) if v.resolve(vars).is_some()));
                if !any {
                    out(vars.remote_addr.as_bytes());
                    return KeySource::FallbackRemoteAddr;
                }
                for part in parts.iter() {
                    match part {
                        KeyPart::Literal(s) => out(s.as_bytes()),
                        KeyPart::Var(v) => {
                            if let Some(value) = v.resolve(vars) {
                                out(&value);
                            }
                        }
                    }
                }
                KeySource::Configured
            }
        }
    }

    /// Whether the key reads a variable `f` picks.
    pub(crate) fn reads(&self, f: impl Fn(&KeyVar) -> bool) -> bool {
        match self {
            KeySpec::Var(v) => f(v),
            KeySpec::Template(parts) => parts.iter().any(|p| matches!(p, KeyPart::Var(v) if f(v))),
            KeySpec::Constant(_) => false,
        }
    }

    /// The key as one byte string (allocates; for logs and tests).
    pub fn value(&self, vars: &KeyVars<'_>) -> (Vec<u8>, KeySource) {
        let mut buf = Vec::new();
        let src = self.write(vars, |b| buf.extend_from_slice(b));
        (buf, src)
    }
}

/// Parses a `var_combination` template as APISIX's `resolve_var` does: `$name` or `${name}`
/// (`name` is `[A-Za-z0-9_]+`), a `$` preceded by `\` stays literal.
pub(crate) fn parse_template(tpl: &str) -> Result<Box<[KeyPart]>, String> {
    let b = tpl.as_bytes();
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && (i == 0 || b[i - 1] != b'\\') {
            let mut j = i + 1;
            if b.get(j) == Some(&b'{') {
                j += 1;
            }
            let name_start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > name_start {
                let name = &tpl[name_start..j];
                if b.get(j) == Some(&b'}') {
                    j += 1;
                }
                if lit_start < i {
                    parts.push(KeyPart::Literal(tpl[lit_start..i].into()));
                }
                parts.push(KeyPart::Var(KeyVar::parse(name)?));
                lit_start = j;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    if lit_start < b.len() {
        parts.push(KeyPart::Literal(tpl[lit_start..].into()));
    }
    if !parts.iter().any(|p| matches!(p, KeyPart::Var(_))) {
        return Err(format!(
            "`{tpl}` names no variable (write `$name`), so every request would fall back to \
             remote_addr; use key_type constant for a fixed key"
        ));
    }
    Ok(parts.into_boxed_slice())
}

/// Parses `host:port` (`[v6]:port` too); the port is required.
fn parse_host_port(s: &str) -> Option<(Box<str>, u16)> {
    let (host, port) = crate::addr::split_host_port(s).ok()?;
    let port = port.filter(|p| *p != 0)?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    Some((host.into(), port))
}

/// Hashes fields into a stable digest: tagged, length-prefixed, fixed encoding.
struct StableHash(Sha256);

impl StableHash {
    fn new(domain: &[u8]) -> StableHash {
        let mut h = StableHash(Sha256::new());
        h.bytes("domain", domain);
        h
    }
    fn bytes(&mut self, tag: &str, v: &[u8]) {
        self.0.update((tag.len() as u32).to_le_bytes());
        self.0.update(tag.as_bytes());
        self.0.update((v.len() as u64).to_le_bytes());
        self.0.update(v);
    }
    fn u64(&mut self, tag: &str, v: u64) {
        self.bytes(tag, &v.to_le_bytes());
    }
    fn opt_str(&mut self, tag: &str, v: Option<&str>) {
        match v {
            Some(s) => self.bytes(tag, s.as_bytes()),
            None => self.u64(tag, u64::MAX),
        }
    }
    fn finish(self) -> u64 {
        let d = self.0.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b)
    }
}

/// Per-process seed for [`RedisSettings::backend_id`].
static BACKEND_SEED: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// Collects `(field, message)` errors of one conf.
type ErrFn<'e> = dyn FnMut(&str, String) + 'e;

/// Validates a limit-count conf as APISIX does and builds its compiled form. Every error is
/// kept, as `(field relative to the plugin, message)`; messages never contain the password.
pub fn compile_limit_count(conf: &LimitCountConf) -> Result<LimitCount, Vec<(String, String)>> {
    let LimitCountConf {
        count,
        time_window,
        key_type,
        key,
        rejected_code,
        rejected_msg,
        show_limit_quota_header,
        group,
        policy,
        allow_degradation,
        sync_interval,
        window_type,
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
    } = conf;
    let redis = RedisFields {
        host: redis_host,
        port: redis_port,
        username: redis_username,
        password: redis_password,
        database: redis_database,
        timeout: redis_timeout,
        ssl: redis_ssl,
        ssl_verify: redis_ssl_verify,
        keepalive_timeout: redis_keepalive_timeout,
        keepalive_pool: redis_keepalive_pool,
        cluster_nodes: redis_cluster_nodes,
        cluster_name: redis_cluster_name,
        cluster_ssl: redis_cluster_ssl,
        cluster_ssl_verify: redis_cluster_ssl_verify,
    };
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut push = |field: &str, msg: String| errs.push((field.to_owned(), msg));
    let err: &mut ErrFn<'_> = &mut push;

    let (count, time_window) = quota(*count, *time_window, rules.is_some(), err);
    if *window_type == Some(WindowType::Sliding) {
        err(
            "window_type",
            "`sliding` is not supported by tollgate; use `fixed`".into(),
        );
    }
    let key_type = key_type.unwrap_or_default();
    let key_text = key.as_deref().unwrap_or("remote_addr");
    let key_spec = key_spec(key_type, key_text, err);
    let rejected_code = rejected_code.unwrap_or(503);
    if !(200..=599).contains(&rejected_code) {
        err(
            "rejected_code",
            format!("must be between 200 and 599, got {rejected_code}"),
        );
    }
    if rejected_msg.as_deref() == Some("") {
        err("rejected_msg", "must not be empty".into());
    }
    let msg = rejected_msg
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_REJECTED_MSG);
    if group.as_deref() == Some("") {
        err("group", "must not be empty".into());
    }

    let policy = policy.unwrap_or_default();
    if policy == Policy::RedisSentinel {
        err(
            "policy",
            "`redis-sentinel` is not supported by tollgate; use redis or redis-cluster".into(),
        );
    }
    redis.check_policy(policy, err);
    let timeout_ms = redis.connection(err);
    let sync_ms = sync_interval_ms(*sync_interval, policy.is_redis(), time_window, err);
    let target = redis.target(policy, err);
    if !errs.is_empty() {
        return Err(errs);
    }

    // Everything that changes behaviour, normalised with defaults; never the password.
    let mut h = StableHash::new(b"tollgate limit-count conf v1");
    h.u64("count", count);
    h.u64("time_window", time_window);
    h.bytes("key_type", key_type.as_str().as_bytes());
    h.bytes("key", key_text.as_bytes());
    h.u64("rejected_code", u64::from(rejected_code));
    h.bytes("rejected_msg", msg.as_bytes());
    h.u64(
        "show_limit_quota_header",
        u64::from(show_limit_quota_header.unwrap_or(true)),
    );
    h.opt_str("group", group.as_deref());
    h.bytes("policy", policy.as_str().as_bytes());
    h.u64(
        "allow_degradation",
        u64::from(allow_degradation.unwrap_or(false)),
    );
    h.u64("sync_interval_ms", sync_ms.unwrap_or(u64::MAX));
    if policy.is_redis() {
        redis.hash_into(&mut h, timeout_ms, target.as_ref());
    }
    let conf_hash = h.finish();

    Ok(LimitCount {
        conf_hash,
        count,
        time_window,
        window_ms: time_window * 1000,
        key: key_spec,
        rejection: Reject::new(rejected_code, Reject::json_body("error_msg", msg)),
        show_limit_quota_header: show_limit_quota_header.unwrap_or(true),
        allow_degradation: allow_degradation.unwrap_or(false),
        policy: match target {
            None => LimitPolicy::Local,
            Some(target) => {
                LimitPolicy::Redis(Arc::new(redis_settings(target, timeout_ms, sync_ms)))
            }
        },
        group: group.as_deref().map(Arc::from),
    })
}

/// `count` and `time_window` (`rules`, refused, would replace them).
fn quota(
    count: Option<u64>,
    time_window: Option<u64>,
    rules: bool,
    err: &mut ErrFn<'_>,
) -> (u64, u64) {
    if rules {
        err(
            "rules",
            "not supported by tollgate; use count and time_window".into(),
        );
    }
    let count = match count {
        None if !rules => {
            err("count", "required, an integer greater than 0".into());
            0
        }
        Some(0) => {
            err("count", "must be an integer greater than 0, got 0".into());
            0
        }
        c => c.unwrap_or(0),
    };
    let time_window = match time_window {
        None if !rules => {
            err(
                "time_window",
                "required, an integer number of seconds greater than 0".into(),
            );
            0
        }
        Some(0) => {
            err(
                "time_window",
                "must be an integer greater than 0, got 0".into(),
            );
            0
        }
        Some(t) if t > MAX_TIME_WINDOW => {
            err(
                "time_window",
                format!("must be at most {MAX_TIME_WINDOW} seconds, got {t}"),
            );
            0
        }
        t => t.unwrap_or(0),
    };
    (count, time_window)
}

/// The counter key of `key_type` and `key`.
fn key_spec(key_type: KeyType, key_text: &str, err: &mut ErrFn<'_>) -> KeySpec {
    let spec = match key_type {
        KeyType::Var => KeyVar::parse(key_text).map(KeySpec::Var),
        KeyType::VarCombination => parse_template(key_text).map(KeySpec::Template),
        KeyType::Constant if key_text.is_empty() => Err("must not be empty".to_owned()),
        KeyType::Constant => Ok(KeySpec::Constant(key_text.into())),
    };
    spec.unwrap_or_else(|m| {
        err("key", m);
        KeySpec::Var(KeyVar::RemoteAddr)
    })
}

/// `sync_interval` in milliseconds (`-1`, APISIX's default, means none).
fn sync_interval_ms(
    sync_interval: Option<f64>,
    is_redis: bool,
    time_window: u64,
    err: &mut ErrFn<'_>,
) -> Option<u64> {
    match sync_interval {
        None => None,
        Some(-1.0) => None,
        Some(_) if !is_redis => {
            err(
                "sync_interval",
                "only used with policy redis or redis-cluster".into(),
            );
            None
        }
        Some(s) if !s.is_finite() || s < 0.1 => {
            err(
                "sync_interval",
                format!("must be at least 0.1 (seconds), got {s}"),
            );
            None
        }
        Some(s) if time_window > 0 && s >= time_window as f64 => {
            err(
                "sync_interval",
                format!("must be less than time_window ({time_window}), got {s}"),
            );
            None
        }
        Some(s) => Some((s * 1000.0).round() as u64),
    }
}

/// The `redis_*` fields of a conf.
struct RedisFields<'a> {
    host: &'a Option<String>,
    port: &'a Option<u16>,
    username: &'a Option<String>,
    password: &'a Option<String>,
    database: &'a Option<u32>,
    timeout: &'a Option<u64>,
    ssl: &'a Option<bool>,
    ssl_verify: &'a Option<bool>,
    keepalive_timeout: &'a Option<u64>,
    keepalive_pool: &'a Option<u32>,
    cluster_nodes: &'a Option<Vec<String>>,
    cluster_name: &'a Option<String>,
    cluster_ssl: &'a Option<bool>,
    cluster_ssl_verify: &'a Option<bool>,
}

impl RedisFields<'_> {
    /// Fields that belong to another policy: refused rather than silently unused (a
    /// `redis_host` without `policy: redis` would otherwise count per node). TLS is refused.
    fn check_policy(&self, policy: Policy, err: &mut ErrFn<'_>) {
        let single_only: [(&str, bool); 6] = [
            ("redis_host", self.host.is_some()),
            ("redis_port", self.port.is_some()),
            ("redis_username", self.username.is_some()),
            ("redis_database", self.database.is_some()),
            ("redis_ssl", self.ssl.is_some()),
            ("redis_ssl_verify", self.ssl_verify.is_some()),
        ];
        let cluster_only: [(&str, bool); 4] = [
            ("redis_cluster_nodes", self.cluster_nodes.is_some()),
            ("redis_cluster_name", self.cluster_name.is_some()),
            ("redis_cluster_ssl", self.cluster_ssl.is_some()),
            (
                "redis_cluster_ssl_verify",
                self.cluster_ssl_verify.is_some(),
            ),
        ];
        let shared: [(&str, bool); 4] = [
            ("redis_password", self.password.is_some()),
            ("redis_timeout", self.timeout.is_some()),
            ("redis_keepalive_timeout", self.keepalive_timeout.is_some()),
            ("redis_keepalive_pool", self.keepalive_pool.is_some()),
        ];
        let misplaced = |list: &[(&str, bool)], msg: &str, err: &mut ErrFn<'_>| {
            for (f, set) in list {
                if *set {
                    err(f, msg.into());
                }
            }
        };
        if policy != Policy::Redis {
            misplaced(&single_only, "only used with policy redis", err);
        }
        if policy != Policy::RedisCluster {
            misplaced(&cluster_only, "only used with policy redis-cluster", err);
        }
        if !policy.is_redis() {
            misplaced(&shared, "only used with policy redis or redis-cluster", err);
        }
        for (f, v) in [
            ("redis_ssl", self.ssl),
            ("redis_ssl_verify", self.ssl_verify),
            ("redis_cluster_ssl", self.cluster_ssl),
            ("redis_cluster_ssl_verify", self.cluster_ssl_verify),
        ] {
            if *v == Some(true) {
                err(f, "TLS to Redis is not supported by tollgate".into());
            }
        }
    }

    /// Checks the connection fields; returns `redis_timeout` in milliseconds.
    fn connection(&self, err: &mut ErrFn<'_>) -> u64 {
        let timeout_ms = self.timeout.unwrap_or(1000);
        if timeout_ms == 0 {
            err("redis_timeout", "must be at least 1 (milliseconds)".into());
        }
        if self.keepalive_timeout.is_some_and(|t| t < 1000) {
            err(
                "redis_keepalive_timeout",
                "must be at least 1000 (milliseconds)".into(),
            );
        }
        if *self.keepalive_pool == Some(0) {
            err("redis_keepalive_pool", "must be at least 1".into());
        }
        timeout_ms
    }

    /// Where a Redis policy counts; `None` for the local policy.
    fn target(&self, policy: Policy, err: &mut ErrFn<'_>) -> Option<RedisTarget> {
        let password = self
            .password
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| Secret::new(p.as_bytes()));
        match policy {
            Policy::Redis => {
                let host = match self.host.as_deref() {
                    None => {
                        err("redis_host", "required with policy redis".into());
                        ""
                    }
                    Some(h) if h.len() < 2 => {
                        err("redis_host", "must be at least 2 characters".into());
                        ""
                    }
                    Some(h) if h.contains(|c: char| c.is_whitespace() || c == '/') => {
                        err("redis_host", format!("`{h}` is not a host name or address"));
                        ""
                    }
                    Some(h) => h,
                };
                if *self.port == Some(0) {
                    err("redis_port", "must be between 1 and 65535".into());
                }
                if self.username.as_deref() == Some("") {
                    err("redis_username", "must not be empty".into());
                }
                Some(RedisTarget::Single {
                    host: host.into(),
                    port: self.port.unwrap_or(6379),
                    username: self
                        .username
                        .as_deref()
                        .filter(|u| !u.is_empty())
                        .map(Into::into),
                    password,
                    database: self.database.unwrap_or(0),
                })
            }
            Policy::RedisCluster => {
                let mut nodes = Vec::new();
                match self.cluster_nodes {
                    None => err(
                        "redis_cluster_nodes",
                        "required with policy redis-cluster".into(),
                    ),
                    Some(list) if list.is_empty() => err(
                        "redis_cluster_nodes",
                        "must list at least one `host:port`".into(),
                    ),
                    Some(list) => {
                        for (i, n) in list.iter().enumerate() {
                            match parse_host_port(n) {
                                Some(hp) if (2..=100).contains(&n.len()) => nodes.push(hp),
                                _ => err(
                                    &format!("redis_cluster_nodes[{i}]"),
                                    format!("must be `host:port` (2 to 100 characters), got `{n}`"),
                                ),
                            }
                        }
                    }
                }
                let name = match self.cluster_name.as_deref() {
                    None => {
                        err(
                            "redis_cluster_name",
                            "required with policy redis-cluster".into(),
                        );
                        ""
                    }
                    Some("") => {
                        err("redis_cluster_name", "must not be empty".into());
                        ""
                    }
                    Some(n) => n,
                };
                Some(RedisTarget::Cluster {
                    name: name.into(),
                    nodes: nodes.into_boxed_slice(),
                    password,
                })
            }
            Policy::Local | Policy::RedisSentinel => None,
        }
    }

    /// The Redis part of the conf hash (never the password).
    fn hash_into(&self, h: &mut StableHash, timeout_ms: u64, target: Option<&RedisTarget>) {
        h.u64("redis_timeout", timeout_ms);
        h.u64(
            "redis_keepalive_timeout",
            self.keepalive_timeout.unwrap_or(10_000),
        );
        h.u64(
            "redis_keepalive_pool",
            u64::from(self.keepalive_pool.unwrap_or(100)),
        );
        match target {
            Some(RedisTarget::Single {
                host,
                port,
                username,
                database,
                ..
            }) => {
                h.bytes("redis_host", host.as_bytes());
                h.u64("redis_port", u64::from(*port));
                h.opt_str("redis_username", username.as_deref());
                h.u64("redis_database", u64::from(*database));
            }
            Some(RedisTarget::Cluster { name, nodes, .. }) => {
                h.bytes("redis_cluster_name", name.as_bytes());
                h.u64("redis_cluster_nodes", nodes.len() as u64);
                for (host, port) in nodes.iter() {
                    h.bytes("node_host", host.as_bytes());
                    h.u64("node_port", u64::from(*port));
                }
            }
            None => {}
        }
    }
}

/// A Redis policy's settings: its target, its label for metrics and logs (never the password),
/// and the id of the connection it shares with every conf of the same target.
fn redis_settings(target: RedisTarget, timeout_ms: u64, sync_ms: Option<u64>) -> RedisSettings {
    let label: Arc<str> = match &target {
        RedisTarget::Single {
            host,
            port,
            database,
            ..
        } if host.contains(':') => format!("[{host}]:{port}/{database}").into(),
        RedisTarget::Single {
            host,
            port,
            database,
            ..
        } => format!("{host}:{port}/{database}").into(),
        RedisTarget::Cluster { name, .. } => format!("cluster {name}").into(),
    };
    let backend_id = {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut s = BACKEND_SEED.build_hasher();
        match &target {
            RedisTarget::Single {
                host,
                port,
                username,
                password,
                database,
            } => {
                (0u8, host, port, username, database).hash(&mut s);
                password.as_ref().map(Secret::expose).hash(&mut s);
            }
            RedisTarget::Cluster {
                name,
                nodes,
                password,
            } => {
                (1u8, name, nodes).hash(&mut s);
                password.as_ref().map(Secret::expose).hash(&mut s);
            }
        }
        timeout_ms.hash(&mut s);
        s.finish()
    };
    RedisSettings {
        target,
        timeout: Duration::from_millis(timeout_ms),
        sync_interval: sync_ms.map(Duration::from_millis),
        backend_id,
        label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(yaml: &str) -> LimitCountConf {
        serde_yaml::from_str(yaml).expect("valid yaml")
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        match compile_limit_count(&conf(yaml)) {
            Ok(_) => panic!("expected errors for {yaml}"),
            Err(e) => e,
        }
    }

    fn ok(yaml: &str) -> LimitCount {
        compile_limit_count(&conf(yaml)).unwrap_or_else(|e| panic!("{yaml}: {e:?}"))
    }

    fn has(errs: &[(String, String)], field: &str, needle: &str) -> bool {
        errs.iter().any(|(f, m)| f == field && m.contains(needle))
    }

    #[test]
    fn defaults() {
        let lc = ok("{count: 2, time_window: 5}");
        assert_eq!(lc.count, 2);
        assert_eq!(lc.window_ms, 5000);
        assert_eq!(lc.key, KeySpec::Var(KeyVar::RemoteAddr));
        assert_eq!(lc.rejection.status, 503);
        assert_eq!(
            &lc.rejection.body[..],
            b"{\"error_msg\":\"API rate limit exceeded\"}\n"
        );
        assert!(lc.show_limit_quota_header);
        assert!(!lc.allow_degradation);
        assert!(matches!(lc.policy, LimitPolicy::Local));
        assert!(lc.group.is_none());
        let lc = ok("{count: 1, time_window: 1, rejected_code: 429, rejected_msg: 'a/b \"q\"'}");
        assert_eq!(lc.rejection.status, 429);
        assert_eq!(
            &lc.rejection.body[..],
            b"{\"error_msg\":\"a/b \\\"q\\\"\"}\n"
        );
    }

    #[test]
    fn required_and_ranges() {
        let e = errors("{}");
        assert!(has(&e, "count", "required, an integer greater than 0"));
        assert!(has(&e, "time_window", "required"));
        let e = errors("{count: 0, time_window: 0, rejected_code: 600, rejected_msg: ''}");
        assert!(has(&e, "count", "greater than 0"));
        assert!(has(&e, "time_window", "greater than 0"));
        assert!(has(&e, "rejected_code", "between 200 and 599, got 600"));
        assert!(has(&e, "rejected_msg", "must not be empty"));
        assert_eq!(e.len(), 4);
        let e = errors("{count: 1, time_window: 1, rejected_code: 199, group: ''}");
        assert!(has(&e, "rejected_code", "got 199"));
        assert!(has(&e, "group", "must not be empty"));
        ok("{count: 1, time_window: 1, rejected_code: 200}");
        ok("{count: 1, time_window: 1, rejected_code: 599}");
        assert!(serde_yaml::from_str::<LimitCountConf>("{count: -1}").is_err());
        assert!(serde_yaml::from_str::<LimitCountConf>("{cont: 1}").is_err());
    }

    #[test]
    fn unsupported_apisix_fields() {
        let e = errors("{count: 1, time_window: 1, window_type: sliding}");
        assert!(has(&e, "window_type", "not supported by tollgate"));
        ok("{count: 1, time_window: 1, window_type: fixed}");
        let e = errors("{rules: [{count: 1, time_window: 1, key: remote_addr}]}");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(has(&e, "rules", "not supported by tollgate"));
        let e = errors("{count: 1, time_window: 1, policy: redis-sentinel}");
        assert!(has(&e, "policy", "not supported by tollgate"));
        let e =
            errors("{count: 1, time_window: 1, policy: redis, redis_host: h1, redis_ssl: true}");
        assert!(has(&e, "redis_ssl", "TLS to Redis is not supported"));
    }

    #[test]
    fn policy_fields() {
        let e = errors("{count: 1, time_window: 10, policy: redis}");
        assert!(has(&e, "redis_host", "required with policy redis"));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis, redis_host: x, redis_port: 0, redis_timeout: 0}",
        );
        assert!(has(&e, "redis_host", "at least 2"));
        assert!(has(&e, "redis_port", "between 1 and 65535"));
        assert!(has(&e, "redis_timeout", "at least 1"));
        let e = errors("{count: 1, time_window: 10, policy: redis-cluster}");
        assert!(has(&e, "redis_cluster_nodes", "required"));
        assert!(has(&e, "redis_cluster_name", "required"));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis-cluster, redis_cluster_name: c, \
             redis_cluster_nodes: ['127.0.0.1:7000', 'nope', 'h:0']}",
        );
        assert!(has(&e, "redis_cluster_nodes[1]", "`host:port`"));
        assert!(has(&e, "redis_cluster_nodes[2]", "`host:port`"));
        assert!(!e.iter().any(|(f, _)| f == "redis_cluster_nodes[0]"));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis-cluster, redis_cluster_name: c, redis_cluster_nodes: []}",
        );
        assert!(has(&e, "redis_cluster_nodes", "at least one"));
        // Fields of another policy are refused, not ignored.
        let e = errors("{count: 1, time_window: 10, redis_host: h1, redis_password: pw}");
        assert!(has(&e, "redis_host", "only used with policy redis"));
        assert!(has(
            &e,
            "redis_password",
            "only used with policy redis or redis-cluster"
        ));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis, redis_host: h1, redis_cluster_name: c}",
        );
        assert!(has(
            &e,
            "redis_cluster_name",
            "only used with policy redis-cluster"
        ));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis-cluster, redis_cluster_name: c, \
             redis_cluster_nodes: ['a:1'], redis_host: h1}",
        );
        assert!(has(&e, "redis_host", "only used with policy redis"));
        let e = errors(
            "{count: 1, time_window: 10, policy: redis, redis_host: h1, redis_keepalive_timeout: 10, redis_keepalive_pool: 0}",
        );
        assert!(has(&e, "redis_keepalive_timeout", "at least 1000"));
        assert!(has(&e, "redis_keepalive_pool", "at least 1"));

        let lc = ok(
            "{count: 1, time_window: 10, policy: redis, redis_host: h1, redis_password: s3cr3t-pw, redis_database: 2}",
        );
        let LimitPolicy::Redis(s) = &lc.policy else {
            panic!("redis policy")
        };
        assert_eq!(s.timeout, Duration::from_millis(1000));
        assert_eq!(&*s.label, "h1:6379/2");
        assert!(s.sync_interval.is_none());
        let lc = ok(
            "{count: 1, time_window: 10, policy: redis-cluster, redis_cluster_name: c, \
             redis_cluster_nodes: ['127.0.0.1:7000', '[::1]:7001'], redis_timeout: 50}",
        );
        let LimitPolicy::Redis(s) = &lc.policy else {
            panic!("redis policy")
        };
        let RedisTarget::Cluster { nodes, .. } = &s.target else {
            panic!("cluster")
        };
        assert_eq!(nodes[1], ("::1".into(), 7001));
        assert_eq!(s.timeout, Duration::from_millis(50));
    }

    #[test]
    fn sync_interval_rules() {
        let e = errors("{count: 1, time_window: 10, sync_interval: 1}");
        assert!(has(&e, "sync_interval", "only used with policy redis"));
        let base = "count: 1, time_window: 10, policy: redis, redis_host: h1";
        let e = errors(&format!("{{{base}, sync_interval: 0.05}}"));
        assert!(has(&e, "sync_interval", "at least 0.1"));
        let e = errors(&format!("{{{base}, sync_interval: 10}}"));
        assert!(has(&e, "sync_interval", "less than time_window (10)"));
        let e = errors(&format!("{{{base}, sync_interval: .nan}}"));
        assert!(has(&e, "sync_interval", "at least 0.1"));
        let lc = ok(&format!("{{{base}, sync_interval: 0.1}}"));
        let LimitPolicy::Redis(s) = &lc.policy else {
            panic!("redis policy")
        };
        assert_eq!(s.sync_interval, Some(Duration::from_millis(100)));
        let lc = ok(&format!("{{{base}, sync_interval: -1}}"));
        let LimitPolicy::Redis(s) = &lc.policy else {
            panic!("redis policy")
        };
        assert_eq!(s.sync_interval, None);
        ok("{count: 1, time_window: 10, sync_interval: -1}");
    }

    #[test]
    fn secrets_never_printed() {
        let yaml =
            "{count: 1, time_window: 10, policy: redis, redis_host: h1, redis_password: s3cr3t-pw}";
        let c = conf(yaml);
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
        let lc = ok(yaml);
        assert!(!format!("{lc:?}").contains("s3cr3t-pw"));
        let bad =
            conf("{count: 0, time_window: 10, redis_password: s3cr3t-pw, redis_host: s3cr3t-pw}");
        let e = compile_limit_count(&bad).err().unwrap_or_default();
        assert!(has(&e, "redis_password", "only used with policy"));
        for (_, m) in &e {
            assert!(!m.contains("s3cr3t-pw"), "{m}");
        }
    }

    #[test]
    fn key_validation() {
        let e = errors("{count: 1, time_window: 1, key: cookie_x}");
        assert!(has(&e, "key", "unknown variable `cookie_x`"));
        let e = errors("{count: 1, time_window: 1, key: $remote_addr}");
        assert!(has(&e, "key", "without `$`"));
        let e = errors("{count: 1, time_window: 1, key: http_}");
        assert!(has(&e, "key", "no valid header"));
        let e = errors("{count: 1, time_window: 1, key_type: var_combination, key: 'abc'}");
        assert!(has(&e, "key", "names no variable"));
        let e = errors(
            "{count: 1, time_window: 1, key_type: var_combination, key: '$remote_addr $nope'}",
        );
        assert!(has(&e, "key", "unknown variable `nope`"));
        let e = errors("{count: 1, time_window: 1, key_type: constant, key: ''}");
        assert!(has(&e, "key", "must not be empty"));
        let lc = ok("{count: 1, time_window: 1, key: http_x_api_user}");
        assert_eq!(
            lc.key,
            KeySpec::Var(KeyVar::Header(HeaderName::from_static("x-api-user")))
        );
        let lc = ok("{count: 1, time_window: 1, key_type: constant}");
        assert_eq!(lc.key, KeySpec::Constant("remote_addr".into()));
    }

    #[test]
    fn template_parsing() {
        let p =
            parse_template("$remote_addr ${consumer_name}-x \\$route_id $ ${ $").expect("parses");
        assert_eq!(
            &*p,
            &[
                KeyPart::Var(KeyVar::RemoteAddr),
                KeyPart::Literal(" ".into()),
                KeyPart::Var(KeyVar::ConsumerName),
                KeyPart::Literal("-x \\$route_id $ ${ $".into()),
            ]
        );
        let p = parse_template("a$arg_page_b").expect("parses");
        assert_eq!(
            &*p,
            &[
                KeyPart::Literal("a".into()),
                KeyPart::Var(KeyVar::Arg("page_b".into()))
            ]
        );
    }

    fn vars<'a>(
        headers: &'a HeaderMap,
        query: Option<&'a str>,
        consumer: Option<&'a str>,
    ) -> KeyVars<'a> {
        KeyVars {
            remote_addr: "10.0.0.1",
            server_addr: "127.0.0.1",
            consumer_name: consumer,
            consumer_group_id: None,
            route_id: "r1",
            service_id: Some("s1"),
            headers,
            query,
        }
    }

    fn key_of(lc: &LimitCount, v: &KeyVars<'_>) -> (String, KeySource) {
        let (b, s) = lc.key.value(v);
        (String::from_utf8(b).expect("utf8"), s)
    }

    #[test]
    fn key_resolution() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().expect("value"));
        h.insert("x-empty", "".parse().expect("value"));
        let v = vars(&h, Some("a=1&page=7&Page=8&b&q=x+y%21"), Some("FetchBot"));
        let k = |yaml: &str| key_of(&ok(yaml), &v);
        use KeySource::*;
        assert_eq!(
            k("{count: 1, time_window: 1}"),
            ("10.0.0.1".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: consumer_name}"),
            ("FetchBot".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: http_x_user}"),
            ("alice".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: http_x_empty}"),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: http_x_missing}"),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: arg_page}"),
            ("7".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: arg_Page}"),
            ("8".into(), Configured),
            "names are exact, as APISIX's ctx.var.arg_<name>"
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: arg_q}"),
            ("x y!".into(), Configured),
            "values are decoded"
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: arg_b}"),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: consumer_group_id}"),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: service_id}"),
            ("s1".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: route_id}"),
            ("r1".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key: server_addr}"),
            ("127.0.0.1".into(), Configured)
        );
        assert_eq!(
            k("{count: 1, time_window: 1, key_type: constant, key: all}"),
            ("all".into(), Configured)
        );
        assert_eq!(
            k(
                "{count: 1, time_window: 1, key_type: var_combination, key: '$remote_addr $consumer_name'}"
            ),
            ("10.0.0.1 FetchBot".into(), Configured)
        );
        // Missing variables become empty; all missing -> fallback.
        assert_eq!(
            k(
                "{count: 1, time_window: 1, key_type: var_combination, key: 'u:$http_x_missing:$consumer_name'}"
            ),
            ("u::FetchBot".into(), Configured)
        );
        assert_eq!(
            k(
                "{count: 1, time_window: 1, key_type: var_combination, key: 'u:$http_x_missing:$consumer_group_id'}"
            ),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        let none = vars(&h, None, None);
        assert_eq!(
            key_of(&ok("{count: 1, time_window: 1, key: consumer_name}"), &none),
            ("10.0.0.1".into(), FallbackRemoteAddr)
        );
        assert_eq!(
            key_of(&ok("{count: 1, time_window: 1, key: arg_a}"), &none).1,
            FallbackRemoteAddr
        );
    }

    #[test]
    fn conf_hash_is_stable() {
        let a = ok("{count: 2, time_window: 5}");
        // Defaults written out give the same conf.
        let b = ok(
            "{count: 2, time_window: 5, key_type: var, key: remote_addr, rejected_code: 503, policy: local}",
        );
        assert_eq!(a.conf_hash, b.conf_hash);
        // Fixed seed: the same in every process and build. Change only with intent (it resets
        // every counter, Redis ones included).
        assert_eq!(a.conf_hash, 0xb316_8619_d1ae_7136_u64, "{:#x}", a.conf_hash);
        for other in [
            "{count: 3, time_window: 5}",
            "{count: 2, time_window: 6}",
            "{count: 2, time_window: 5, key: consumer_name}",
            "{count: 2, time_window: 5, key_type: constant}",
            "{count: 2, time_window: 5, rejected_code: 429}",
            "{count: 2, time_window: 5, rejected_msg: no}",
            "{count: 2, time_window: 5, group: g}",
            "{count: 2, time_window: 5, show_limit_quota_header: false}",
            "{count: 2, time_window: 5, allow_degradation: true}",
            "{count: 2, time_window: 5, policy: redis, redis_host: h1}",
        ] {
            assert_ne!(ok(other).conf_hash, a.conf_hash, "{other}");
        }
        let r1 = ok("{count: 2, time_window: 5, policy: redis, redis_host: h1, redis_password: a}");
        let r2 = ok("{count: 2, time_window: 5, policy: redis, redis_host: h1, redis_password: b}");
        let r3 = ok("{count: 2, time_window: 5, policy: redis, redis_host: h1, redis_database: 1}");
        assert_eq!(
            r1.conf_hash, r2.conf_hash,
            "the password is not part of the conf hash"
        );
        assert_ne!(r1.conf_hash, r3.conf_hash);
        let (LimitPolicy::Redis(s1), LimitPolicy::Redis(s2)) = (&r1.policy, &r2.policy) else {
            panic!("redis")
        };
        assert_ne!(
            s1.backend_id, s2.backend_id,
            "different credentials use different connections"
        );
        let r1b =
            ok("{count: 9, time_window: 50, policy: redis, redis_host: h1, redis_password: a}");
        let LimitPolicy::Redis(s1b) = &r1b.policy else {
            panic!("redis")
        };
        assert_eq!(
            s1.backend_id, s1b.backend_id,
            "same target shares a connection"
        );
    }

    /// `request_key` formats the addresses only when the key reads them or falls back to the
    /// client's, and always gives the key `KeyVars::of` (every variable formatted) gives.
    #[test]
    fn request_key_is_the_full_key() {
        let mut req = pingora_http::RequestHeader::build("GET", b"/p?page=2", None).unwrap();
        req.insert_header("x-api-user", "u1").unwrap();
        let local = "local";
        for policy in [local, "redis"] {
            for key in [
                "{key: consumer_name}",
                "{key: remote_addr}",
                "{key: server_addr}",
                "{key: http_x_api_user}",
                "{key: http_x_missing}",
                "{key: arg_page}",
                "{key_type: constant, key: k}",
                "{key_type: var_combination, key: '$consumer_name-$server_addr'}",
                "{key_type: var_combination, key: 'a $remote_addr'}",
                "{key_type: var_combination, key: 'a $consumer_group_id'}",
            ] {
                let yaml = if policy == local {
                    format!("{{count: 1, time_window: 1, {}}}", &key[1..key.len() - 1])
                } else {
                    format!(
                        "{{count: 1, time_window: 1, policy: redis, redis_host: 127.0.0.1, {}}}",
                        &key[1..key.len() - 1]
                    )
                };
                let p = LimitCountPlugin::new("route:r", ok(&yaml));
                for (consumer, remote, server) in [
                    (Some("jack"), Some("10.1.2.3"), Some("127.0.0.1")),
                    (None, Some("10.1.2.3"), Some("127.0.0.1")),
                    (None, Some("2001:db8::1"), None),
                    (None, None, None),
                ] {
                    let view = RequestView {
                        req: &req,
                        path: b"/p",
                        remote: remote.map(|a| a.parse().unwrap()),
                        local: server.map(|a| a.parse().unwrap()),
                        tls: false,
                        upstream: None,
                        route_id: "r",
                        service_id: None,
                        consumer,
                        consumer_group: None,
                        consumer_labels: &[],
                        limiter: crate::plugins::shape::test_limiter(),
                    };
                    let mut bufs = [[0u8; 46]; 2];
                    let full = p.conf.counter_key(&p.owner, &KeyVars::of(&view, &mut bufs));
                    assert_eq!(p.request_key(&view), full, "{yaml} {consumer:?} {remote:?}");
                }
            }
        }
    }
}

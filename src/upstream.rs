//! Compiled upstreams: resolved node addresses, a weighted round-robin (or consistent-hash)
//! balancer from pingora-load-balancing, and one prebuilt `HttpPeer` per node, so a request only
//! picks and clones.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures::FutureExt;
use http::HeaderValue;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::{Consistent, RoundRobin};
use pingora_load_balancing::{Backend, Backends, LoadBalancer};

use crate::config::raw::{BalancerType, HashOn, PassHost, SchemeConf, TimeoutConf, UpstreamConf};

/// Connect, send and read timeouts. Unset: 60 s each, as nginx.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let d = Duration::from_secs(60);
        Timeouts {
            connect: d,
            send: d,
            read: d,
        }
    }
}

impl Timeouts {
    /// Checks and converts a `timeout` object (seconds > 0).
    pub fn from_conf(t: &TimeoutConf) -> Result<Timeouts, String> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v < 86_400.0 * 365.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("{name} must be a number of seconds greater than 0"))
            }
        };
        Ok(Timeouts {
            connect: secs("connect", t.connect)?,
            send: secs("send", t.send)?,
            read: secs("read", t.read)?,
        })
    }

    /// Applies these timeouts to a peer.
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.options.connection_timeout = Some(self.connect);
        peer.options.read_timeout = Some(self.read);
        peer.options.write_timeout = Some(self.send);
    }
}

/// How the upstream `Host` header is set.
#[derive(Debug, Clone)]
pub enum HostMode {
    Pass,
    Node,
    Rewrite(HeaderValue),
}

/// A node after name resolution.
#[derive(Debug, Clone)]
pub struct Node {
    pub addr: SocketAddr,
    /// `Host` value for `pass_host: node` (the host as written, with a non-default port).
    pub host_header: HeaderValue,
    pub peer: HttpPeer,
}

enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Hash(LoadBalancer<Consistent>, HashOn, Box<str>),
}

/// One upstream of a snapshot.
pub struct Upstream {
    pub id: std::sync::Arc<str>,
    pub nodes: Box<[Node]>,
    balancer: Balancer,
    pub host_mode: HostMode,
    pub retries: u32,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("id", &self.id)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Upstream {
    /// Resolves and checks an upstream conf. Errors are `(field suffix, message)`.
    pub fn compile(id: &str, conf: &UpstreamConf) -> Result<Upstream, Vec<(String, String)>> {
        let mut errs = Vec::new();
        match conf.kind {
            BalancerType::Roundrobin | BalancerType::Chash => {}
            BalancerType::Ewma | BalancerType::LeastConn => errs.push((
                "type".into(),
                "balancer type not supported by tollgate (use roundrobin or chash)".into(),
            )),
        }
        let tls = match conf.scheme {
            SchemeConf::Http => false,
            SchemeConf::Https => true,
            SchemeConf::Grpc | SchemeConf::Grpcs => {
                errs.push((
                    "scheme".into(),
                    "grpc upstreams are not supported by tollgate".into(),
                ));
                false
            }
        };
        let unsupported = [
            ("checks", conf.checks.is_some()),
            ("tls", conf.tls.is_some()),
            ("discovery_type", conf.discovery_type.is_some()),
            ("service_name", conf.service_name.is_some()),
            ("discovery_args", conf.discovery_args.is_some()),
        ];
        for (f, present) in unsupported {
            if present {
                errs.push((f.into(), "not supported by tollgate".into()));
            }
        }
        if conf.retry_timeout.is_some() {
            errs.push((
                "retry_timeout".into(),
                "not supported by tollgate (retries are bounded by `retries` and the timeouts)"
                    .into(),
            ));
        }
        if let Some(kp) = &conf.keepalive_pool
            && (kp.size.is_some() || kp.requests.is_some())
        {
            let f = if kp.size.is_some() {
                "keepalive_pool.size"
            } else {
                "keepalive_pool.requests"
            };
            errs.push((f.into(), "not supported by tollgate (Pingora keeps one shared pool; only idle_timeout is per upstream)".into()));
        }
        for (i, n) in conf.nodes.0.iter().enumerate() {
            if n.priority != 0 {
                errs.push((
                    format!("nodes[{i}].priority"),
                    "not supported by tollgate (every node has priority 0)".into(),
                ));
            }
        }
        let timeouts = match &conf.timeout {
            Some(t) => Timeouts::from_conf(t).unwrap_or_else(|e| {
                errs.push(("timeout".into(), e));
                Timeouts::default()
            }),
            None => Timeouts::default(),
        };
        let host_mode = match conf.pass_host {
            PassHost::Pass => HostMode::Pass,
            PassHost::Node => HostMode::Node,
            PassHost::Rewrite => match conf.upstream_host.as_deref().map(HeaderValue::from_str) {
                Some(Ok(v)) => HostMode::Rewrite(v),
                Some(Err(_)) => {
                    errs.push(("upstream_host".into(), "not a valid host".into()));
                    HostMode::Pass
                }
                None => {
                    errs.push((
                        "upstream_host".into(),
                        "required when pass_host is rewrite".into(),
                    ));
                    HostMode::Pass
                }
            },
        };
        if conf.upstream_host.is_some() && conf.pass_host != PassHost::Rewrite {
            errs.push((
                "upstream_host".into(),
                "only used with pass_host: rewrite".into(),
            ));
        }
        let hash = match conf.kind {
            BalancerType::Chash => {
                let on = conf.hash_on.unwrap_or_default();
                match (on, conf.key.as_deref()) {
                    (HashOn::Consumer, _) => Some((on, "".into())),
                    (HashOn::VarsCombinations, _) => {
                        errs.push((
                            "hash_on".into(),
                            "vars_combinations is not supported by tollgate".into(),
                        ));
                        None
                    }
                    (_, Some(k)) if !k.is_empty() => Some((on, k.into())),
                    _ => {
                        errs.push(("key".into(), "required when type is chash".into()));
                        None
                    }
                }
            }
            _ => {
                if conf.hash_on.is_some() || conf.key.is_some() {
                    errs.push(("hash_on".into(), "only used with type: chash".into()));
                }
                None
            }
        };
        if conf.nodes.0.is_empty() {
            errs.push(("nodes".into(), "at least one node is required".into()));
        }
        let default_port = if tls { 443 } else { 80 };
        let mut nodes = Vec::new();
        for (i, n) in conf.nodes.0.iter().enumerate() {
            let port = n.port.unwrap_or(default_port);
            let addr = match resolve(&n.host, port) {
                Ok(a) => a,
                Err(e) => {
                    errs.push((format!("nodes[{i}]"), e));
                    continue;
                }
            };
            if n.weight == 0 {
                continue;
            }
            let host_text = if port == default_port {
                n.host.clone()
            } else {
                format!("{}:{}", n.host, port)
            };
            let Ok(host_header) = HeaderValue::from_str(&host_text) else {
                errs.push((format!("nodes[{i}]"), "not a valid host".into()));
                continue;
            };
            let mut peer = HttpPeer::new(addr, tls, n.host.clone());
            timeouts.apply(&mut peer);
            if let Some(kp) = &conf.keepalive_pool
                && let Some(idle) = kp.idle_timeout
            {
                peer.options.idle_timeout = Some(Duration::from_secs_f64(idle.max(0.0)));
            }
            nodes.push((
                Node {
                    addr,
                    host_header,
                    peer,
                },
                n.weight,
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        if nodes.is_empty() {
            return Err(vec![("nodes".into(), "every node has weight 0".into())]);
        }
        let g = nodes.iter().fold(0, |g, (_, w)| gcd(g, *w));
        let backends: BTreeSet<Backend> = nodes
            .iter()
            .map(|(n, w)| Backend {
                addr: pingora_core::protocols::l4::socket::SocketAddr::Inet(n.addr),
                weight: (w / g) as usize,
                ext: Default::default(),
            })
            .collect();
        let balancer = match hash {
            None => Balancer::RoundRobin(build_lb(backends)),
            Some((on, key)) => Balancer::Hash(build_lb(backends), on, key),
        };
        let retries = conf
            .retries
            .unwrap_or((nodes.len() as u32).saturating_sub(1));
        Ok(Upstream {
            id: id.into(),
            nodes: nodes.into_iter().map(|(n, _)| n).collect(),
            balancer,
            host_mode,
            retries,
        })
    }

    /// What a consistent-hash upstream hashes on, if it is one.
    pub fn hash_key(&self) -> Option<(HashOn, &str)> {
        match &self.balancer {
            Balancer::Hash(_, on, key) => Some((*on, key)),
            Balancer::RoundRobin(_) => None,
        }
    }

    /// Picks a node. `key` is the hash input for chash upstreams (ignored otherwise).
    pub fn pick(&self, key: &[u8]) -> Option<&Node> {
        // One node (the common case): the balancer could only answer it.
        if let [only] = &*self.nodes {
            return Some(only);
        }
        let backend = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select(b"", 256),
            Balancer::Hash(lb, _, _) => lb.select(key, 256),
        }?;
        let addr = backend.addr.as_inet()?;
        self.nodes.iter().find(|n| &n.addr == addr)
    }
}

fn build_lb<S>(backends: BTreeSet<Backend>) -> LoadBalancer<S>
where
    S: pingora_load_balancing::selection::BackendSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let lb = LoadBalancer::<S>::from_backends(Backends::new(Static::new(backends)));
    // Static discovery never awaits; the result is ready on the first poll.
    let _ = lb.update().now_or_never();
    lb
}

/// Resolves a node host (IP or name) to one socket address, IPv4 preferred.
pub(crate) fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve `{host}`: no address"))
}

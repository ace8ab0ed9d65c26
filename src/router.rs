//! Route matching as APISIX's `radixtree_host_uri` does it: routes whose host matches (exact,
//! then `*.wildcard` longest first) are tried before host-less ones; within a host bucket an
//! exact path beats a prefix, a longer prefix beats a shorter one, and routes on the same path
//! go by `priority` (higher first, then file order) and are filtered by method and client IP.

use std::net::IpAddr;

use ahash::AHashMap;
use ipnet::IpNet;

use crate::ids::RouteId;

/// A bit per method a route may list; 0 means any method.
pub(crate) fn method_bit(method: &[u8]) -> u16 {
    match method {
        b"GET" => 1,
        b"POST" => 1 << 1,
        b"PUT" => 1 << 2,
        b"DELETE" => 1 << 3,
        b"PATCH" => 1 << 4,
        b"HEAD" => 1 << 5,
        b"OPTIONS" => 1 << 6,
        b"CONNECT" => 1 << 7,
        b"TRACE" => 1 << 8,
        b"PURGE" => 1 << 9,
        _ => 1 << 15,
    }
}

/// The method mask of a method list.
pub(crate) fn method_mask<'a>(methods: impl IntoIterator<Item = &'a str>) -> u16 {
    methods
        .into_iter()
        .fold(0, |m, x| m | method_bit(x.as_bytes()))
}

/// What the compiler hands the router for one enabled route.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub route: RouteId,
    /// `uri`/`uris` as written (`/api/*` is a prefix).
    pub paths: Vec<String>,
    /// Lower-case hosts, `*.example.com` allowed; empty = any host.
    pub hosts: Vec<String>,
    pub methods: u16,
    pub remote_addrs: Vec<IpNet>,
    pub priority: i64,
}

#[derive(Debug, Clone)]
struct Candidate {
    route: RouteId,
    methods: u16,
    remote_addrs: Box<[IpNet]>,
    priority: i64,
    order: usize,
}

impl Candidate {
    fn accepts(&self, method: u16, remote: Option<IpAddr>) -> bool {
        (self.methods == 0 || self.methods & method != 0)
            && (self.remote_addrs.is_empty()
                || remote.is_some_and(|ip| self.remote_addrs.iter().any(|n| n.contains(&ip))))
    }
}

#[derive(Debug, Default)]
struct PathTable {
    exact: AHashMap<Box<[u8]>, Box<[Candidate]>>,
    prefix: AHashMap<Box<[u8]>, Box<[Candidate]>>,
    /// Distinct prefix lengths, longest first.
    prefix_lens: Box<[usize]>,
}

impl PathTable {
    fn build(entries: Vec<(String, Candidate)>) -> Self {
        let mut exact: AHashMap<Box<[u8]>, Vec<Candidate>> = AHashMap::new();
        let mut prefix: AHashMap<Box<[u8]>, Vec<Candidate>> = AHashMap::new();
        for (path, c) in entries {
            match path.strip_suffix('*') {
                Some(p) => prefix.entry(p.as_bytes().into()).or_default().push(c),
                None => exact.entry(path.as_bytes().into()).or_default().push(c),
            }
        }
        let sort =
            |m: AHashMap<Box<[u8]>, Vec<Candidate>>| -> AHashMap<Box<[u8]>, Box<[Candidate]>> {
                m.into_iter()
                    .map(|(k, mut v)| {
                        v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.order.cmp(&b.order)));
                        (k, v.into_boxed_slice())
                    })
                    .collect()
            };
        let mut lens: Vec<usize> = prefix.keys().map(|k| k.len()).collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.dedup();
        PathTable {
            exact: sort(exact),
            prefix: sort(prefix),
            prefix_lens: lens.into_boxed_slice(),
        }
    }

    fn find(&self, path: &[u8], method: u16, remote: Option<IpAddr>) -> Option<RouteId> {
        let pick = |cands: &[Candidate]| {
            cands
                .iter()
                .find(|c| c.accepts(method, remote))
                .map(|c| c.route)
        };
        if let Some(r) = self.exact.get(path).and_then(|c| pick(c)) {
            return Some(r);
        }
        for &len in self.prefix_lens.iter() {
            if len <= path.len()
                && let Some(r) = self.prefix.get(&path[..len]).and_then(|c| pick(c))
            {
                return Some(r);
            }
        }
        None
    }
}

/// The compiled router of one snapshot.
#[derive(Debug, Default)]
pub struct Router {
    exact_hosts: AHashMap<Box<str>, PathTable>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard_hosts: Box<[(Box<str>, PathTable)]>,
    any_host: PathTable,
}

impl Router {
    pub fn build(specs: &[RouteSpec]) -> Router {
        let mut exact: AHashMap<String, Vec<(String, Candidate)>> = AHashMap::new();
        let mut wild: AHashMap<String, Vec<(String, Candidate)>> = AHashMap::new();
        let mut any = Vec::new();
        for (order, s) in specs.iter().enumerate() {
            let c = Candidate {
                route: s.route,
                methods: s.methods,
                remote_addrs: s.remote_addrs.clone().into_boxed_slice(),
                priority: s.priority,
                order,
            };
            for p in &s.paths {
                if s.hosts.is_empty() {
                    any.push((p.clone(), c.clone()));
                }
                for h in &s.hosts {
                    match h.strip_prefix('*') {
                        Some(suffix) => wild
                            .entry(suffix.to_string())
                            .or_default()
                            .push((p.clone(), c.clone())),
                        None => exact
                            .entry(h.clone())
                            .or_default()
                            .push((p.clone(), c.clone())),
                    }
                }
            }
        }
        let mut wildcard: Vec<(Box<str>, PathTable)> = wild
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), PathTable::build(v)))
            .collect();
        wildcard.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Router {
            exact_hosts: exact
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), PathTable::build(v)))
                .collect(),
            wildcard_hosts: wildcard.into_boxed_slice(),
            any_host: PathTable::build(any),
        }
    }

    /// Whether some route is bound to hosts: otherwise [`Router::find`] needs no host.
    pub fn routes_by_host(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty()
    }

    /// Finds the route for a request. `host` is lower case without port; `path` normalised.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &[u8],
        method: &[u8],
        remote: Option<IpAddr>,
    ) -> Option<RouteId> {
        let method = method_bit(method);
        if let Some(host) = host {
            if let Some(r) = self
                .exact_hosts
                .get(host)
                .and_then(|t| t.find(path, method, remote))
            {
                return Some(r);
            }
            for (suffix, table) in self.wildcard_hosts.iter() {
                if host.len() > suffix.len()
                    && host.ends_with(&**suffix)
                    && let Some(r) = table.find(path, method, remote)
                {
                    return Some(r);
                }
            }
        }
        self.any_host.find(path, method, remote)
    }
}

/// The request's host for routing: lower case, port and trailing dot removed.
pub(crate) fn request_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let h = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                raw
            }
        })
    };
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: u32, paths: &[&str], hosts: &[&str], methods: u16, prio: i64) -> RouteSpec {
        RouteSpec {
            route: RouteId(id),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            methods,
            remote_addrs: vec![],
            priority: prio,
        }
    }

    #[test]
    fn exact_prefix_priority_host() {
        let r = Router::build(&[
            spec(0, &["/api/*"], &[], 0, 0),
            spec(1, &["/api/v1/*"], &[], 0, 0),
            spec(2, &["/api/v1/users"], &[], 0, 0),
            spec(3, &["/p"], &[], 0, 1),
            spec(4, &["/p"], &[], 0, 5),
            spec(5, &["/api/*"], &["*.example.com"], 0, 0),
            spec(6, &["/m"], &[], method_bit(b"POST"), 0),
        ]);
        let f = |h: Option<&str>, p: &str, m: &str| {
            r.find(h, p.as_bytes(), m.as_bytes(), None).map(|x| x.0)
        };
        assert_eq!(f(None, "/api/x", "GET"), Some(0));
        assert_eq!(f(None, "/api/v1/x", "GET"), Some(1));
        assert_eq!(f(None, "/api/v1/users", "GET"), Some(2));
        assert_eq!(f(None, "/p", "GET"), Some(4));
        assert_eq!(f(Some("a.example.com"), "/api/x", "GET"), Some(5));
        assert_eq!(f(Some("example.com"), "/api/x", "GET"), Some(0));
        assert_eq!(f(None, "/m", "GET"), None);
        assert_eq!(f(None, "/m", "POST"), Some(6));
        assert_eq!(f(None, "/nope", "GET"), None);
    }

    #[test]
    fn host_parsing() {
        assert_eq!(request_host("Example.COM:8080"), "example.com");
        assert_eq!(request_host("[::1]:80"), "::1");
        assert_eq!(request_host("a.b."), "a.b");
    }
}

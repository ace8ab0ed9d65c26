//! forward-auth (APISIX priority 2002, route side): asks an external auth service about each
//! request before it goes upstream. The auth service gets `X-Forwarded-Proto`, `-Method`,
//! `-Host`, `-Uri`, `-For` and the client headers named in `request_headers`; a 2xx answer lets
//! the request through with the `upstream_headers` of that answer, any other status is returned
//! to the client with the auth service's body and its `client_headers`. When the auth service
//! cannot be reached (connect error, timeout, broken answer) the request gets `status_on_error`,
//! or goes through untouched with `allow_degradation`.
//!
//! The auth URI is compiled at load into a peer (host names resolved then, as upstream nodes
//! are) and a prebuilt request head; the call goes through Pingora's HTTP connector, whose
//! keep-alive pool (`keepalive_pool` connections, idle for `keepalive_timeout`) is shared by
//! every instance with the same target and outlives reloads. Refused by name: `request_method:
//! POST` (the client body is not read before the upstream request), `extra_headers`,
//! `consumer_header` (forward-auth attaches no consumer in tollgate).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use pingora_core::connectors::ConnectorOptions;
use pingora_core::connectors::http::Connector;
use pingora_core::upstreams::peer::{ALPN, HttpPeer};
use pingora_http::RequestHeader;
use serde::Deserialize;

use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, RequestView, State, Step};
use crate::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::reject::Reject;

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// Largest auth-service body passed on to the client; a longer one is an auth-service error.
const MAX_BODY: usize = 64 * 1024;

/// The APISIX conf.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    pub uri: String,
    #[serde(default = "yes")]
    pub ssl_verify: bool,
    #[serde(default = "default_method")]
    pub request_method: String,
    #[serde(default)]
    pub request_headers: Vec<String>,
    #[serde(default)]
    pub upstream_headers: Vec<String>,
    #[serde(default)]
    pub client_headers: Vec<String>,
    /// Milliseconds, 1..=60000.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default = "yes")]
    pub keepalive: bool,
    /// Milliseconds, at least 1000.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: u64,
    #[serde(default = "default_keepalive_pool")]
    pub keepalive_pool: u64,
    #[serde(default)]
    pub allow_degradation: bool,
    #[serde(default = "default_status_on_error")]
    pub status_on_error: u16,
    pub extra_headers: Option<serde_yaml::Value>,
    pub consumer_header: Option<serde_yaml::Value>,
}

fn yes() -> bool {
    true
}
fn default_method() -> String {
    "GET".into()
}
fn default_timeout() -> u64 {
    3000
}
fn default_keepalive_timeout() -> u64 {
    60_000
}
fn default_keepalive_pool() -> u64 {
    5
}
fn default_status_on_error() -> u16 {
    403
}

/// Headers that frame a message or a connection: never copied in either direction.
const FRAMING: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// The compiled plugin.
pub(crate) struct ForwardAuth {
    peer: HttpPeer,
    connector: Arc<Connector>,
    /// Method and path (with query) of the auth request, and its `Host`.
    method: http::Method,
    target: Box<[u8]>,
    host: HeaderValue,
    request_headers: Box<[HeaderName]>,
    upstream_headers: Box<[HeaderName]>,
    client_headers: Box<[HeaderName]>,
    timeout: Duration,
    /// Idle time of a pooled connection; `None` when `keepalive` is off.
    keepalive: Option<Duration>,
    allow_degradation: bool,
    error: Reject,
    uri: Box<str>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("uri", &self.uri)
            .field("peer", &self.peer.to_string())
            .finish_non_exhaustive()
    }
}

/// What the auth service answered, or why there is no answer.
enum Answer {
    /// 2xx: its headers, for `upstream_headers`.
    Allow(Box<pingora_http::ResponseHeader>),
    Deny(Box<pingora_http::ResponseHeader>, Bytes),
    /// A refusal whose body could not be read whole: still a refusal, never degraded.
    Broken(u16, String),
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        uri,
        ssl_verify,
        request_method,
        request_headers,
        upstream_headers,
        client_headers,
        timeout,
        keepalive,
        keepalive_timeout,
        keepalive_pool,
        allow_degradation,
        status_on_error,
        extra_headers,
        consumer_header,
    } = conf;
    let err = |f: &str, m: String| (f.to_string(), m);
    if extra_headers.is_some() {
        return Err(err("extra_headers", "not supported by tollgate".into()));
    }
    if consumer_header.is_some() {
        return Err(err(
            "consumer_header",
            "not supported by tollgate (forward-auth attaches no consumer)".into(),
        ));
    }
    let method = match request_method.as_str() {
        "GET" => http::Method::GET,
        "POST" => {
            return Err(err(
                "request_method",
                "`POST` is not supported by tollgate: the client body is not read before the \
                 upstream request, so it cannot be sent to the auth service (use `GET`)"
                    .into(),
            ));
        }
        m => return Err(err("request_method", format!("`{m}` is not GET or POST"))),
    };
    if !(1..=60_000).contains(timeout) {
        return Err(err(
            "timeout",
            format!("{timeout} is not in 1..=60000 (ms)"),
        ));
    }
    if *keepalive_timeout < 1000 {
        return Err(err(
            "keepalive_timeout",
            format!("{keepalive_timeout} is below 1000 (ms)"),
        ));
    }
    if *keepalive_pool < 1 {
        return Err(err("keepalive_pool", "must be at least 1".into()));
    }
    if !(200..=599).contains(status_on_error) {
        return Err(err(
            "status_on_error",
            format!("{status_on_error} is not in 200..=599"),
        ));
    }
    let names = |field: &str, list: &[String]| -> Result<Box<[HeaderName]>, CompileError> {
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                let h = HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                    err(
                        &format!("{field}[{i}]"),
                        format!("`{n}` is not a valid header name"),
                    )
                })?;
                if FRAMING.contains(&h.as_str()) {
                    return Err(err(
                        &format!("{field}[{i}]"),
                        format!("`{n}` frames the message and cannot be copied"),
                    ));
                }
                Ok(h)
            })
            .collect()
    };
    let request_headers = names("request_headers", request_headers)?;
    let upstream_headers = names("upstream_headers", upstream_headers)?;
    let client_headers = names("client_headers", client_headers)?;

    let target = Target::parse(uri).map_err(|m| err("uri", m))?;
    let addr = crate::upstream::resolve(&target.host, target.port).map_err(|m| err("uri", m))?;
    let timeout = Duration::from_millis(*timeout);
    let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
    peer.options.alpn = ALPN::H1;
    peer.options.connection_timeout = Some(timeout);
    peer.options.verify_cert = *ssl_verify;
    peer.options.verify_hostname = *ssl_verify;
    let connector = shared_connector(PoolKey {
        addr,
        tls: target.tls,
        sni: target.host.clone(),
        verify: *ssl_verify,
        pool: *keepalive_pool,
    });
    let body = Reject::json_body("error_msg", "failed to process forward auth");
    Ok(Arc::new(ForwardAuth {
        peer,
        connector,
        method,
        target: target.path_and_query.into_bytes().into_boxed_slice(),
        host: target.host_header,
        request_headers,
        upstream_headers,
        client_headers,
        timeout,
        keepalive: keepalive.then(|| Duration::from_millis(*keepalive_timeout)),
        allow_degradation: *allow_degradation,
        error: Reject::new(*status_on_error, body),
        uri: uri.as_str().into(),
    }))
}

/// The parts of an `http://` or `https://` auth URI.
#[derive(Debug, PartialEq)]
struct Target {
    tls: bool,
    /// The host without brackets (an IPv6 literal is bare).
    host: String,
    port: u16,
    host_header: HeaderValue,
    path_and_query: String,
}

impl Target {
    fn parse(uri: &str) -> Result<Target, String> {
        let u: http::Uri = uri
            .parse()
            .map_err(|e| format!("`{uri}` is not a valid URI: {e}"))?;
        let tls = match u.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{uri}` does not start with http:// or https://")),
        };
        let authority = u
            .authority()
            .ok_or_else(|| format!("`{uri}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err("user info in the URI is not supported by tollgate".into());
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(format!("`{uri}` has no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("`{uri}` has an invalid host"))?;
        let path_and_query = u.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let path_and_query = if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query
        };
        Ok(Target {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            host_header,
            path_and_query,
        })
    }
}

/// What makes two forward-auth instances able to share connections.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolKey {
    addr: SocketAddr,
    tls: bool,
    sni: String,
    verify: bool,
    pool: u64,
}

/// One connector (with its keep-alive pool) per target, shared by every instance of that target
/// while one is alive, so pooled connections survive a reload. Called at load only.
fn shared_connector(key: PoolKey) -> Arc<Connector> {
    static POOLS: Mutex<Vec<(PoolKey, Weak<Connector>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pools.retain(|(_, w)| w.strong_count() > 0);
    if let Some(c) = pools
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return c;
    }
    let size = usize::try_from(key.pool).unwrap_or(usize::MAX);
    let c = Arc::new(Connector::new(Some(ConnectorOptions::new(size))));
    pools.push((key, Arc::downgrade(&c)));
    c
}

impl ForwardAuth {
    /// The auth request head: X-Forwarded-*, then the `request_headers` the client sent.
    fn auth_request(&self, r: &RequestView<'_>) -> pingora_core::Result<RequestHeader> {
        let mut req = RequestHeader::build(self.method.clone(), &self.target, Some(8))?;
        req.insert_header(http::header::HOST, self.host.clone())?;
        req.insert_header(X_FORWARDED_PROTO, if r.tls { "https" } else { "http" })?;
        req.insert_header(X_FORWARDED_METHOD, r.req.method.as_str())?;
        if let Some(h) = client_host(r.req) {
            req.insert_header(X_FORWARDED_HOST, h)?;
        }
        let uri = HeaderValue::from_bytes(r.req.raw_path()).or_else(|_| {
            HeaderValue::from_str(r.req.uri.path_and_query().map_or("/", |p| p.as_str()))
        });
        if let Ok(uri) = uri {
            req.insert_header(X_FORWARDED_URI, uri)?;
        }
        if let Some(ip) = r.remote {
            req.insert_header(X_FORWARDED_FOR, ip.to_string())?;
        }
        for name in &self.request_headers {
            if [
                &X_FORWARDED_PROTO,
                &X_FORWARDED_METHOD,
                &X_FORWARDED_HOST,
                &X_FORWARDED_URI,
                &X_FORWARDED_FOR,
            ]
            .contains(&name)
            {
                continue;
            }
            let mut values = r.req.headers.get_all(name).iter();
            if let Some(first) = values.next() {
                req.insert_header(name.clone(), first.clone())?;
                for v in values {
                    req.append_header(name.clone(), v.clone())?;
                }
            }
        }
        if self.keepalive.is_none() {
            req.insert_header(http::header::CONNECTION, "close")?;
        }
        Ok(req)
    }

    /// One call to the auth service, on a pooled connection if there is one; a failure on a
    /// reused connection (closed by the server meanwhile) is retried once on a new one. `Err`
    /// means no answer (connect error, timeout, broken head): degradation may apply.
    async fn call(&self, req: &RequestHeader) -> pingora_core::Result<Answer> {
        let head = tokio::time::timeout(self.timeout, async {
            let mut tries = 0;
            loop {
                tries += 1;
                let (mut session, reused) = self.connector.get_http_session(&self.peer).await?;
                session.set_read_timeout(Some(self.timeout));
                session.set_write_timeout(Some(self.timeout));
                match exchange_head(&mut session, req).await {
                    Ok(h) => return Ok((session, h)),
                    Err(e) if reused && tries < 2 => {
                        log::debug!("forward-auth {}: reused connection failed: {e}", self.uri);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let (mut session, head) = match head {
            Ok(r) => r?,
            Err(_) => {
                return pingora_core::Error::e_explain(
                    pingora_core::ErrorType::ReadTimedout,
                    "auth service timed out",
                );
            }
        };
        // The body, each read bounded by `timeout`.
        let mut body = BytesMut::new();
        let whole = loop {
            match session.read_response_body().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY => {
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => break Err("auth service body over 64 KiB".to_string()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            }
        };
        if whole.is_ok()
            && let Some(idle) = self.keepalive
        {
            self.connector
                .release_http_session(session, &self.peer, Some(idle))
                .await;
        }
        Ok(match whole {
            // The auth service said yes; its body does not matter.
            _ if head.status.is_success() => Answer::Allow(head),
            Ok(()) => Answer::Deny(head, body.freeze()),
            Err(why) => Answer::Broken(head.status.as_u16(), why),
        })
    }
}

/// Writes the request head and reads the final response head (skipping 1xx).
async fn exchange_head(
    session: &mut pingora_core::protocols::http::client::HttpSession,
    req: &RequestHeader,
) -> pingora_core::Result<Box<pingora_http::ResponseHeader>> {
    session.write_request_header(Box::new(req.clone())).await?;
    session.finish_request_body().await?;
    for _ in 0..8 {
        session.read_response_header().await?;
        let Some(h) = session.response_header() else {
            break;
        };
        if !h.status.is_informational() {
            return Ok(Box::new(h.clone()));
        }
    }
    pingora_core::Error::e_explain(
        pingora_core::ErrorType::InvalidHTTPHeader,
        "no final response from the auth service",
    )
}

/// The client's host, without port (APISIX's `$host`).
fn client_host(req: &RequestHeader) -> Option<HeaderValue> {
    let raw = req
        .uri
        .host()
        .or_else(|| req.headers.get(http::header::HOST)?.to_str().ok())?;
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    HeaderValue::from_str(&host.to_ascii_lowercase()).ok()
}

/// The header values that `upstream_headers` set on the upstream request; an empty list
/// removes the client's copy, as APISIX does.
type UpstreamHeaders = Vec<(HeaderName, Vec<HeaderValue>)>;

#[async_trait]
impl Plugin for ForwardAuth {
    fn name(&self) -> &'static str {
        "forward-auth"
    }

    fn priority(&self) -> i32 {
        2002
    }

    fn request(&self, _r: &RequestView<'_>, _state: &mut State) -> Option<Step> {
        None
    }

    async fn request_io(&self, r: &RequestView<'_>, state: &mut State) -> Step {
        let answer = match self.auth_request(r) {
            Ok(req) => self.call(&req).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(Answer::Allow(head)) => {
                let set: UpstreamHeaders = self
                    .upstream_headers
                    .iter()
                    .map(|n| (n.clone(), head.headers.get_all(n).iter().cloned().collect()))
                    .collect();
                if !set.is_empty() {
                    *state = Some(Box::new(set));
                }
                Step::Continue
            }
            Ok(Answer::Deny(head, body)) => {
                let mut rj = Reject::new(head.status.as_u16(), body);
                for n in &self.client_headers {
                    for v in head.headers.get_all(n) {
                        rj.headers.push((n.clone(), v.clone()));
                    }
                }
                if !rj
                    .headers
                    .iter()
                    .any(|(n, _)| n == http::header::CONTENT_TYPE)
                {
                    rj.headers.push((
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain"),
                    ));
                }
                Step::Respond(rj)
            }
            Ok(Answer::Broken(status, why)) => {
                crate::limited_log!(
                    log::Level::Warn,
                    "route {}: forward-auth {}: answered {status}, then {why}",
                    r.route_id,
                    self.uri
                );
                Step::Respond(self.error.clone())
            }
            Err(e) if self.allow_degradation => {
                crate::limited_log!(
                    log::Level::Warn,
                    "route {}: forward-auth {}: {e}; allow_degradation lets the request through",
                    r.route_id,
                    self.uri
                );
                Step::Continue
            }
            Err(e) => {
                crate::limited_log!(
                    log::Level::Warn,
                    "route {}: forward-auth {}: {e}",
                    r.route_id,
                    self.uri
                );
                Step::Respond(self.error.clone())
            }
        }
    }

    fn edits_upstream_request(&self) -> bool {
        true
    }

    fn upstream_request(
        &self,
        req: &mut RequestHeader,
        _r: &LazyView<'_>,
        state: &State,
    ) -> pingora_core::Result<()> {
        let Some(set) = state
            .as_ref()
            .and_then(|s| s.downcast_ref::<UpstreamHeaders>())
        else {
            return Ok(());
        };
        for (name, values) in set {
            req.remove_header(name);
            for v in values {
                req.append_header(name.clone(), v.clone())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::plugins::shape::Side;

    fn cx() -> CompileCx<'static> {
        CompileCx {
            owner: "route:r",
            side: Side::Route,
        }
    }

    fn conf(yaml: &str) -> Conf {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn refused(yaml: &str) -> CompileError {
        compile(&conf(yaml), &cx()).unwrap_err()
    }

    #[test]
    fn defaults_are_apisix_defaults() {
        let c = conf("uri: http://127.0.0.1:9999/auth");
        assert_eq!(c.request_method, "GET");
        assert_eq!(c.timeout, 3000);
        assert!(c.keepalive && c.ssl_verify && !c.allow_degradation);
        assert_eq!(c.keepalive_timeout, 60_000);
        assert_eq!(c.keepalive_pool, 5);
        assert_eq!(c.status_on_error, 403);
        assert!(compile(&c, &cx()).is_ok());
    }

    #[test]
    fn uri_is_parsed_at_load() {
        let t = Target::parse("http://127.0.0.1:9999/auth?x=1").unwrap();
        assert_eq!((t.tls, t.port), (false, 9999));
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.host_header, "127.0.0.1:9999");
        assert_eq!(t.path_and_query, "/auth?x=1");
        let t = Target::parse("https://[::1]").unwrap();
        assert_eq!((t.tls, t.port, t.host.as_str()), (true, 443, "::1"));
        assert_eq!(t.path_and_query, "/");
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("/auth").is_err());
        assert!(Target::parse("http://u:p@h/").is_err());
        assert_eq!(refused("uri: http://no-such-host.invalid/auth").0, "uri");
    }

    #[test]
    fn unsupported_and_out_of_range_fields_are_refused_by_name() {
        let base = "uri: http://127.0.0.1:1/a\n";
        for (extra, field) in [
            ("request_method: POST", "request_method"),
            ("request_method: PUT", "request_method"),
            ("extra_headers: {X-A: $remote_addr}", "extra_headers"),
            ("consumer_header: X-User", "consumer_header"),
            ("timeout: 0", "timeout"),
            ("timeout: 60001", "timeout"),
            ("keepalive_timeout: 999", "keepalive_timeout"),
            ("keepalive_pool: 0", "keepalive_pool"),
            ("status_on_error: 199", "status_on_error"),
            ("upstream_headers: [Content-Length]", "upstream_headers[0]"),
            ("request_headers: [ok, 'bad name']", "request_headers[1]"),
        ] {
            let e = refused(&format!("{base}{extra}"));
            assert_eq!(e.0, field, "{extra}: {e:?}");
        }
        assert!(
            refused(&format!("{base}request_method: POST"))
                .1
                .contains("not supported")
        );
        assert!(serde_yaml::from_str::<Conf>("uri: x\nvars: []").is_err());
        assert!(
            serde_yaml::from_str::<Conf>("timeout: 1").is_err(),
            "uri is required"
        );
    }

    #[test]
    fn client_host_drops_the_port() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("Host", "Example.COM:8080").unwrap();
        assert_eq!(client_host(&req).unwrap(), "example.com");
        req.insert_header("Host", "[::1]:80").unwrap();
        assert_eq!(client_host(&req).unwrap(), "[::1]");
    }

    #[test]
    fn instances_of_one_target_share_a_pool() {
        let a = compile(&conf("uri: http://127.0.0.1:9/a"), &cx()).unwrap();
        assert!(format!("{a:?}").contains("127.0.0.1:9"));
        let key = |p: u64| PoolKey {
            addr: "127.0.0.1:9".parse().unwrap(),
            tls: false,
            sni: "127.0.0.1".into(),
            verify: true,
            pool: p,
        };
        let (x, y) = (shared_connector(key(5)), shared_connector(key(5)));
        assert!(Arc::ptr_eq(&x, &y));
        assert!(!Arc::ptr_eq(&x, &shared_connector(key(9))));
    }
}

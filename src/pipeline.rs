//! `run`: the fixed order of request-time decisions, from the snapshot and the request head:
//! path → route → auth → consumer-restriction (route side, then consumer side) → limit-count.
//! Each step reads the snapshot only; the awaits are a password-hash check on a cache miss and
//! the limiter.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use log::warn;
use pingora_http::RequestHeader;

use crate::headers::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
use crate::limiter::{CounterKey, Limiter, Quota};
use crate::plugins::limit_count::{KeySource, KeyVars, LimitCount};

use crate::auth::hmac_auth::BodyCheck;
use crate::auth::{self, AuthRequest, Hide, Identity};
use crate::path::{self, NormalPath};
use crate::plugins::attach_consumer_label::AttachConsumerLabel;
use crate::plugins::shape::{AUTH_PRIORITY, Named, RequestView, Running, Step};
use crate::reject::Reject;
use crate::router::request_host;
use crate::snapshot::{RouteId, Snapshot, UpstreamId};

/// What the pipeline decided for a request that goes upstream.
#[derive(Debug)]
pub struct Decision {
    pub route: RouteId,
    pub upstream: UpstreamId,
    /// The normalised, re-encoded path when it differs from the target the client sent.
    pub new_path: Option<Box<[u8]>>,
    pub identity: Option<Identity>,
    /// Credential sources to remove (`hide_credentials`).
    pub hide: Vec<Hide>,
    /// hmac-auth `validate_request_body`.
    pub body_check: Option<BodyCheck>,
    /// The attach-consumer-label conf in force (consumer's over the route's).
    pub attach: Option<Arc<AttachConsumerLabel>>,
    /// limit-count's quota, when its headers are to be shown.
    pub quota: Option<Quota>,
    /// limit-count's backend failed and `allow_degradation` let the request through.
    pub degraded: bool,
    /// The registry plugin instances of this request, with their state.
    pub running: Running,
}

/// Why a request was answered by the gateway, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    BadRequest,
    RouteNotFound,
    Auth(&'static str),
    RateLimited,
    /// A registry plugin answered (the plugin's name).
    Plugin(&'static str),
    LimiterDown,
}

/// A request the gateway answers itself.
#[derive(Debug)]
pub struct Rejection {
    pub reject: Reject,
    pub kind: RejectKind,
    pub route: Option<RouteId>,
    pub identity: Option<Identity>,
    /// Plugin instances that ran before the rejection (their `done` still runs).
    pub running: Running,
}

/// The request facts the pipeline reads besides the header.
pub struct RequestInfo {
    pub remote: Option<IpAddr>,
    /// The gateway's own address the request came in on.
    pub local: Option<IpAddr>,
    /// The request came in over TLS.
    pub tls: bool,
    pub now: SystemTime,
}

/// Runs every step; an `Err` is answered as is.
pub async fn run(
    snap: &Snapshot,
    req: &RequestHeader,
    info: &RequestInfo,
    limiter: &Limiter,
) -> Result<Decision, Rejection> {
    let reject = |reject: Reject, kind, route, identity| Rejection {
        reject,
        kind,
        route,
        identity,
        running: Running::default(),
    };
    // The path as the client wrote it: raw bytes for an origin-form target (non-UTF-8 kept),
    // the path component of an absolute-form one.
    let target = req.raw_path();
    let origin_form = target.first() == Some(&b'/');
    let raw = if origin_form {
        target.split(|&b| b == b'?').next().unwrap_or_default()
    } else {
        req.uri.path().as_bytes()
    };
    let NormalPath { matching, upstream } = path::normalize(raw)
        .map_err(|_| reject(Reject::bad_request(), RejectKind::BadRequest, None, None))?;
    let host = req
        .uri
        .host()
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map(request_host);
    let method = req.method.as_str().as_bytes();
    let route_id = snap
        .router
        .find(host.as_deref(), &matching, method, info.remote)
        .ok_or_else(|| {
            reject(
                Reject::route_not_found(),
                RejectKind::RouteNotFound,
                None,
                None,
            )
        })?;
    let route = snap.route(route_id);
    let mut running = Running::default();

    // Registry plugins that run before authentication (cors, ip-restriction, request-id...).
    let anonymous_view = RequestView {
        req,
        path: &matching,
        remote: info.remote,
        tls: info.tls,
        upstream: None,
        route_id: &route.id,
        service_id: route.service.as_deref(),
        consumer: None,
        consumer_group: None,
    };
    let instances = Instances {
        global: &snap.global_plugins,
        route: &route.plugins.extra,
        consumer: &[],
    };
    run_registry(
        &mut running,
        &matching,
        &anonymous_view,
        instances.pre_auth(),
        |_| true,
    )
    .await
    .map_err(|(r, name, running)| Rejection {
        reject: r,
        kind: RejectKind::Plugin(name),
        route: Some(route_id),
        identity: None,
        running,
    })?;

    // Auth.
    let ar = AuthRequest {
        req,
        path: &matching,
        now: info.now,
    };
    let auth = auth::authenticate(&route.auth, &snap.consumers.creds, &ar)
        .await
        .map_err(|a| {
            carrying(
                reject(a.reject, RejectKind::Auth(a.plugin), Some(route_id), None),
                &mut running,
            )
        })?;
    let identity = auth.identity;
    let consumer = identity.map(|i| snap.consumers.get(i.consumer));

    // Registry plugins after authentication: global rules', then the route's and the
    // consumer's (or its group's) merged by priority. Those above limit-count's priority
    // (consumer-restriction 2400, forward-auth 2002, proxy-rewrite 1008...) run before it, as
    // in APISIX.
    let instances = Instances {
        consumer: consumer.map_or(&[][..], |c| &c.plugins.extra[..]),
        ..instances
    };
    let post_view = RequestView {
        consumer: consumer.map(|c| &*c.username),
        consumer_group: consumer.and_then(|c| snap.consumers.group_id(c)),
        ..anonymous_view
    };
    run_registry(
        &mut running,
        &matching,
        &post_view,
        instances.post_auth(),
        |p| p > LIMIT_COUNT_PRIORITY,
    )
    .await
    .map_err(|(r, name, running)| Rejection {
        reject: r,
        kind: RejectKind::Plugin(name),
        route: Some(route_id),
        identity,
        running,
    })?;

    let attach = consumer
        .and_then(|c| c.plugins.attach_labels.clone())
        .or_else(|| route.plugins.attach_labels.clone());
    // limit-count: the consumer's (or its group's) conf over the route's.
    let mut quota = None;
    let mut degraded = false;
    let limit = consumer
        .and_then(|c| c.plugins.limit_count.as_ref())
        .or(route.plugins.limit_count.as_ref());
    if let Some(ol) = limit {
        let (mut remote_buf, mut local_buf) = ([0u8; 46], [0u8; 46]);
        let vars = KeyVars {
            remote_addr: ip_str(info.remote, &mut remote_buf),
            server_addr: ip_str(info.local, &mut local_buf),
            consumer_name: consumer.map(|c| &*c.username),
            consumer_group_id: consumer.and_then(|c| snap.consumers.group_id(c)),
            route_id: &route.id,
            service_id: route.service.as_deref(),
            headers: &req.headers,
            query: req.uri.query(),
        };
        let (key, source) = CounterKey::new(&ol.owner, &ol.conf, &vars);
        if source == KeySource::FallbackRemoteAddr
            && !route.key_fallback_warned.swap(true, Ordering::Relaxed)
        {
            warn!(
                "route {}: limit-count key is empty for a request, using the client IP instead",
                route.id
            );
        }
        let lc = &ol.conf;
        match limiter.acquire(lc, key, Instant::now()).await {
            Ok(q) if q.allowed => quota = Some(q).filter(|_| lc.show_limit_quota_header),
            Ok(q) => {
                let mut r = lc.rejection.clone();
                if lc.show_limit_quota_header {
                    r.headers.extend(quota_headers(&q));
                }
                return Err(carrying(
                    reject(r, RejectKind::RateLimited, Some(route_id), identity),
                    &mut running,
                ));
            }
            Err(e) if lc.allow_degradation => {
                crate::limited_log!(
                    log::Level::Warn,
                    "route {}: limit-count: {e}; allow_degradation lets the request through",
                    route.id
                );
                degraded = true;
            }
            Err(e) => {
                crate::limited_log!(log::Level::Warn, "route {}: limit-count: {e}", route.id);
                return Err(carrying(
                    reject(
                        LimitCount::backend_failure(),
                        RejectKind::LimiterDown,
                        Some(route_id),
                        identity,
                    ),
                    &mut running,
                ));
            }
        }
    }

    // Registry plugins below limit-count's priority (limit-req...).
    run_registry(
        &mut running,
        &matching,
        &post_view,
        instances.post_auth(),
        |p| p <= LIMIT_COUNT_PRIORITY,
    )
    .await
    .map_err(|(r, name, running)| Rejection {
        reject: r,
        kind: RejectKind::Plugin(name),
        route: Some(route_id),
        identity,
        running,
    })?;

    let new_path = if !origin_form || *upstream != *raw {
        Some(upstream.into_owned().into_boxed_slice())
    } else {
        None
    };
    Ok(Decision {
        route: route_id,
        upstream: route.upstream,
        new_path,
        identity,
        hide: auth.hide,
        body_check: auth.body_check,
        attach,
        quota,
        degraded,
        running,
    })
}

/// The registry plugin instances of one request, in the order they run: before
/// authentication, global rules' then the route's (priority above [`AUTH_PRIORITY`]); after
/// it, global rules' again, then the route's (those no consumer instance replaces) and the
/// consumer's (or its group's) merged highest priority first.
#[derive(Clone, Copy)]
pub struct Instances<'a> {
    pub global: &'a [Named],
    pub route: &'a [Named],
    pub consumer: &'a [Named],
}

fn is_pre_auth(n: &&Named) -> bool {
    n.1.priority() > AUTH_PRIORITY
}

fn is_post_auth(n: &&Named) -> bool {
    n.1.priority() <= AUTH_PRIORITY
}

impl<'a> Instances<'a> {
    /// Those that run before authentication.
    pub fn pre_auth(self) -> impl Iterator<Item = &'a Named> {
        (self.global.iter().filter(is_pre_auth)).chain(self.route.iter().filter(is_pre_auth))
    }

    /// Those that run after authentication.
    pub fn post_auth(self) -> impl Iterator<Item = &'a Named> {
        (self.global.iter().filter(is_post_auth)).chain(PostAuthIter {
            lists: self,
            i: 0,
            j: 0,
        })
    }

    /// All of them, in order.
    pub fn all(self) -> impl Iterator<Item = &'a Named> {
        self.pre_auth().chain(self.post_auth())
    }

    /// Whether the route's instance `r` runs after auth: not replaced by the consumer's.
    fn keeps(&self, r: &Named) -> bool {
        r.1.priority() <= AUTH_PRIORITY
            && !(r.1.consumer_replaces_route()
                && self
                    .consumer
                    .iter()
                    .any(|c| c.0 == r.0 && c.1.consumer_replaces_route()))
    }
}

/// The route's and the consumer's post-auth instances, merged (each list is sorted; the
/// route's first on a tie).
struct PostAuthIter<'a> {
    lists: Instances<'a>,
    i: usize,
    j: usize,
}

impl<'a> Iterator for PostAuthIter<'a> {
    type Item = &'a Named;
    fn next(&mut self) -> Option<&'a Named> {
        let Instances {
            route, consumer, ..
        } = self.lists;
        while self.i < route.len() && !self.lists.keeps(&route[self.i]) {
            self.i += 1;
        }
        let r = route.get(self.i);
        let c = consumer.get(self.j);
        match (r, c) {
            (Some(r), Some(c)) if c.1.priority() > r.1.priority() => {
                self.j += 1;
                Some(c)
            }
            (Some(r), _) => {
                self.i += 1;
                Some(r)
            }
            (None, c) => {
                self.j += 1;
                c
            }
        }
    }
}

/// limit-count's APISIX priority: registry plugins above it run before it.
const LIMIT_COUNT_PRIORITY: i32 = 1002;

/// Runs the request step of each instance whose priority `which` selects; a plugin that
/// answers ends the request (with the instances that ran, for their `done`).
async fn run_registry<'a>(
    running: &mut Running,
    matching: &[u8],
    view: &RequestView<'_>,
    list: impl Iterator<Item = &'a Named>,
    which: impl Fn(i32) -> bool,
) -> Result<(), (Reject, &'static str, Running)> {
    for (_, p) in list.filter(|(_, p)| which(p.priority())) {
        if running.path.is_empty() {
            running.path = matching.to_vec().into_boxed_slice();
        }
        let mut state = None;
        let step = p.request(view, &mut state).await;
        running.list.push((p.clone(), state));
        if let Step::Respond(r) = step {
            return Err((r, p.name(), std::mem::take(running)));
        }
    }
    Ok(())
}

/// A rejection that also carries the plugin instances that already ran, so their `response`
/// hook sees the gateway's answer (CORS headers on a 401) and their `done` still runs.
fn carrying(mut r: Rejection, running: &mut Running) -> Rejection {
    r.running = std::mem::take(running);
    r
}

/// `X-RateLimit-Limit`, `-Remaining`, `-Reset` for a quota.
pub fn quota_headers(q: &Quota) -> [(HeaderName, HeaderValue); 3] {
    [
        (X_RATELIMIT_LIMIT, HeaderValue::from(q.limit)),
        (X_RATELIMIT_REMAINING, HeaderValue::from(q.remaining)),
        (X_RATELIMIT_RESET, HeaderValue::from(q.reset_secs)),
    ]
}

/// Writes an IP into `buf` without allocating; "" when unknown. IPv4 by hand: `Display` goes
/// through the formatter's padding machinery, over a thousand instructions per address.
pub(crate) fn ip_str(ip: Option<IpAddr>, buf: &mut [u8; 46]) -> &str {
    use std::io::Write;
    match ip {
        None => "",
        Some(IpAddr::V4(v4)) => {
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + (o / 10) % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            std::str::from_utf8(&buf[..n]).unwrap_or("")
        }
        Some(ip) => {
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            if write!(cur, "{ip}").is_err() {
                return "";
            }
            let n = cur.position() as usize;
            std::str::from_utf8(&buf[..n]).unwrap_or("")
        }
    }
}

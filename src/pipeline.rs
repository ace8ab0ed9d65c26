//! `run`: the fixed order of request-time decisions, from the snapshot and the request head:
//! path → route → auth → consumer-restriction (route side, then consumer side) → limit-count.
//! Each step reads the snapshot only; the awaits are a password-hash check on a cache miss and
//! the limiter.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;

use pingora_http::RequestHeader;

use crate::limiter::Limiter;

use crate::auth::hmac_auth::BodyCheck;
use crate::auth::{self, AuthRequest, Hide, Identity};
use crate::path::{self, NormalPath};
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
    /// The registry plugin instances of this request, with their state.
    pub running: Running,
}

/// Why a request was answered by the gateway, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    BadRequest,
    RouteNotFound,
    Auth(&'static str),
    /// A registry plugin answered (the plugin's name).
    Plugin(&'static str),
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
    let (raw, origin_form) = path::client_path(req);
    let NormalPath { matching, upstream } = path::normalize(raw)
        .map_err(|_| reject(Reject::bad_request(), RejectKind::BadRequest, None, None))?;
    // The host is read only when some route is bound to hosts.
    let host = snap
        .router
        .routes_by_host()
        .then(|| {
            req.uri.host().or_else(|| {
                req.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
        })
        .flatten()
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
    if let Cow::Owned(p) = &matching {
        running.path = Some(p.as_slice().into());
    }

    // Registry plugins that run before authentication (cors, ip-restriction, request-id...).
    let anonymous_view = RequestView {
        req,
        path: &matching,
        remote: info.remote,
        local: info.local,
        tls: info.tls,
        upstream: None,
        route_id: &route.id,
        service_id: route.service.as_deref(),
        consumer: None,
        consumer_group: None,
        consumer_labels: &[],
        limiter,
    };
    let instances = Instances {
        global: &snap.global_plugins,
        route: &route.plugins.extra,
        consumer: &[],
    };
    run_registry(&mut running, &anonymous_view, instances.pre_auth())
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

    // Plugins after authentication: global rules', then the route's and the consumer's (or its
    // group's) merged by priority (consumer-restriction 2400, forward-auth 2002, proxy-rewrite
    // 1008, limit-count 1002, limit-req 1001...).
    let instances = Instances {
        consumer: consumer.map_or(&[][..], |c| &c.plugins.extra[..]),
        ..instances
    };
    let post_view = RequestView {
        consumer: consumer.map(|c| &*c.username),
        consumer_group: consumer.and_then(|c| snap.consumers.group_id(c)),
        consumer_labels: consumer.map_or(&[][..], |c| &c.labels[..]),
        ..anonymous_view
    };
    run_registry(&mut running, &post_view, instances.post_auth())
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
        running,
    })
}

/// The registry plugin instances of one request, in the order they run: before
/// authentication, global rules' then the route's (priority above [`AUTH_PRIORITY`]); after
/// it, global rules' again, then the route's (those no consumer instance replaces) and the
/// consumer's (or its group's) merged highest priority first.
#[derive(Clone, Copy)]
pub(crate) struct Instances<'a> {
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
    pub(crate) fn pre_auth(self) -> impl Iterator<Item = &'a Named> {
        (self.global.iter().filter(is_pre_auth)).chain(self.route.iter().filter(is_pre_auth))
    }

    /// Those that run after authentication.
    pub(crate) fn post_auth(self) -> impl Iterator<Item = &'a Named> {
        (self.global.iter().filter(is_post_auth)).chain(PostAuthIter {
            lists: self,
            i: 0,
            j: 0,
        })
    }

    /// All of them, in order.
    pub(crate) fn all(self) -> impl Iterator<Item = &'a Named> {
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

/// Runs the request step of each instance; a plugin that answers ends the request (with the
/// instances that ran, for their `done`).
async fn run_registry<'a>(
    running: &mut Running,
    view: &RequestView<'_>,
    list: impl Iterator<Item = &'a Named>,
) -> Result<(), (Reject, &'static str, Running)> {
    for (_, p) in list {
        let mut state = None;
        let step = match p.request(view, &mut state) {
            Some(step) => step,
            None => p.request_io(view, &mut state).await,
        };
        running.list.push((p.clone(), state));
        match step {
            Step::Continue => {}
            Step::Respond(r) => return Err((r, p.name(), std::mem::take(running))),
            Step::Delay(d) => tokio::time::sleep(d).await,
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

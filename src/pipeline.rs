//! `run`: the fixed order of request-time decisions, from the snapshot and the request head:
//! path → route → auth → consumer-restriction (route side, then consumer side) → limit-count.
//! Each step reads the snapshot only; the awaits are a password-hash check on a cache miss and
//! the limiter.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use pingora_http::RequestHeader;

use crate::auth::hmac_auth::BodyCheck;
use crate::auth::{self, AuthRequest, Hide, Identity};
use crate::path::{self, NormalPath};
use crate::plugins::attach_consumer_label::AttachConsumerLabel;
use crate::plugins::consumer_restriction::RestrictionType;
use crate::reject::Reject;
use crate::router::{method_bit, request_host};
use crate::snapshot::{RouteId, Snapshot, UpstreamId};

/// What the pipeline decided for a request that goes upstream.
#[derive(Debug)]
pub struct Decision {
    pub route: RouteId,
    pub upstream: UpstreamId,
    /// The normalised path when it differs from the one the client sent.
    pub new_path: Option<Box<[u8]>>,
    pub identity: Option<Identity>,
    /// Credential sources to remove (`hide_credentials`).
    pub hide: Vec<Hide>,
    /// hmac-auth `validate_request_body`.
    pub body_check: Option<BodyCheck>,
    /// The attach-consumer-label conf in force (consumer's over the route's).
    pub attach: Option<Arc<AttachConsumerLabel>>,
}

/// Why a request was answered by the gateway, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    BadRequest,
    RouteNotFound,
    Auth(&'static str),
    Restricted,
    RateLimited,
    LimiterDown,
}

/// A request the gateway answers itself.
#[derive(Debug)]
pub struct Rejection {
    pub reject: Reject,
    pub kind: RejectKind,
    pub route: Option<RouteId>,
    pub identity: Option<Identity>,
}

/// The request facts the pipeline reads besides the header.
pub struct RequestInfo {
    pub remote: Option<IpAddr>,
    pub now: SystemTime,
}

/// Runs every step; an `Err` is answered as is.
pub async fn run(
    snap: &Snapshot,
    req: &RequestHeader,
    info: &RequestInfo,
) -> Result<Decision, Rejection> {
    let reject = |reject: Reject, kind, route, identity| Rejection {
        reject,
        kind,
        route,
        identity,
    };
    let raw = req.uri.path().as_bytes();
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

    // Auth.
    let ar = AuthRequest {
        req,
        path: &matching,
        now: info.now,
    };
    let auth = auth::authenticate(&route.auth, &snap.consumers, &ar)
        .await
        .map_err(|a| reject(a.reject, RejectKind::Auth(a.plugin), Some(route_id), None))?;
    let identity = auth.identity;
    let consumer = identity.map(|i| snap.consumers.get(i.consumer));

    // consumer-restriction: the route's (by consumer or group), then the consumer's (by service or route).
    let method = method_bit(method);
    if let Some(r) = &route.plugins.restriction {
        let value = match r.kind {
            RestrictionType::ConsumerGroupId => consumer.and_then(|c| snap.consumers.group_id(c)),
            _ => consumer.map(|c| &*c.username),
        };
        r.check(value, method)
            .map_err(|rj| reject(rj.clone(), RejectKind::Restricted, Some(route_id), identity))?;
    }
    if let Some(r) = consumer.and_then(|c| c.plugins.restriction.as_ref()) {
        let value = match r.kind {
            RestrictionType::ServiceId => route.service.as_deref(),
            _ => Some(&*route.id),
        };
        r.check(value, method)
            .map_err(|rj| reject(rj.clone(), RejectKind::Restricted, Some(route_id), identity))?;
    }

    let attach = consumer
        .and_then(|c| c.plugins.attach_labels.clone())
        .or_else(|| route.plugins.attach_labels.clone());
    let new_path = if *upstream != *raw {
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
    })
}

//! `run`: the fixed order of request-time decisions, as pure functions of the snapshot and the
//! request head: route → auth → consumer plugins → restriction → limit-count.

use std::net::IpAddr;

use pingora_http::RequestHeader;

use crate::path::{self, NormalPath};
use crate::reject::Reject;
use crate::router::request_host;
use crate::snapshot::{RouteId, Snapshot, UpstreamId};

/// What the pipeline decided for a request that goes upstream.
#[derive(Debug)]
pub struct Decision {
    pub route: RouteId,
    pub upstream: UpstreamId,
    /// The normalised path when it differs from the one the client sent.
    pub new_path: Option<Box<[u8]>>,
}

/// The request facts the pipeline reads besides the header.
pub struct RequestInfo {
    pub remote: Option<IpAddr>,
}

/// Runs every step; an `Err` is answered as is.
pub fn run(snap: &Snapshot, req: &RequestHeader, info: &RequestInfo) -> Result<Decision, Reject> {
    let raw = req.uri.path().as_bytes();
    let NormalPath { matching, upstream } = path::normalize(raw).map_err(|_| Reject::bad_request())?;
    let host = req
        .uri
        .host()
        .or_else(|| req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()))
        .map(request_host);
    let route = snap
        .router
        .find(host.as_deref(), &matching, req.method.as_str().as_bytes(), info.remote)
        .ok_or_else(Reject::route_not_found)?;
    let new_path = if *upstream != *raw { Some(upstream.into_owned().into_boxed_slice()) } else { None };
    Ok(Decision { route, upstream: snap.route(route).upstream, new_path })
}

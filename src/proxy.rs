//! `Gateway`: the Pingora `ProxyHttp` implementation and its per-request `Ctx`. The only file
//! that touches `Session`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use log::debug;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::subrequest::pipe::{InputBody, InputBodyType, pipe_subrequest};
use pingora_proxy::subrequest::{BodyMode, Ctx as SubrequestCtx};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::access_log::{AccessLog, Entry};
use crate::auth::{self, Hide, Identity};
use crate::headers::{self, Head};
use crate::limiter::Limiter;
use crate::metrics::{Metrics, RouteMetrics};
use crate::pipeline::{self, Decision, RejectKind, RequestInfo};
use crate::plugins::shape::{LazyView, RequestView, Running};
use crate::reject::Reject;
use crate::reload::{ConfigStore, Live};
use crate::snapshot::{RouteId, Snapshot};
use crate::upstream::HostMode;

/// The proxy service.
pub(crate) struct Gateway {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
    pub access_log: Option<Arc<AccessLog>>,
    /// Requests in progress, so a graceful shutdown can end as soon as they are done.
    pub inflight: Arc<AtomicUsize>,
    /// Node file `client_max_body_size`; 0 = no limit.
    pub max_body: u64,
    /// Every limit-count counter; outlives snapshots.
    pub limiter: Arc<Limiter>,
    /// Node file `keepalive_timeout`, seconds.
    pub keepalive_timeout: u64,
}

/// Per-request state: the snapshot (held to the end) and what the pipeline decided.
///
/// Boxed: Pingora keeps the context inside the request's future, which it moves (memcpy) into
/// a `Box` once or twice per request; an 8-byte handle instead of the ~500-byte state keeps
/// those copies as small as bare Pingora's.
pub(crate) struct Ctx(Box<CtxState>);

impl std::ops::Deref for Ctx {
    type Target = CtxState;
    fn deref(&self) -> &CtxState {
        &self.0
    }
}

impl std::ops::DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut CtxState {
        &mut self.0
    }
}

/// What [`Ctx`] holds.
pub(crate) struct CtxState {
    snap: Option<Arc<Live>>,
    decision: Option<Decision>,
    /// Route and identity of a rejected request, for metrics and the access log.
    route: Option<RouteId>,
    identity: Option<Identity>,
    /// `Host` for `pass_host: node`, from the node picked last.
    node_host: Option<HeaderValue>,
    upstream_addr: Option<SocketAddr>,
    tries: u32,
    start: Instant,
    upstream_start: Option<Instant>,
    body_seen: u64,
    /// Plugin instances that ran before the gateway answered the request itself.
    rejected_running: Option<Running>,
    /// The request went upstream through a subrequest carrying its checked body; that
    /// subrequest logs and counts it.
    delegated: bool,
    /// An answer decided while the body streamed, written by `fail_to_proxy`.
    pending: Option<Reject>,
    _inflight: InFlight,
}

/// Counts a request as in flight until its context is dropped (after `logging`).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: &Arc<AtomicUsize>) -> InFlight {
        n.fetch_add(1, Ordering::Relaxed);
        InFlight(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The most headers `upstream_request_filter` adds itself (identity 3, forwarding 5).
const UPSTREAM_HEADERS_ADDED: usize = 8;

/// Sets the identity headers (client copies are already gone).
fn set_identity(snap: &Snapshot, d: &Decision, out: &mut Head<'_, RequestHeader>) -> Result<()> {
    let Some(id) = d.identity else { return Ok(()) };
    let consumer = snap.consumers.get(id.consumer);
    out.add(
        &headers::write::X_CONSUMER_USERNAME,
        consumer.username_header.clone(),
    )?;
    if let Some(cid) = id
        .credential
        .and_then(|c| snap.consumers.credential(c).header().cloned())
    {
        out.add(&headers::write::X_CREDENTIAL_IDENTIFIER, cid)?;
    }
    if let Some(custom) = consumer.label("custom_id").filter(|_| !id.anonymous) {
        out.add(&headers::write::X_CONSUMER_CUSTOM_ID, custom.clone())?;
    }
    Ok(())
}

/// Removes the credential sources `hide_credentials` asks for.
fn hide_credentials(
    hide: &[Hide],
    original: &RequestHeader,
    req: &mut RequestHeader,
) -> Result<()> {
    for h in hide {
        match h {
            Hide::Header(name) => {
                req.remove_header(name);
            }
            Hide::Query(arg) => {
                let Some(q) = req.uri.query() else { continue };
                let q = crate::query::without(q, arg);
                let mut uri = req.uri.path().to_string();
                if !q.is_empty() {
                    uri.push('?');
                    uri.push_str(&q);
                }
                let uri = http::Uri::try_from(uri)
                    .map_err(|e| Error::because(ErrorType::InternalError, "bad query", e))?;
                req.set_uri(uri);
            }
            Hide::Cookie(name) => match auth::cookies_without(original, name) {
                Some(rest) => req.insert_header(http::header::COOKIE, rest)?,
                None => {
                    req.remove_header(&http::header::COOKIE);
                }
            },
        }
    }
    Ok(())
}

/// Writes a rejection as a complete response, keeping the connection usable.
async fn write_reject(session: &mut Session, r: &Reject) -> Result<()> {
    let h = reject_header(r)?;
    write_reject_head(session, h, r).await
}

/// The response head of a gateway answer, before the plugins' `response` hooks.
fn reject_header(r: &Reject) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(r.status, Some(3 + r.headers.len()))?;
    if !r
        .headers
        .iter()
        .any(|(n, _)| n == http::header::CONTENT_TYPE)
    {
        h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, r.body.len())?;
    for (n, v) in &r.headers {
        h.append_header(n.clone(), v.clone())?;
    }
    Ok(h)
}

async fn write_reject_head(session: &mut Session, h: ResponseHeader, r: &Reject) -> Result<()> {
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(r.body.clone()), true)
        .await?;
    Ok(())
}

/// A gateway answer on a route with registry plugins: every instance of the request
/// ([`pipeline::Instances`]) sees its head and body, as APISIX's header and
/// body filters run after another plugin's exit (response-rewrite can turn a 401 into a 200).
fn rewrite_reject(
    snap: &Snapshot,
    route_id: RouteId,
    identity: Option<Identity>,
    running: &mut Running,
    session: &Session,
    r: &Reject,
    limiter: &Limiter,
) -> Result<(Box<ResponseHeader>, Option<Bytes>)> {
    let route = snap.route(route_id);
    let consumer = identity.map(|i| snap.consumers.get(i.consumer));
    let instances = pipeline::Instances {
        global: &snap.global_plugins,
        route: &route.plugins.extra,
        consumer: consumer.map_or(&[][..], |c| &c.plugins.extra[..]),
    };
    let mut list: Vec<(
        crate::plugins::shape::Instance,
        crate::plugins::shape::State,
    )> = instances.all().map(|(_, p)| (p.clone(), None)).collect();
    // The instances that ran keep their state (and get it back for `done`).
    for (p, s) in &mut running.list {
        if let Some(slot) = list.iter_mut().find(|(q, _)| Arc::ptr_eq(p, q)) {
            slot.1 = s.take();
        }
    }
    let mut h = reject_header(r)?;
    let mut body = Some(r.body.clone());
    let view = LazyView::from(view_of(
        snap,
        route_id,
        identity,
        running.path(session.req_header()),
        session,
        None,
        limiter,
    ));
    let mut result = Ok(());
    // Rare (a gateway answer): the plugins' headers go through the maps.
    let mut head = Head::new(&mut h, false);
    for (p, state) in list.iter_mut().filter(|(p, _)| p.edits_response()) {
        result = result.and(p.response(&mut head, &view, state));
    }
    for (p, state) in list.iter_mut().filter(|(p, _)| p.filters_body()) {
        p.response_body(&mut body, true, state);
    }
    for (p, s) in &mut running.list {
        if let Some(slot) = list.iter_mut().find(|(q, _)| Arc::ptr_eq(p, q)) {
            *s = slot.1.take();
        }
    }
    result?;
    Ok((Box::new(h), body))
}

impl CtxState {
    fn snap(&self) -> Result<&Arc<Live>> {
        self.snap
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no snapshot"))
    }
    fn decision(&self) -> Result<&Decision> {
        self.decision
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no decision"))
    }
    fn route_metrics<'a>(&'a self, metrics: &'a Metrics) -> &'a RouteMetrics {
        match (&self.snap, self.route) {
            (Some(s), Some(r)) => s
                .route_metrics
                .get(r.idx())
                .map_or(metrics.unmatched(), |m| m),
            _ => metrics.unmatched(),
        }
    }
}

fn too_large() -> Reject {
    Reject::new(
        413,
        Bytes::from_static(b"{\"error_msg\":\"413 Request Entity Too Large\"}\n"),
    )
}

/// What a main request hands to the subrequest that proxies its checked body.
struct Handoff {
    snap: Arc<Live>,
    decision: Decision,
    start: Instant,
}

impl Gateway {
    /// A body that must be known before the upstream hears of the request: hmac-auth
    /// `validate_request_body`, or a chunked body under `client_max_body_size`. The whole body
    /// (bounded by `max_req_body_size` and `client_max_body_size`) is read and its digest checked
    /// before any upstream connection is opened. A good one is proxied by a subrequest that
    /// carries the body, so bodies of any size reach the upstream whole; a bad one never does.
    async fn proxy_checked_body(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        mut d: Decision,
    ) -> Result<bool> {
        let check = d.body_check.take();
        if session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            session.write_continue_response().await?;
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            let len = body.len() as u64;
            let refused = if let Some(r) = check.as_ref().and_then(|c| c.too_large(len)) {
                Some(r)
            } else if self.max_body > 0 && len > self.max_body {
                Some(too_large())
            } else {
                None
            };
            if let Some(r) = refused {
                ctx.decision = Some(d);
                write_reject(session, &r).await?;
                session.set_keepalive(None);
                return Ok(true);
            }
        }
        if let Some(Err(r)) = check.map(|c| c.verify(&body)) {
            self.metrics
                .auth_failure(ctx.route_metrics(&self.metrics), "hmac-auth");
            ctx.identity = None;
            write_reject(session, &r).await?;
            return Ok(true);
        }
        let Some(spawner) = session.subrequest_spawner.take() else {
            return Error::e_explain(ErrorType::InternalError, "no subrequest spawner");
        };
        let snap = ctx.snap()?.clone();
        let handoff: Option<Handoff> = Some(Handoff {
            snap,
            decision: d,
            start: ctx.start,
        });
        let sub_ctx = SubrequestCtx::builder()
            .user_ctx(Box::new(handoff))
            .body_mode(BodyMode::ExpectBody)
            .build();
        let (sub, handle) = spawner.create_subrequest(&session.downstream_session, sub_ctx);
        let input = if body.is_empty() {
            InputBody::NoBody
        } else {
            InputBody::Bytes(vec![body.freeze()])
        };
        ctx.delegated = true;
        match pipe_subrequest(
            session,
            sub,
            handle,
            |t| Ok(Some(t)),
            InputBodyType::Preset(input),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.state.header_received => {
                // The response head went out: cut the connection rather than splice an error in.
                Err(e.error)
            }
            Err(e) => {
                ctx.delegated = false;
                Err(e.error)
            }
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds response compression at level 0, which
    /// tollgate never raises (it has no compression plugin): its hooks would only cost each
    /// request an allocation and four calls.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx(Box::new(CtxState {
            snap: None,
            decision: None,
            route: None,
            identity: None,
            node_host: None,
            upstream_addr: None,
            tries: 0,
            start: Instant::now(),
            upstream_start: None,
            body_seen: 0,
            rejected_running: None,
            delegated: false,
            pending: None,
            _inflight: InFlight::new(&self.inflight),
        }))
    }

    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Ctx) -> bool {
        // Only a main request may hand its checked body to a subrequest (hmac-auth).
        session.subrequest_ctx.is_none()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if let Some(h) = session
            .subrequest_ctx
            .as_mut()
            .and_then(|c| c.user_ctx_mut())
            .and_then(|u| u.downcast_mut::<Option<Handoff>>())
            .and_then(Option::take)
        {
            // A subrequest made by `proxy_checked_body`: everything is decided already, and
            // the body is here (a `100 Continue` was answered by the main request).
            session
                .req_header_mut()
                .remove_header(&http::header::EXPECT);
            ctx.start = h.start;
            ctx.route = Some(h.decision.route);
            ctx.identity = h.decision.identity;
            ctx.snap = Some(h.snap);
            ctx.decision = Some(h.decision);
            return Ok(false);
        }
        // A request pipelined behind this one is served next, in order, as nginx does
        // (Pingora's default drops it and closes the connection).
        session.downstream_session.set_pipelining_enabled(true);
        // Pingora keeps an HTTP/1.1 connection forever between requests: bound it. Off stays
        // off (HTTP/1.0, `Connection: close`, shutdown under way).
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_timeout));
        }
        let snap = self.store.load_full();
        let req = session.req_header();
        let oversized =
            if req.uri.path_and_query().map_or(0, |p| p.as_str().len()) > crate::reject::MAX_URI {
                Some(Reject::uri_too_long())
            } else if req
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>()
                > crate::reject::MAX_HEADERS
            {
                Some(Reject::headers_too_large())
            } else {
                None
            };
        if let Some(r) = oversized {
            ctx.snap = Some(snap);
            write_reject(session, &r).await?;
            return Ok(true);
        }
        if self.max_body > 0 {
            let len = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if len.is_some_and(|l| l > self.max_body) {
                ctx.snap = Some(snap);
                write_reject(session, &too_large()).await?;
                return Ok(true);
            }
        }
        let info = RequestInfo {
            remote: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            local: session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
            now: SystemTime::now(),
        };
        let outcome = pipeline::run(&snap, req, &info, &self.limiter).await;
        ctx.snap = Some(snap);
        match outcome {
            Ok(d) => {
                ctx.route = Some(d.route);
                ctx.identity = d.identity;
                let req = session.req_header();
                let unsized_body = self.max_body > 0
                    && !req.headers.contains_key(http::header::CONTENT_LENGTH)
                    && req.headers.contains_key(http::header::TRANSFER_ENCODING);
                if d.body_check.is_some() || unsized_body {
                    return self.proxy_checked_body(session, ctx, d).await;
                }
                ctx.decision = Some(d);
                Ok(false)
            }
            Err(r) => {
                ctx.route = r.route;
                ctx.identity = r.identity;
                let rm = ctx.route_metrics(&self.metrics);
                match r.kind {
                    RejectKind::Auth(plugin) => self.metrics.auth_failure(rm, plugin),
                    RejectKind::Plugin(name) => self.metrics.plugin_rejection(rm, name),
                    RejectKind::BadRequest | RejectKind::RouteNotFound => {}
                }
                debug!(
                    "rejected {} {}",
                    r.reject.status,
                    session.req_header().uri.path()
                );
                let ctx: &mut CtxState = ctx;
                let running = ctx.rejected_running.insert(r.running);
                match (r.route, ctx.snap.clone()) {
                    (Some(route), Some(snap))
                        if !snap.route(route).plugins.extra.is_empty()
                            || !snap.global_plugins.is_empty()
                            || ctx.identity.is_some_and(|i| {
                                !snap.consumers.get(i.consumer).plugins.extra.is_empty()
                            }) =>
                    {
                        let (head, body) = rewrite_reject(
                            &snap,
                            route,
                            ctx.identity,
                            running,
                            session,
                            &r.reject,
                            &self.limiter,
                        )?;
                        session.write_response_header(head, false).await?;
                        session.write_response_body(body, true).await?;
                    }
                    _ => write_reject(session, &r.reject).await?,
                }
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let len = body.as_ref().map_or(0, |b| b.len() as u64);
        ctx.body_seen += len;
        if self.max_body > 0 && ctx.body_seen > self.max_body {
            ctx.pending = Some(too_large());
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over client_max_body_size",
            );
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Fields borrowed apart: the snapshot is read while the node is written down.
        let ctx: &mut CtxState = ctx;
        let (Some(snap), Some(d)) = (&ctx.snap, &ctx.decision) else {
            return Error::e_explain(ErrorType::InternalError, "no snapshot or decision");
        };
        let route = snap.route(d.route);
        let up = snap.upstream(d.upstream);
        let key = match up.hash_key() {
            Some((on, key)) => hash_input(snap, d, on, key, session),
            None => Vec::new(),
        };
        let node = up.pick(&key).ok_or_else(|| {
            Error::explain(ErrorType::ConnectNoRoute, "no upstream node available")
        })?;
        let mut peer = node.peer.clone();
        if let Some(t) = &route.timeouts {
            t.apply(&mut peer);
        }
        ctx.node_host = Some(node.host_header.clone());
        ctx.upstream_addr = Some(node.addr);
        ctx.upstream_start.get_or_insert_with(Instant::now);
        ctx.tries += 1;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let snap = ctx.snap()?;
        let d = ctx.decision()?;
        // Read before the client's copy goes: ours extends it.
        let client_xff = req
            .headers
            .get(&headers::X_FORWARDED_FOR)
            .filter(|v| v.to_str().is_ok())
            .cloned();
        headers::remove_client_copies(req, &snap.strip);
        hide_credentials(&d.hide, session.req_header(), req)?;
        if let Some(p) = &d.new_path {
            let mut uri = p.to_vec();
            if let Some(q) = req.uri.query() {
                uri.push(b'?');
                uri.extend_from_slice(q.as_bytes());
            }
            req.set_raw_path(&uri)?;
        }
        match &snap.upstream(d.upstream).host_mode {
            HostMode::Pass => {}
            HostMode::Node => {
                if let Some(h) = &ctx.node_host {
                    req.insert_header(http::header::HOST, h.clone())?;
                }
            }
            HostMode::Rewrite(h) => req.insert_header(http::header::HOST, h.clone())?,
        }
        let mut editors = d
            .running
            .list
            .iter()
            .filter(|(p, _)| p.edits_upstream_request())
            .peekable();
        let mut out = Head::new(req, editors.peek().is_none());
        out.reserve(UPSTREAM_HEADERS_ADDED)?;
        set_identity(snap, d, &mut out)?;
        forwarded_headers(session, client_xff, &mut out)?;
        if editors.peek().is_some() {
            let make = || request_view(snap, d, session, ctx.upstream_addr, &self.limiter);
            let view = LazyView::new(&make);
            for (p, state) in editors {
                p.upstream_request(req, &view, state)?;
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let ctx: &mut CtxState = ctx;
        let upstream = ctx.upstream_addr;
        if let (Some(snap), Some(d)) = (&ctx.snap, ctx.decision.as_mut())
            && !d.running.list.is_empty()
        {
            let mut list = std::mem::take(&mut d.running.list);
            let make = || request_view(snap, d, session, upstream, &self.limiter);
            let view = LazyView::new(&make);
            let mut result = Ok(());
            // An only editor's headers go straight to the wire: none edits the head after it.
            let editors = list.iter().filter(|(p, _)| p.edits_response()).count();
            let mut head = Head::new(resp, editors == 1);
            for (p, state) in list.iter_mut().filter(|(p, _)| p.edits_response()) {
                result = result.and(p.response(&mut head, &view, state));
            }
            d.running.list = list;
            result?;
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if let Some(d) = ctx.decision.as_mut() {
            for (p, state) in d.running.list.iter_mut().filter(|(p, _)| p.filters_body()) {
                p.response_body(body, end_of_stream, state);
            }
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retries = match (&ctx.snap, &ctx.decision) {
            (Some(s), Some(d)) => s.upstream(d.upstream).retries,
            _ => 0,
        };
        if ctx.tries <= retries {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if let Some(r) = ctx.pending.take() {
            let _ = write_reject(session, &r).await;
            return FailToProxy {
                error_code: r.status,
                can_reuse_downstream: false,
            };
        }
        if session.response_written().is_some() {
            // The head (and maybe part of the body) went out: never splice an error into the
            // body or end it cleanly. Dropping the connection cuts the transfer, so the client
            // sees it failed.
            if e.esource() == &ErrorSource::Upstream {
                let (_, kind) = Reject::from_pingora(e);
                self.metrics
                    .upstream_error(ctx.route_metrics(&self.metrics), kind);
                crate::limited_log!(
                    log::Level::Warn,
                    "upstream failed after the response head was sent ({:?}): client connection aborted",
                    e.etype()
                );
            }
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let downstream_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        if downstream_gone {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let (r, kind) = Reject::from_pingora(e);
        if e.esource() == &ErrorSource::Upstream {
            self.metrics
                .upstream_error(ctx.route_metrics(&self.metrics), kind);
        }
        // The instances that ran see the gateway's answer too (limit-count's quota headers,
        // CORS headers on a 502).
        match (ctx.snap.clone(), ctx.decision.as_mut()) {
            (Some(snap), Some(d)) if !d.running.list.is_empty() => {
                if let Ok((head, body)) = rewrite_reject(
                    &snap,
                    d.route,
                    d.identity,
                    &mut d.running,
                    session,
                    &r,
                    &self.limiter,
                ) && session.write_response_header(head, false).await.is_ok()
                {
                    let _ = session.write_response_body(body, true).await;
                }
            }
            _ => {
                let _ = write_reject(session, &r).await;
            }
        }
        FailToProxy {
            error_code: r.status,
            can_reuse_downstream: e.esource() == &ErrorSource::Upstream,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _e: &Error) -> bool {
        // A client can cause one proxy error per request: one line per second at most.
        static LIMIT: crate::log_limit::LogLimit = crate::log_limit::LogLimit::new();
        match LIMIT.permit() {
            Some(0) => false,
            Some(n) => {
                log::warn!("{n} proxy error lines suppressed in the last second");
                false
            }
            None => true,
        }
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // Never the query: it may carry an API key or a JWT.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let ctx: &mut CtxState = ctx;
        let running = ctx.decision.as_mut().map(|d| &mut d.running);
        for (p, state) in running
            .into_iter()
            .chain(ctx.rejected_running.as_mut())
            .flat_map(|r| r.list.iter_mut())
        {
            p.done(state);
        }
        if ctx.delegated {
            return;
        }
        let now = Instant::now();
        let total = now.saturating_duration_since(ctx.start);
        let upstream = ctx.upstream_start.map(|t| now.saturating_duration_since(t));
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let rm = ctx.route_metrics(&self.metrics);
        let consumer = match (&ctx.snap, ctx.identity) {
            (Some(s), Some(i)) => Some((i.consumer, &*s.consumers.get(i.consumer).username)),
            _ => None,
        };
        rm.request.observe(total.as_secs_f64());
        if let Some(u) = upstream {
            rm.upstream.observe(u.as_secs_f64());
        }
        rm.gateway.observe(
            total
                .saturating_sub(upstream.unwrap_or_default())
                .as_secs_f64(),
        );
        let req = session.req_header();
        let head_len: usize = req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + req.uri.path().len()
            + req.uri.query().map_or(0, |q| q.len() + 1)
            + 16;
        rm.ingress
            .inc_by((head_len + session.body_bytes_read()) as u64);
        let resp_head: usize = session.response_written().map_or(0, |r| {
            r.headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>()
                + r.wire_headers().len()
                + 17
        });
        rm.egress
            .inc_by((resp_head + session.body_bytes_sent()) as u64);
        // Counted last, so a scrape that sees this request sees its durations and bytes too.
        self.metrics.request(rm, consumer, status);
        if let Some(log) = &self.access_log {
            let request_id = ctx
                .decision
                .as_ref()
                .map(|d| &d.running)
                .into_iter()
                .chain(ctx.rejected_running.as_ref())
                .flat_map(|r| r.list.iter())
                .find_map(|(p, st)| p.request_id(st))
                .unwrap_or("");
            let remote_addr = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            let (route, service, credential) = match (&ctx.snap, ctx.route) {
                (Some(s), Some(r)) => {
                    let route = s.route(r);
                    let cred = ctx
                        .identity
                        .and_then(|i| i.credential)
                        .and_then(|c| s.consumers.credential(c).id())
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    (&*route.id, route.service.as_deref().unwrap_or(""), cred)
                }
                _ => ("", "", ""),
            };
            log.log(&Entry {
                time: SystemTime::now(),
                remote_addr,
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                bytes_sent: session.body_bytes_sent(),
                request_time: total,
                upstream_time: upstream,
                route,
                service,
                consumer: consumer.map_or("", |c| c.1),
                credential,
                upstream_addr: ctx.upstream_addr,
                protocol: match req.version {
                    http::Version::HTTP_2 => "HTTP/2.0",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                },
                referer: &if log.shows_client_headers() {
                    crate::access_log::redact_referer(header_str(req, http::header::REFERER))
                } else {
                    "".into()
                },
                user_agent: if log.shows_client_headers() {
                    header_str(req, http::header::USER_AGENT)
                } else {
                    ""
                },
                request_id,
            });
        }
    }
}

/// A request header's value as text; "" when absent or not visible ASCII.
fn header_str(req: &RequestHeader, name: http::HeaderName) -> &str {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `X-Forwarded-For` (the client's, extended), `X-Real-IP`, `X-Forwarded-Proto/Host/Port`, as
/// APISIX sets them.
///
/// Hot path: no `format!`; the address and port values are made once per thread and reused.
fn forwarded_headers(
    session: &Session,
    client_xff: Option<HeaderValue>,
    out: &mut Head<'_, RequestHeader>,
) -> Result<()> {
    /// `X-Forwarded-Port`'s value: a listener's port, built once per thread and port.
    fn port_value(port: u16) -> HeaderValue {
        thread_local! {
            static LAST: std::cell::RefCell<Option<(u16, HeaderValue)>> =
                const { std::cell::RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            match &*last {
                Some((p, v)) if *p == port => v.clone(),
                _ => {
                    let v = HeaderValue::from(port);
                    *last = Some((port, v.clone()));
                    v
                }
            }
        })
    }

    /// The client's address as a header value, formatted once per thread and address: the
    /// requests of a keep-alive connection, or of a load balancer in front, share one.
    fn ip_value(ip: std::net::IpAddr) -> Result<HeaderValue> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
                const { std::cell::RefCell::new(None) };
        }
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if let Some((a, v)) = &*last
                && *a == ip
            {
                return Ok(v.clone());
            }
            let mut buf = [0u8; 46];
            let v = HeaderValue::from_bytes(crate::addr::ip_bytes(Some(ip), &mut buf))
                .map_err(|e| Error::because(ErrorType::InternalError, "client ip", e))?;
            *last = Some((ip, v.clone()));
            Ok(v)
        })
    }

    if let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    {
        let real_ip = ip_value(ip)?;
        let ip = real_ip.as_bytes();
        let xff = match client_xff {
            Some(prev) => {
                let mut v = BytesMut::with_capacity(prev.len() + 2 + ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(ip);
                HeaderValue::from_maybe_shared(v.freeze())
                    .map_err(|e| Error::because(ErrorType::InternalError, "x-forwarded-for", e))?
            }
            None => real_ip.clone(),
        };
        out.add(&headers::write::X_FORWARDED_FOR, xff)?;
        out.add(&headers::write::X_REAL_IP, real_ip)?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    out.add(
        &headers::write::X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    )?;
    if let Some(port) = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.port())
    {
        out.add(&headers::write::X_FORWARDED_PORT, port_value(port))?;
    }
    if let Some(h) = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .cloned()
    {
        out.add(&headers::write::X_FORWARDED_HOST, h)?;
    }
    Ok(())
}

/// What the registry plugins' later hooks read about the request.
fn request_view<'a>(
    snap: &'a Snapshot,
    d: &'a Decision,
    session: &'a Session,
    upstream: Option<SocketAddr>,
    limiter: &'a Limiter,
) -> RequestView<'a> {
    view_of(
        snap,
        d.route,
        d.identity,
        d.running.path(session.req_header()),
        session,
        upstream,
        limiter,
    )
}

/// [`request_view`] from its parts (a rejected request has no [`Decision`]).
fn view_of<'a>(
    snap: &'a Snapshot,
    route: RouteId,
    identity: Option<Identity>,
    path: &'a [u8],
    session: &'a Session,
    upstream: Option<SocketAddr>,
    limiter: &'a Limiter,
) -> RequestView<'a> {
    let route = snap.route(route);
    let consumer = identity.map(|i| snap.consumers.get(i.consumer));
    RequestView {
        req: session.req_header(),
        path,
        remote: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        upstream,
        route_id: &route.id,
        service_id: route.service.as_deref(),
        consumer: consumer.map(|c| &*c.username),
        consumer_group: consumer.and_then(|c| snap.consumers.group_id(c)),
        consumer_labels: consumer.map_or(&[][..], |c| &c.labels[..]),
        local: local_ip(session),
        limiter,
    }
}

/// The gateway's own address the request came in on.
fn local_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .server_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The bytes a chash upstream hashes: a variable, a header, a cookie, or the consumer.
fn hash_input(
    snap: &Snapshot,
    d: &Decision,
    on: crate::config::raw::HashOn,
    key: &str,
    session: &Session,
) -> Vec<u8> {
    use crate::config::raw::HashOn;
    let req = session.req_header();
    match on {
        HashOn::Consumer => d
            .identity
            .map(|i| snap.consumers.get(i.consumer).username.as_bytes().to_vec())
            .unwrap_or_default(),
        HashOn::Header => req
            .headers
            .get(key)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
        HashOn::Cookie => auth::cookie(req, key)
            .map(|c| c.as_bytes().to_vec())
            .unwrap_or_default(),
        HashOn::Vars | HashOn::VarsCombinations => match key {
            "remote_addr" => session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip().to_string().into_bytes())
                .unwrap_or_default(),
            "uri" => req.uri.path().as_bytes().to_vec(),
            "request_uri" => req
                .uri
                .path_and_query()
                .map(|p| p.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
            "host" => req
                .headers
                .get(http::header::HOST)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default(),
            k => {
                if let Some(h) = k.strip_prefix("http_") {
                    req.headers
                        .get(h.replace('_', "-"))
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default()
                } else if let Some(a) = k.strip_prefix("arg_") {
                    match crate::query::arg(req.uri.query(), a) {
                        crate::query::Arg::One(v) => v.as_bytes().to_vec(),
                        _ => Vec::new(),
                    }
                } else {
                    Vec::new()
                }
            }
        },
    }
}

//! `Gateway`: the Pingora `ProxyHttp` implementation and its per-request `Ctx`. The only file
//! that touches `Session`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use log::debug;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::auth::{self, Hide};
use crate::headers;
use crate::metrics::Metrics;
use crate::pipeline::{self, Decision, RequestInfo};
use crate::reject::Reject;
use crate::reload::ConfigStore;
use crate::snapshot::Snapshot;
use crate::upstream::HostMode;

/// The proxy service.
pub struct Gateway {
    pub store: Arc<ConfigStore>,
    pub metrics: Arc<Metrics>,
}

/// Per-request state: the snapshot (held to the end) and what the pipeline decided.
pub struct Ctx {
    snap: Option<Arc<Snapshot>>,
    decision: Option<Decision>,
    /// `Host` for `pass_host: node`, from the node picked last.
    node_host: Option<HeaderValue>,
    tries: u32,
    start: Instant,
}

/// Sets the identity headers and attach-consumer-label headers (client copies are already gone).
fn set_identity(snap: &Snapshot, d: &Decision, req: &mut RequestHeader) -> Result<()> {
    let Some(id) = d.identity else { return Ok(()) };
    let consumer = snap.consumers.get(id.consumer);
    req.insert_header(
        headers::X_CONSUMER_USERNAME,
        consumer.username_header.clone(),
    )?;
    if let Some(cid) = id
        .credential
        .and_then(|c| snap.consumers.credential(c).id.clone())
    {
        req.insert_header(headers::X_CREDENTIAL_IDENTIFIER, cid)?;
    }
    if let Some(custom) = consumer.custom_id.as_ref().filter(|_| !id.anonymous) {
        req.insert_header(headers::X_CONSUMER_CUSTOM_ID, custom.clone())?;
    }
    for (name, label) in d.attach.iter().flat_map(|a| a.headers.iter()) {
        if let Some(v) = consumer.labels.get(label) {
            req.insert_header(name.clone(), v.clone())?;
        }
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
                let q = auth::query_without(q, arg);
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
    let mut h = ResponseHeader::build(r.status, Some(3 + r.headers.len()))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    h.insert_header(http::header::CONTENT_LENGTH, r.body.len())?;
    for (n, v) in &r.headers {
        h.append_header(n.clone(), v.clone())?;
    }
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(r.body.clone()), true)
        .await?;
    Ok(())
}

impl Ctx {
    fn snap(&self) -> Result<&Arc<Snapshot>> {
        self.snap
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no snapshot"))
    }
    fn decision(&self) -> Result<&Decision> {
        self.decision
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no decision"))
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: None,
            decision: None,
            node_host: None,
            tries: 0,
            start: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let snap = self.store.load_full();
        let info = RequestInfo {
            remote: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            now: SystemTime::now(),
        };
        let outcome = pipeline::run(&snap, session.req_header(), &info).await;
        ctx.snap = Some(snap);
        match outcome {
            Ok(d) => {
                ctx.decision = Some(d);
                Ok(false)
            }
            Err(r) => {
                debug!(
                    "rejected {} {}",
                    r.reject.status,
                    session.req_header().uri.path()
                );
                write_reject(session, &r.reject).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let snap = ctx.snap()?.clone();
        let d = ctx.decision()?;
        let route = snap.route(d.route);
        let up = snap.upstream(d.upstream);
        let node = up.pick(b"").ok_or_else(|| {
            Error::explain(ErrorType::ConnectNoRoute, "no upstream node available")
        })?;
        let mut peer = node.peer.clone();
        if let Some(t) = &route.timeouts {
            t.apply(&mut peer);
        }
        ctx.node_host = Some(node.host_header.clone());
        ctx.tries += 1;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let snap = ctx.snap()?.clone();
        let d = ctx.decision()?;
        for name in snap.strip.iter() {
            req.remove_header(name);
        }
        set_identity(&snap, d, req)?;
        hide_credentials(&d.hide, session.req_header(), req)?;
        if let Some(p) = &d.new_path {
            let mut uri = p.to_vec();
            if let Some(q) = req.uri.query() {
                uri.push(b'?');
                uri.extend_from_slice(q.as_bytes());
            }
            let uri = http::Uri::try_from(uri)
                .map_err(|e| Error::because(ErrorType::InternalError, "bad path", e))?;
            req.set_uri(uri);
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
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let ip = ip.to_string();
            let xff = match req
                .headers
                .get(&headers::X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.clone(),
            };
            req.insert_header(headers::X_FORWARDED_FOR, xff)?;
            req.insert_header(headers::X_REAL_IP, ip)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        req.insert_header(
            headers::X_FORWARDED_PROTO,
            if tls { "https" } else { "http" },
        )?;
        if let Some(port) = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port())
        {
            req.insert_header(headers::X_FORWARDED_PORT, port.to_string())?;
        }
        if let Some(h) = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .cloned()
        {
            req.insert_header(headers::X_FORWARDED_HOST, h)?;
        }
        Ok(())
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
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
        let (r, _kind) = Reject::from_pingora(e);
        let _ = write_reject(session, &r).await;
        FailToProxy {
            error_code: r.status,
            can_reuse_downstream: e.esource() == &ErrorSource::Upstream,
        }
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // Never the query: it may carry an API key or a JWT.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let _ = ctx.start;
        let _: Option<Bytes> = None;
    }
}

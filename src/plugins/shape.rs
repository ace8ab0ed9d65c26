//! The one shape of a registry plugin (proxy-rewrite, cors, ip-restriction, ...): a module with
//! its typed `Conf` (deny_unknown_fields, destructured when compiled), a `compile` step, and a
//! compiled instance implementing [`Plugin`]. The pipeline runs a route's instances in priority
//! order; each hook has a default that does nothing, so a plugin implements only its phases, and
//! a plugin not on a route costs nothing there.
//!
//! Adding a plugin touches three places: its module (`plugins/<name>.rs` and its `mod` line), one
//! line in the registry macro call in `plugins/mod.rs` (`"name" => module [route consumer]`),
//! and the README.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::headers::Head;
use crate::reject::Reject;

/// Auth plugins run at APISIX priorities 2500-2600: a registry plugin above this runs before
/// authentication (cors 4000, ip-restriction 3000, request-id 12015), one below after the
/// consumer steps (consumer-restriction, limit-count).
pub(crate) const AUTH_PRIORITY: i32 = 2500;

/// What a plugin's request step decided.
#[derive(Debug)]
pub enum Step {
    Continue,
    /// Answer the client now (a rejection, or a CORS preflight): nothing reaches the upstream.
    Respond(Reject),
    /// Continue after this long (limit-req and limit-conn holding a request back); the
    /// pipeline waits, with the instance's state already kept for `done`.
    Delay(std::time::Duration),
}

/// Per-request, per-instance state a plugin keeps between its hooks (a request id, the CORS
/// origin to echo, a connection slot to release).
pub(crate) type State = Option<Box<dyn Any + Send + Sync>>;

/// The request facts a plugin reads.
pub struct RequestView<'a> {
    pub req: &'a RequestHeader,
    /// The normalised, decoded path (what routes match).
    pub path: &'a [u8],
    pub remote: Option<IpAddr>,
    /// The gateway's own address the request came in on (`$server_addr`).
    pub local: Option<IpAddr>,
    /// The request came in over TLS (`$scheme` is `https`).
    pub tls: bool,
    /// The upstream node, once picked (None in the request step).
    pub upstream: Option<SocketAddr>,
    pub route_id: &'a str,
    pub service_id: Option<&'a str>,
    /// The consumer's username, once authenticated (None before auth and for anonymous routes).
    pub consumer: Option<&'a str>,
    pub consumer_group: Option<&'a str>,
    /// The consumer's labels (empty before auth and for anonymous routes).
    pub consumer_labels: &'a [(Box<str>, http::HeaderValue)],
    /// The counters of limit-count, which outlive config snapshots.
    pub limiter: &'a crate::limiter::Limiter,
}

/// A [`RequestView`] for the hooks after the request step, built when a plugin first reads
/// it: most of those hooks never do (they read their own state).
pub struct LazyView<'a> {
    make: Option<&'a dyn Fn() -> RequestView<'a>>,
    view: std::cell::OnceCell<RequestView<'a>>,
}

impl<'a> LazyView<'a> {
    /// A view `make` builds on first use.
    pub fn new(make: &'a dyn Fn() -> RequestView<'a>) -> LazyView<'a> {
        LazyView {
            make: Some(make),
            view: std::cell::OnceCell::new(),
        }
    }

    /// The view.
    pub fn get(&self) -> &RequestView<'a> {
        self.view.get_or_init(|| match self.make {
            Some(make) => make(),
            None => unreachable!("a view given built has its value"),
        })
    }
}

impl<'a> From<RequestView<'a>> for LazyView<'a> {
    fn from(view: RequestView<'a>) -> LazyView<'a> {
        LazyView {
            make: None,
            view: std::cell::OnceCell::from(view),
        }
    }
}

/// Where a plugin conf is written: on a route, service, plugin config or global rule, or on a
/// consumer, consumer group or credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Route,
    Consumer,
}

/// What a plugin's compile step knows besides its conf.
pub(crate) struct CompileCx<'a> {
    /// The resource that holds the conf (`route:<id>`, `consumer:<name>`, ...): it owns the
    /// instance's counters.
    pub owner: &'a str,
    /// Route side (route, service, plugin config, global rule) or consumer side.
    pub side: Side,
}

/// Where compile errors go: a field path under the plugin (`"rate"`, `""` for the conf itself)
/// and a message.
pub(crate) type CompileError = (String, String);

/// A compiled plugin instance.
#[async_trait]
pub trait Plugin: Send + Sync + std::fmt::Debug {
    /// The APISIX name (`proxy-rewrite`).
    fn name(&self) -> &'static str;

    /// APISIX priority: higher runs first.
    fn priority(&self) -> i32;

    /// Whether a consumer's (or its group's) instance of this plugin replaces the route's, as
    /// APISIX merges consumer plugins over route plugins by name.
    fn consumer_replaces_route(&self) -> bool {
        true
    }

    /// Headers this plugin sets upstream from the identity: a client's copy of each is removed
    /// from every request, wherever the plugin is configured (attach-consumer-label).
    fn identity_headers(&self) -> &[http::HeaderName] {
        &[]
    }

    /// Request time, after routing: continue, answer the client, or continue after a delay.
    /// `None` when the answer needs I/O (a remote counter, an auth service): the pipeline then
    /// awaits [`Plugin::request_io`]. Deciding here costs no allocation; `request_io` is boxed.
    fn request(&self, _r: &RequestView<'_>, _state: &mut State) -> Option<Step> {
        Some(Step::Continue)
    }

    /// The request step of a plugin whose [`Plugin::request`] returned `None`.
    async fn request_io(&self, _r: &RequestView<'_>, _state: &mut State) -> Step {
        Step::Continue
    }

    /// True when [`Plugin::upstream_request`] edits the upstream request: only such a plugin's
    /// hook runs, and while one runs the gateway's own upstream headers are put where it can see
    /// them (`headers::UpstreamHeaders`).
    fn edits_upstream_request(&self) -> bool {
        false
    }

    /// The request about to go upstream (identity and forwarding headers are already set); runs
    /// when [`Plugin::edits_upstream_request`].
    fn upstream_request(
        &self,
        _req: &mut RequestHeader,
        _r: &LazyView<'_>,
        _state: &State,
    ) -> pingora_core::Result<()> {
        Ok(())
    }

    /// True when [`Plugin::response`] edits the response head: only such a plugin's hook runs,
    /// and one that runs alone may write its headers straight to the wire ([`Head::set_all`]).
    fn edits_response(&self) -> bool {
        false
    }

    /// The response head, from the upstream or from the gateway itself; runs when
    /// [`Plugin::edits_response`].
    fn response(
        &self,
        _resp: &mut Head<'_, ResponseHeader>,
        _r: &LazyView<'_>,
        _state: &mut State,
    ) -> pingora_core::Result<()> {
        Ok(())
    }

    /// True when [`Plugin::response_body`] must see the body.
    fn filters_body(&self) -> bool {
        false
    }

    /// Each piece of the response body; `end` on the last.
    fn response_body(&self, _body: &mut Option<Bytes>, _end: bool, _state: &mut State) {}

    /// The request is over (logged): release what the request step took.
    fn done(&self, _state: &mut State) {}

    /// The id this plugin gave the request, for the access log (request-id).
    fn request_id<'s>(&self, _state: &'s State) -> Option<&'s str> {
        None
    }
}

/// A compiled instance and the resource that holds it (`route:<id>`, `consumer:<name>`...),
/// which owns its counters.
pub(crate) type Instance = Arc<dyn Plugin>;

/// An instance with its plugin name (the name a consumer's instance replaces a route's by).
pub(crate) type Named = (&'static str, Instance);

/// The plugin instances of one request, in the order they run, each with its state.
#[derive(Debug, Default)]
pub struct Running {
    pub list: Vec<(Instance, State)>,
    /// The normalised path when it differs from the one the client sent
    /// ([`crate::path::client_path`]), for the later hooks' [`RequestView`].
    pub path: Option<Box<[u8]>>,
}

impl Running {
    /// The normalised path of `req`, the request this ran for.
    pub fn path<'a>(&'a self, req: &'a RequestHeader) -> &'a [u8] {
        match &self.path {
            Some(p) => p,
            None => crate::path::client_path(req).0,
        }
    }

    /// Whether any instance filters the response body.
    pub fn filters_body(&self) -> bool {
        self.list.iter().any(|(p, _)| p.filters_body())
    }
}

/// A limiter for unit tests that build a [`RequestView`] by hand.
#[cfg(test)]
pub(crate) fn test_limiter() -> &'static crate::limiter::Limiter {
    static LIMITER: std::sync::LazyLock<crate::limiter::Limiter> =
        std::sync::LazyLock::new(crate::limiter::Limiter::new);
    &LIMITER
}

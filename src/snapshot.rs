//! `Snapshot`: one compiled, immutable config. Requests load it once and read only from it.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::HeaderName;

use crate::router::Router;
use crate::upstream::{Timeouts, Upstream};

pub(crate) use crate::ids::{ConsumerId, RouteId, UpstreamId};

/// Resource counts, as `tollgate check` prints them and the metrics expose them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub routes: usize,
    pub services: usize,
    pub upstreams: usize,
    pub consumers: usize,
    pub credentials: usize,
    pub consumer_groups: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} routes, {} services, {} upstreams, {} consumers, {} credentials, {} consumer groups",
            self.routes,
            self.services,
            self.upstreams,
            self.consumers,
            self.credentials,
            self.consumer_groups
        )
    }
}

/// A route with its service, plugin config and global rules merged in.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    pub service: Option<Arc<str>>,
    pub upstream: UpstreamId,
    /// The route's own `timeout`, overriding the upstream's.
    pub timeouts: Option<Timeouts>,
    /// Auth plugins in priority order (multi, hmac, basic, jwt, key).
    pub auth: Box<[Arc<crate::auth::AuthPlugin>]>,
    pub plugins: crate::plugins::PluginSet,
}

/// One good load of the resource files.
pub struct Snapshot {
    /// Hash of the resource bytes, hex.
    pub version: Arc<str>,
    pub loaded_at: SystemTime,
    pub counts: Counts,
    pub router: Router,
    pub routes: Box<[Route]>,
    pub upstreams: Box<[Upstream]>,
    pub consumers: crate::consumer::Consumers,
    /// The registry plugin instances of every global rule, rule by rule: they run on every
    /// route, besides the route's own.
    pub global_plugins: Arc<[crate::plugins::shape::Named]>,
    /// Headers removed from every client request: identity headers and every
    /// attach-consumer-label header configured anywhere.
    pub strip: Box<[HeaderName]>,
}

impl Snapshot {
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.idx()]
    }
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.idx()]
    }
}

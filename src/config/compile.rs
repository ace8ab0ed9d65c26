//! Compiles parsed resource files into a `Snapshot`: references, inheritance (route ⊕ plugin
//! config ⊕ service ⊕ global rules), duplicates, upstream resolution, the router. Every error is
//! kept with its place; nothing here runs per request.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use ahash::AHashSet;
use ipnet::IpNet;

use super::error::ConfigError;
use super::raw::{
    ConsumerGroupConf, GlobalRuleConf, Id, PluginConfigConf, ResourcesConf, RouteConf, ServiceConf,
    UpstreamConf,
};
use crate::consumer::Consumers;
use crate::plugins::shape::Instance;
use crate::plugins::{RoutePlugins, RoutePluginsConf, compile_route_plugins};
use crate::router::{RouteSpec, Router, method_mask};
use crate::snapshot::{Counts, Route, RouteId, Snapshot, UpstreamId};
use crate::upstream::{Timeouts, Upstream};

pub(crate) use super::error::{Errs, Place};

/// Items of one kind from every file, indexed by id; a second definition is an error naming both.
pub(crate) struct Table<'a, T> {
    pub items: Vec<(Place, &'a T)>,
    pub by_id: BTreeMap<String, usize>,
}

impl<'a, T> Table<'a, T> {
    fn build(
        kind: &str,
        files: &'a [(String, ResourcesConf)],
        list: impl Fn(&'a ResourcesConf) -> &'a [T],
        id: impl Fn(&T, usize) -> Option<String>,
        errs: &mut Errs,
    ) -> Self {
        let mut items: Vec<(Place, &'a T)> = Vec::new();
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut n = 0;
        for (name, conf) in files {
            let file: Arc<str> = name.as_str().into();
            let positions = conf.positions.get(kind);
            for (i, item) in list(conf).iter().enumerate() {
                let i = positions.and_then(|p| p.get(i)).map_or(i, |&p| p as usize);
                n += 1;
                let place = Place {
                    file: file.clone(),
                    path: format!("{kind}[{i}]"),
                };
                if let Some(id) = id(item, n) {
                    if let Some(&prev) = by_id.get(&id) {
                        let prev: &Place = &items[prev].0;
                        let what = if kind == "consumers" && !id.contains("/credentials/") {
                            "username"
                        } else {
                            "id"
                        };
                        errs.push(
                            &place,
                            what,
                            format!("same {what} `{id}` as {}", prev.named_from(name, what)),
                        );
                        continue;
                    }
                    by_id.insert(id, items.len());
                }
                items.push((place, item));
            }
        }
        Table { items, by_id }
    }

    pub(crate) fn get(&self, id: &Id) -> Option<&(Place, &'a T)> {
        self.by_id.get(&id.0).map(|&i| &self.items[i])
    }
}

fn unsupported(errs: &mut Errs, place: &Place, fields: &[(&str, bool)]) {
    for (f, present) in fields {
        if *present {
            errs.push(place, f, "not supported by tollgate");
        }
    }
}

/// Ids of items that failed to parse, by kind: a reference to one is not reported as missing
/// (the item's own error says what is wrong).
#[derive(Debug, Default)]
pub(crate) struct Broken {
    pub upstreams: AHashSet<String>,
    pub services: AHashSet<String>,
    pub plugin_configs: AHashSet<String>,
    pub consumer_groups: AHashSet<String>,
    /// A file could not be read whole: no reference is reported as missing.
    pub all: bool,
}

impl Broken {
    fn has(&self, set: &AHashSet<String>, id: &Id) -> bool {
        self.all || set.contains(&id.0)
    }
}

/// Compiles the parsed files into a snapshot (version and time are set by the caller).
pub fn compile(files: Vec<(String, ResourcesConf)>) -> Result<Snapshot, Vec<ConfigError>> {
    use crate::config::consumers::{Builder, any_key_hash};
    use crate::secret::KeyDigestKind;
    let mut files = files;
    let sha = any_key_hash(files.iter().flat_map(|(_, c)| &c.consumers));
    let mut consumers = Builder::with_key_digest(if sha {
        KeyDigestKind::Sha256
    } else {
        KeyDigestKind::Keyed
    });
    for (name, conf) in &mut files {
        let f = consumers.file(name);
        let positions = conf.positions.get("consumers").cloned();
        for (i, c) in std::mem::take(&mut conf.consumers).into_iter().enumerate() {
            let i = positions
                .as_ref()
                .and_then(|p| p.get(i))
                .map_or(i, |&p| p as usize);
            consumers.add(f, i as u32, c);
        }
    }
    compile_with(files, consumers, &Broken::default())
}

/// [`compile`] for files whose `consumers` went to `consumers` as they were read; `broken`
/// names the items that failed to parse (their errors are already reported).
pub(crate) fn compile_with(
    files: Vec<(String, ResourcesConf)>,
    mut consumers: crate::config::consumers::Builder<'_>,
    broken: &Broken,
) -> Result<Snapshot, Vec<ConfigError>> {
    let mut errs = std::mem::take(&mut consumers.errs);
    check_top_level(&files, &mut errs);
    let t = Tables::build(&files, &mut errs);
    let (consumers, names): (Consumers, _) = consumers.finish(
        &t.groups.items,
        &broken.consumer_groups,
        broken.all,
        &mut errs,
    );
    let mut upstreams = Upstreams::named(&t.upstreams, broken, &mut errs);
    let find = |name: &str| names.find(&consumers.list, name);
    let plugins = |conf: &RoutePluginsConf, place: &Place, owner: &str, errs: &mut Errs| {
        compile_route_plugins(conf, place, owner, &find, errs)
    };
    let services = compile_services(&t.services, &mut upstreams, &plugins, &mut errs);
    let (global_plugins, global_instances) = compile_global_rules(&t.globals, &plugins, &mut errs);
    let plugin_configs: BTreeMap<&str, RoutePlugins> = t
        .plugin_configs
        .items
        .iter()
        .map(|(place, pc)| {
            let owner = format!("plugin_config:{}", pc.id.0);
            (
                pc.id.0.as_str(),
                plugins(&pc.plugins, place, &owner, &mut errs),
            )
        })
        .collect();

    // Headers removed from every client request: identity headers and every header an
    // attach-consumer-label names anywhere (consumers, groups, services, plugin configs, rules,
    // routes; the routes' are added as they compile).
    let mut strip: Vec<http::HeaderName> = crate::headers::IDENTITY.to_vec();
    strip.extend(consumers.label_headers.iter().cloned());
    strip.extend(global_plugins.set.identity_headers().cloned());
    strip.extend(
        global_instances
            .iter()
            .flat_map(|(_, p)| p.identity_headers().iter().cloned()),
    );
    services
        .values()
        .for_each(|s| strip.extend(s.plugins.set.identity_headers().cloned()));
    plugin_configs
        .values()
        .for_each(|p| strip.extend(p.set.identity_headers().cloned()));

    let inherited = Inherited {
        services: &services,
        services_t: &t.services,
        plugin_configs: &plugin_configs,
        global: &global_plugins,
        broken,
    };
    let mut routes: Vec<Route> = Vec::new();
    let mut specs: Vec<RouteSpec> = Vec::new();
    for (n, (place, r)) in t.routes.items.iter().enumerate() {
        let id =
            r.id.as_ref()
                .map_or_else(|| format!("arr_{}", n + 1), |i| i.0.clone());
        let before = errs.0.len();
        let Some((route, spec)) = compile_route(
            id,
            place,
            r,
            &inherited,
            &mut upstreams,
            &plugins,
            &mut strip,
            &mut errs,
        ) else {
            continue;
        };
        if errs.0.len() != before {
            continue;
        }
        let route_id = RouteId(routes.len() as u32);
        if let Some(mut spec) = spec {
            spec.route = route_id;
            specs.push(spec);
        }
        routes.push(route);
    }

    // Names were needed to resolve references; requests look consumers up by id.
    drop(names);
    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    let counts = Counts {
        routes: t.routes.items.len(),
        services: t.services.items.len(),
        upstreams: t.upstreams.items.len(),
        consumers: consumers.list.len(),
        credentials: consumers.credential_count,
        consumer_groups: consumers.groups.len(),
    };
    let mut strip: Vec<http::HeaderName> =
        strip.iter().map(crate::headers::dash_spelling).collect();
    strip.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    strip.dedup();
    Ok(Snapshot {
        global_plugins: global_instances.into(),
        version: "".into(),
        loaded_at: SystemTime::now(),
        counts,
        router: Router::build(&specs),
        routes: routes.into_boxed_slice(),
        upstreams: upstreams.list.into_boxed_slice(),
        consumers,
        strip: strip.into_boxed_slice(),
    })
}

/// File-level keys tollgate does not support, and the names in a top-level `plugins:` list.
fn check_top_level(files: &[(String, ResourcesConf)], errs: &mut Errs) {
    for (name, conf) in files {
        let file: &str = name;
        let nonempty =
            |l: &Option<Vec<serde::de::IgnoredAny>>| l.as_ref().is_some_and(|l| !l.is_empty());
        let top = [
            ("ssls", nonempty(&conf.ssls)),
            ("stream_routes", nonempty(&conf.stream_routes)),
            ("protos", nonempty(&conf.protos)),
            ("secrets", nonempty(&conf.secrets)),
            ("plugin_metadata", nonempty(&conf.plugin_metadata)),
        ];
        for (i, entry) in conf.plugins.iter().flatten().enumerate() {
            let name = match entry {
                serde_yaml::Value::String(s) => Some(s.as_str()),
                serde_yaml::Value::Mapping(m) => m.get("name").and_then(|n| n.as_str()),
                _ => None,
            };
            match name {
                Some(n) if crate::plugins::is_known(n) => {}
                Some(n) => errs.0.push(ConfigError::new(
                    file,
                    format!("plugins[{i}]"),
                    format!("plugin `{n}` is not supported by tollgate"),
                )),
                None => errs.0.push(ConfigError::new(
                    file,
                    format!("plugins[{i}]"),
                    "expected a plugin name or `{name: <plugin>}`",
                )),
            }
        }
        for (f, present) in top {
            if present {
                let msg = if f == "ssls" {
                    "not supported by tollgate (TLS certificates go in the node file's listen entries)"
                } else {
                    "not supported by tollgate"
                };
                errs.0.push(ConfigError::new(file, f, msg));
            }
        }
    }
}

/// Every file's items of each kind, indexed by id.
struct Tables<'a> {
    upstreams: Table<'a, UpstreamConf>,
    services: Table<'a, ServiceConf>,
    routes: Table<'a, RouteConf>,
    plugin_configs: Table<'a, PluginConfigConf>,
    globals: Table<'a, GlobalRuleConf>,
    groups: Table<'a, ConsumerGroupConf>,
}

impl<'a> Tables<'a> {
    fn build(files: &'a [(String, ResourcesConf)], errs: &mut Errs) -> Self {
        let id = |i: &Option<Id>| i.as_ref().map(|i| i.0.clone());
        Tables {
            upstreams: Table::build("upstreams", files, |c| &c.upstreams, |u, _| id(&u.id), errs),
            services: Table::build("services", files, |c| &c.services, |s, _| id(&s.id), errs),
            routes: Table::build(
                "routes",
                files,
                |c| &c.routes,
                |r, n| Some(id(&r.id).unwrap_or_else(|| format!("arr_{n}"))),
                errs,
            ),
            plugin_configs: Table::build(
                "plugin_configs",
                files,
                |c| &c.plugin_configs,
                |p, _| Some(p.id.0.clone()),
                errs,
            ),
            globals: Table::build(
                "global_rules",
                files,
                |c| &c.global_rules,
                |g, _| Some(g.id.0.clone()),
                errs,
            ),
            groups: Table::build(
                "consumer_groups",
                files,
                |c| &c.consumer_groups,
                |g, _| Some(g.id.0.clone()),
                errs,
            ),
        }
    }
}

/// The compiled upstreams: named ones first, then inline ones as routes and services need them.
struct Upstreams<'t, 'a> {
    list: Vec<Upstream>,
    named: BTreeMap<String, UpstreamId>,
    table: &'t Table<'a, UpstreamConf>,
    broken: &'t Broken,
}

impl<'t, 'a> Upstreams<'t, 'a> {
    fn named(table: &'t Table<'a, UpstreamConf>, broken: &'t Broken, errs: &mut Errs) -> Self {
        let mut out = Upstreams {
            list: Vec::new(),
            named: BTreeMap::new(),
            table,
            broken,
        };
        for (place, u) in &table.items {
            let Some(id) = &u.id else {
                errs.push(place, "id", "required");
                continue;
            };
            match Upstream::compile(&id.0, u) {
                Ok(up) => {
                    out.named
                        .insert(id.0.clone(), UpstreamId(out.list.len() as u32));
                    out.list.push(up);
                }
                Err(es) => es.into_iter().for_each(|(f, m)| errs.push(place, &f, m)),
            }
        }
        out
    }

    /// The upstream of a service or route: `Some(None)` when it sets none, `None` on an error
    /// (reported here unless the upstream it names failed to parse).
    fn resolve(
        &mut self,
        place: &Place,
        owner: &str,
        inline: &Option<UpstreamConf>,
        by_id: &Option<Id>,
        errs: &mut Errs,
    ) -> Option<Option<UpstreamId>> {
        match (inline, by_id) {
            (Some(_), Some(_)) => {
                errs.push(
                    place,
                    "upstream_id",
                    "set either upstream or upstream_id, not both",
                );
                None
            }
            (Some(u), None) => {
                if u.id.is_some() {
                    errs.push(place, "upstream.id", "an inline upstream has no id");
                }
                match Upstream::compile(owner, u) {
                    Ok(up) => {
                        self.list.push(up);
                        Some(Some(UpstreamId(self.list.len() as u32 - 1)))
                    }
                    Err(es) => {
                        es.into_iter()
                            .for_each(|(f, m)| errs.push(place, &format!("upstream.{f}"), m));
                        None
                    }
                }
            }
            (None, Some(id)) => match self.named.get(&id.0) {
                Some(u) => Some(Some(*u)),
                None => {
                    if self.table.get(id).is_none() && !self.broken.has(&self.broken.upstreams, id)
                    {
                        errs.push(
                            place,
                            "upstream_id",
                            format!("upstream `{}` does not exist", id.0),
                        );
                    }
                    None
                }
            },
            (None, None) => Some(None),
        }
    }
}

/// A compiled service, as its routes inherit it.
struct Svc<'a> {
    upstream: Option<UpstreamId>,
    conf: &'a ServiceConf,
    plugins: RoutePlugins,
}

/// Compiles route plugins at a place for an owner (`route:<id>`, `service:<id>`, ...).
type PluginsFn<'f> = dyn Fn(&RoutePluginsConf, &Place, &str, &mut Errs) -> RoutePlugins + 'f;

fn compile_services<'a>(
    table: &Table<'a, ServiceConf>,
    upstreams: &mut Upstreams<'_, '_>,
    plugins: &PluginsFn<'_>,
    errs: &mut Errs,
) -> BTreeMap<String, Svc<'a>> {
    let mut services = BTreeMap::new();
    for (place, s) in &table.items {
        let Some(id) = &s.id else {
            errs.push(place, "id", "required");
            continue;
        };
        unsupported(errs, place, &[("script", s.script.is_some())]);
        if let Some(hosts) = &s.hosts {
            check_hosts(errs, place, "hosts", hosts);
        }
        let owner = format!("service:{}", id.0);
        if let Some(upstream) = upstreams.resolve(place, &owner, &s.upstream, &s.upstream_id, errs)
        {
            let plugins = plugins(&s.plugins, place, &owner, errs);
            services.insert(
                id.0.clone(),
                Svc {
                    upstream,
                    conf: s,
                    plugins,
                },
            );
        }
    }
    services
}

/// Global rules. Their registry plugin instances are never merged: each runs, besides the
/// route's of the same name, as in APISIX. Their built-in slots (auth, limit-count) apply to
/// every route that does not set the same plugin.
fn compile_global_rules(
    table: &Table<'_, GlobalRuleConf>,
    plugins: &PluginsFn<'_>,
    errs: &mut Errs,
) -> (RoutePlugins, Vec<(&'static str, Instance)>) {
    let mut merged = RoutePlugins::default();
    let mut instances = Vec::new();
    for (place, g) in &table.items {
        let mut compiled = plugins(&g.plugins, place, &format!("global_rule:{}", g.id.0), errs);
        instances.extend(compiled.set.extra.iter().cloned());
        compiled.set.extra = Arc::new([]);
        compiled.disabled = Arc::new([]); // each rule runs on its own
        merged = merged.over(&compiled);
    }
    (merged, instances)
}

/// What a route inherits from: services, plugin configs, global rules.
struct Inherited<'i, 'a> {
    services: &'i BTreeMap<String, Svc<'a>>,
    services_t: &'i Table<'a, ServiceConf>,
    plugin_configs: &'i BTreeMap<&'a str, RoutePlugins>,
    global: &'i RoutePlugins,
    broken: &'i Broken,
}

impl<'i, 'a> Inherited<'i, 'a> {
    /// The service a route names, if it exists (a missing one is reported unless it failed
    /// to parse).
    fn service(
        &self,
        r: &RouteConf,
        place: &Place,
        errs: &mut Errs,
    ) -> Option<(String, &'i Svc<'a>)> {
        match &r.service_id {
            Some(sid) => match self.services.get(&sid.0) {
                Some(s) => Some((sid.0.clone(), s)),
                None => {
                    if self.services_t.get(sid).is_none()
                        && !self.broken.has(&self.broken.services, sid)
                    {
                        errs.push(
                            place,
                            "service_id",
                            format!("service `{}` does not exist", sid.0),
                        );
                    }
                    None
                }
            },
            None => None,
        }
    }

    /// The plugin config a route names, if it exists.
    fn plugin_config(
        &self,
        r: &RouteConf,
        place: &Place,
        errs: &mut Errs,
    ) -> Option<&'i RoutePlugins> {
        match &r.plugin_config_id {
            Some(pid) => match self.plugin_configs.get(pid.0.as_str()) {
                Some(pc) => Some(pc),
                None if self.broken.has(&self.broken.plugin_configs, pid) => None,
                None => {
                    errs.push(
                        place,
                        "plugin_config_id",
                        format!("plugin config `{}` does not exist", pid.0),
                    );
                    None
                }
            },
            None => None,
        }
    }
}

/// Compiles one route: the route and, unless it is disabled (`status: 0`), its router entry
/// (its `route` number set by the caller). `None` when it has no usable upstream; errors go
/// to `errs`.
#[allow(clippy::too_many_arguments)]
fn compile_route(
    id: String,
    place: &Place,
    r: &RouteConf,
    inh: &Inherited<'_, '_>,
    upstreams: &mut Upstreams<'_, '_>,
    plugins: &PluginsFn<'_>,
    strip: &mut Vec<http::HeaderName>,
    errs: &mut Errs,
) -> Option<(Route, Option<RouteSpec>)> {
    unsupported(
        errs,
        place,
        &[
            ("vars", r.vars.is_some()),
            ("filter_func", r.filter_func.is_some()),
            ("script", r.script.is_some()),
        ],
    );
    let paths = route_paths(r, place, errs);
    let mut hosts = one_or_many(
        r.host.as_ref(),
        r.hosts.as_ref(),
        ("host", "hosts"),
        place,
        errs,
    );
    check_hosts(
        errs,
        place,
        if r.host.is_some() { "host" } else { "hosts" },
        &hosts,
    );
    let remote_addrs = remote_addrs(r, place, errs);
    let status = r.status.unwrap_or(1);
    if status > 1 {
        errs.push(place, "status", "must be 0 (disabled) or 1 (enabled)");
    }
    let timeouts = r.timeout.as_ref().and_then(|t| {
        Timeouts::from_conf(t)
            .map_err(|m| errs.push(place, "timeout", m))
            .ok()
    });
    let service = inh.service(r, place, errs);
    let plugin_config = inh.plugin_config(r, place, errs);
    let owner = format!("route:{id}");
    let own_upstream = upstreams.resolve(place, &owner, &r.upstream, &r.upstream_id, errs);
    let upstream = match (own_upstream, &service) {
        (Some(Some(u)), _) => Some(u),
        (Some(None), Some((_, s))) => s.upstream,
        _ => None,
    };
    // A broken upstream or service was reported where it is defined, not again here.
    let service_broken = r
        .service_id
        .as_ref()
        .is_some_and(|sid| !inh.services.contains_key(&sid.0));
    if upstream.is_none() && own_upstream == Some(None) && !service_broken {
        errs.push(
            place,
            "upstream",
            "no upstream: set upstream, upstream_id, or a service_id whose service has one",
        );
    }
    if hosts.is_empty()
        && let Some((_, s)) = &service
    {
        hosts = s.conf.hosts.clone().unwrap_or_default();
    }
    let mut merged = plugins(&r.plugins, place, &owner, errs);
    strip.extend(merged.set.identity_headers().cloned());
    if let Some(pc) = plugin_config {
        merged = merged.over(pc);
    }
    if let Some((_, s)) = &service {
        merged = merged.over(&s.plugins);
    }
    // Global rules run on their own in APISIX: a route's `_meta.disable` does not reach them.
    merged.disabled = Arc::new([]);
    merged = merged.over(inh.global);
    let upstream = upstream?;
    let spec = (status == 1).then(|| RouteSpec {
        route: RouteId(0),
        paths,
        hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        methods: r
            .methods
            .as_deref()
            .map_or(0, |m| method_mask(m.iter().map(|x| x.as_str()))),
        remote_addrs,
        priority: r.priority,
    });
    let route = Route {
        id: id.into(),
        service: service.map(|(sid, _)| sid.into()),
        upstream,
        timeouts,
        auth: merged.auth_chain(),
        plugins: merged.set,
    };
    Some((route, spec))
}

/// A route's `uri` or `uris`, each checked.
fn route_paths(r: &RouteConf, place: &Place, errs: &mut Errs) -> Vec<String> {
    let paths: Vec<String> = match (&r.uri, &r.uris) {
        (Some(u), None) => vec![u.clone()],
        (None, Some(us)) if !us.is_empty() => us.clone(),
        (Some(_), Some(_)) => {
            errs.push(place, "uris", "set either uri or uris, not both");
            vec![]
        }
        _ => {
            errs.push(place, "uri", "required (uri or uris)");
            vec![]
        }
    };
    for (i, p) in paths.iter().enumerate() {
        let field = if r.uri.is_some() {
            "uri".to_string()
        } else {
            format!("uris[{i}]")
        };
        if !p.starts_with('/') {
            errs.push(place, &field, "must start with `/`");
        } else if p.len() > 4096 {
            errs.push(place, &field, "longer than 4096 characters");
        } else if p.strip_suffix('*').unwrap_or(p).contains('*') {
            errs.push(
                place,
                &field,
                "`*` is only allowed at the end (prefix match)",
            );
        }
    }
    paths
}

/// APISIX's singular/plural pairs (`host`/`hosts`, `remote_addr`/`remote_addrs`): one of them.
fn one_or_many(
    one: Option<&String>,
    many: Option<&Vec<String>>,
    (one_name, many_name): (&str, &str),
    place: &Place,
    errs: &mut Errs,
) -> Vec<String> {
    match (one, many) {
        (Some(_), Some(_)) => {
            errs.push(
                place,
                many_name,
                format!("set either {one_name} or {many_name}, not both"),
            );
            vec![]
        }
        (Some(h), None) => vec![h.clone()],
        (None, Some(hs)) => hs.clone(),
        (None, None) => vec![],
    }
}

/// A route's `remote_addr`/`remote_addrs`, parsed as IPs or CIDRs.
fn remote_addrs(r: &RouteConf, place: &Place, errs: &mut Errs) -> Vec<IpNet> {
    let remote = one_or_many(
        r.remote_addr.as_ref(),
        r.remote_addrs.as_ref(),
        ("remote_addr", "remote_addrs"),
        place,
        errs,
    );
    let mut out = Vec::new();
    for (i, a) in remote.iter().enumerate() {
        match a
            .parse::<IpNet>()
            .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => out.push(net),
            Err(_) => errs.push(
                place,
                &format!("remote_addrs[{i}]"),
                format!("`{a}` is not an IP or CIDR"),
            ),
        }
    }
    out
}

fn check_hosts(errs: &mut Errs, place: &Place, field: &str, hosts: &[String]) {
    for (i, h) in hosts.iter().enumerate() {
        let body = h.strip_prefix("*.").unwrap_or(h);
        let ok = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !body.contains('*');
        if !ok {
            errs.push(
                place,
                &format!("{field}[{i}]"),
                format!("`{h}` is not a host name (`*.example.com` wildcards allowed)"),
            );
        }
    }
}

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
use super::raw::{Id, ResourcesConf, RouteConf, ServiceConf, UpstreamConf};
use crate::consumer::Consumers;
use crate::plugins::{RoutePlugins, compile_route_plugins};
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
    let mut files = files;
    let mut consumers = crate::config::consumers::Builder::default();
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
    for (name, conf) in &files {
        let place = Place {
            file: name.as_str().into(),
            path: String::new(),
        };
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
                    &*place.file,
                    format!("plugins[{i}]"),
                    format!("plugin `{n}` is not supported by tollgate"),
                )),
                None => errs.0.push(ConfigError::new(
                    &*place.file,
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
                errs.0.push(ConfigError::new(&*place.file, f, msg));
            }
        }
    }
    let upstreams_t = Table::build(
        "upstreams",
        &files,
        |c| &c.upstreams,
        |u: &UpstreamConf, _| u.id.as_ref().map(|i| i.0.clone()),
        &mut errs,
    );
    let services_t = Table::build(
        "services",
        &files,
        |c| &c.services,
        |s: &ServiceConf, _| s.id.as_ref().map(|i| i.0.clone()),
        &mut errs,
    );
    let routes_t = Table::build(
        "routes",
        &files,
        |c| &c.routes,
        |r: &RouteConf, n| {
            Some(
                r.id.as_ref()
                    .map_or_else(|| format!("arr_{n}"), |i| i.0.clone()),
            )
        },
        &mut errs,
    );
    let pcs_t = Table::build(
        "plugin_configs",
        &files,
        |c| &c.plugin_configs,
        |p: &super::raw::PluginConfigConf, _| Some(p.id.0.clone()),
        &mut errs,
    );
    let globals_t = Table::build(
        "global_rules",
        &files,
        |c| &c.global_rules,
        |g: &super::raw::GlobalRuleConf, _| Some(g.id.0.clone()),
        &mut errs,
    );
    let groups_t = Table::build(
        "consumer_groups",
        &files,
        |c| &c.consumer_groups,
        |g: &super::raw::ConsumerGroupConf, _| Some(g.id.0.clone()),
        &mut errs,
    );
    let consumers: Consumers = consumers.finish(
        &groups_t.items,
        &broken.consumer_groups,
        broken.all,
        &mut errs,
    );

    // Upstreams: named ones first, then inline ones as routes and services need them.
    let mut upstreams: Vec<Upstream> = Vec::new();
    let mut named_upstream: BTreeMap<String, UpstreamId> = BTreeMap::new();
    for (place, u) in &upstreams_t.items {
        let Some(id) = &u.id else {
            errs.push(place, "id", "required");
            continue;
        };
        unsupported(&mut errs, place, &[]);
        match Upstream::compile(&id.0, u) {
            Ok(up) => {
                named_upstream.insert(id.0.clone(), UpstreamId(upstreams.len() as u32));
                upstreams.push(up);
            }
            Err(es) => es.into_iter().for_each(|(f, m)| errs.push(place, &f, m)),
        }
    }
    let mut resolve_upstream = |place: &Place,
                                owner: &str,
                                inline: &Option<UpstreamConf>,
                                by_id: &Option<Id>,
                                errs: &mut Errs|
     -> Option<Option<UpstreamId>> {
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
                        upstreams.push(up);
                        Some(Some(UpstreamId(upstreams.len() as u32 - 1)))
                    }
                    Err(es) => {
                        es.into_iter()
                            .for_each(|(f, m)| errs.push(place, &format!("upstream.{f}"), m));
                        None
                    }
                }
            }
            (None, Some(id)) => match named_upstream.get(&id.0) {
                Some(u) => Some(Some(*u)),
                None => {
                    if upstreams_t.get(id).is_none() && !broken.has(&broken.upstreams, id) {
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
    };

    // Services.
    struct Svc<'a> {
        upstream: Option<UpstreamId>,
        conf: &'a ServiceConf,
        plugins: RoutePlugins,
    }
    let mut services: BTreeMap<String, Svc<'_>> = BTreeMap::new();
    for (place, s) in &services_t.items {
        let Some(id) = &s.id else {
            errs.push(place, "id", "required");
            continue;
        };
        unsupported(&mut errs, place, &[("script", s.script.is_some())]);
        if let Some(Some(hosts)) = s.hosts.as_ref().map(Some) {
            check_hosts(&mut errs, place, "hosts", hosts);
        }
        if let Some(up) = resolve_upstream(
            place,
            &format!("service:{}", id.0),
            &s.upstream,
            &s.upstream_id,
            &mut errs,
        ) {
            let plugins = compile_route_plugins(
                &s.plugins,
                place,
                &format!("service:{}", id.0),
                &consumers.by_name,
                &mut errs,
            );
            services.insert(
                id.0.clone(),
                Svc {
                    upstream: up,
                    conf: s,
                    plugins,
                },
            );
        }
    }

    // Global rules. Their registry plugin instances are never merged: each runs, besides the
    // route's of the same name, as in APISIX. Their built-in slots (auth, limit-count,
    // attach-consumer-label) apply to every route that does not set the same plugin.
    let mut global_plugins = RoutePlugins::default();
    let mut global_instances = Vec::new();
    for (place, g) in &globals_t.items {
        let mut compiled = compile_route_plugins(
            &g.plugins,
            place,
            &format!("global_rule:{}", g.id.0),
            &consumers.by_name,
            &mut errs,
        );
        global_instances.extend(compiled.set.extra.iter().cloned());
        compiled.set.extra = Arc::new([]);
        global_plugins = global_plugins.over(&compiled);
    }
    let plugin_configs: BTreeMap<&str, RoutePlugins> = pcs_t
        .items
        .iter()
        .map(|(place, pc)| {
            (
                pc.id.0.as_str(),
                compile_route_plugins(
                    &pc.plugins,
                    place,
                    &format!("plugin_config:{}", pc.id.0),
                    &consumers.by_name,
                    &mut errs,
                ),
            )
        })
        .collect();

    // Headers removed from every client request: identity headers and every header an
    // attach-consumer-label names anywhere (consumers, groups, services, plugin configs, rules, routes).
    let mut strip: Vec<http::HeaderName> = crate::headers::IDENTITY.to_vec();
    strip.extend(consumers.label_headers.iter().cloned());
    let note = |p: &RoutePlugins, strip: &mut Vec<http::HeaderName>| {
        strip.extend(p.set.identity_headers().cloned());
    };
    note(&global_plugins, &mut strip);
    strip.extend(
        global_instances
            .iter()
            .flat_map(|(_, p)| p.identity_headers().iter().cloned()),
    );
    services.values().for_each(|s| note(&s.plugins, &mut strip));
    plugin_configs.values().for_each(|p| note(p, &mut strip));

    // Routes.
    let mut routes: Vec<Route> = Vec::new();
    let mut specs: Vec<RouteSpec> = Vec::new();
    for (n, (place, r)) in routes_t.items.iter().enumerate() {
        let id =
            r.id.as_ref()
                .map_or_else(|| format!("arr_{}", n + 1), |i| i.0.clone());
        let before = errs.0.len();
        unsupported(
            &mut errs,
            place,
            &[
                ("vars", r.vars.is_some()),
                ("filter_func", r.filter_func.is_some()),
                ("script", r.script.is_some()),
            ],
        );
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
        let mut hosts: Vec<String> = match (&r.host, &r.hosts) {
            (Some(_), Some(_)) => {
                errs.push(place, "hosts", "set either host or hosts, not both");
                vec![]
            }
            (Some(h), None) => vec![h.clone()],
            (None, Some(hs)) => hs.clone(),
            (None, None) => vec![],
        };
        check_hosts(
            &mut errs,
            place,
            if r.host.is_some() { "host" } else { "hosts" },
            &hosts,
        );
        let remote: Vec<String> = match (&r.remote_addr, &r.remote_addrs) {
            (Some(_), Some(_)) => {
                errs.push(
                    place,
                    "remote_addrs",
                    "set either remote_addr or remote_addrs, not both",
                );
                vec![]
            }
            (Some(a), None) => vec![a.clone()],
            (None, Some(a)) => a.clone(),
            (None, None) => vec![],
        };
        let mut remote_addrs = Vec::new();
        for (i, a) in remote.iter().enumerate() {
            match a
                .parse::<IpNet>()
                .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => remote_addrs.push(net),
                Err(_) => errs.push(
                    place,
                    &format!("remote_addrs[{i}]"),
                    format!("`{a}` is not an IP or CIDR"),
                ),
            }
        }
        let status = r.status.unwrap_or(1);
        if status > 1 {
            errs.push(place, "status", "must be 0 (disabled) or 1 (enabled)");
        }
        let timeouts = r.timeout.as_ref().and_then(|t| {
            Timeouts::from_conf(t)
                .map_err(|m| errs.push(place, "timeout", m))
                .ok()
        });
        let service = match &r.service_id {
            Some(sid) => match services.get(&sid.0) {
                Some(s) => Some((sid.0.clone(), s)),
                None => {
                    if services_t.get(sid).is_none() && !broken.has(&broken.services, sid) {
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
        };
        let plugin_config = match &r.plugin_config_id {
            Some(pid) => match plugin_configs.get(pid.0.as_str()) {
                Some(pc) => Some(pc),
                None if broken.has(&broken.plugin_configs, pid) => None,
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
        };
        let own_upstream = resolve_upstream(
            place,
            &format!("route:{id}"),
            &r.upstream,
            &r.upstream_id,
            &mut errs,
        );
        let upstream = match (own_upstream, &service) {
            (Some(Some(u)), _) => Some(u),
            (Some(None), Some((_, s))) => s.upstream,
            _ => None,
        };
        // A broken upstream or service was reported where it is defined, not again here.
        let service_broken = r
            .service_id
            .as_ref()
            .is_some_and(|sid| !services.contains_key(&sid.0));
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
        let mut merged = compile_route_plugins(
            &r.plugins,
            place,
            &format!("route:{id}"),
            &consumers.by_name,
            &mut errs,
        );
        note(&merged, &mut strip);
        if let Some(pc) = plugin_config {
            merged = merged.over(pc);
        }
        if let Some((_, s)) = &service {
            merged = merged.over(&s.plugins);
        }
        merged = merged.over(&global_plugins);
        if errs.0.len() != before {
            continue;
        }
        let Some(upstream) = upstream else { continue };
        let route_id = RouteId(routes.len() as u32);
        if status == 1 {
            specs.push(RouteSpec {
                route: route_id,
                paths,
                hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                methods: r.methods.as_deref().map(method_mask).unwrap_or(0),
                remote_addrs,
                priority: r.priority,
            });
        }
        routes.push(Route {
            id: id.into(),
            service: service.map(|(sid, _)| sid.into()),
            upstream,
            timeouts,
            auth: merged.auth_chain(),
            plugins: merged.set,
        });
    }

    if !errs.0.is_empty() {
        return Err(errs.0);
    }
    // Names were needed to resolve references; requests look consumers up by id.
    let mut consumers = consumers;
    consumers.by_name = Default::default();
    let counts = Counts {
        routes: routes_t.items.len(),
        services: services_t.items.len(),
        upstreams: upstreams_t.items.len(),
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
        upstreams: upstreams.into_boxed_slice(),
        consumers,
        strip: strip.into_boxed_slice(),
    })
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

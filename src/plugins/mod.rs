//! The typed `plugins:` maps of routes, services and consumers, and the null-as-default rule.
//!
//! Every plugin tollgate implements is a field here; any other name is refused by serde as
//! "not supported by tollgate". A bare `key-auth:` (YAML null) turns the plugin on with its
//! defaults, as APISIX does: it is never read as absent.

pub(crate) mod attach_consumer_label;
pub(crate) mod consumer_restriction;
pub(crate) mod cors;
pub(crate) mod forward_auth;
pub(crate) mod ip_restriction;
pub(crate) mod limit_conn;
pub(crate) mod limit_count;
pub(crate) mod limit_req;
pub(crate) mod proxy_rewrite;
pub(crate) mod request_id;
pub(crate) mod response_rewrite;
pub(crate) mod shape;
pub(crate) mod vars;

use std::sync::Arc;

use serde::Deserialize;

use crate::auth::AuthPlugin;
use crate::config::de::null_is_default;
use crate::config::error::{Errs, Place};
use crate::ids::ConsumerId;

use crate::auth::basic_auth::{BasicAuthConf, BasicAuthCredentialConf};
use crate::auth::hmac_auth::{HmacAuthConf, HmacAuthCredentialConf};
use crate::auth::jwt_auth::{JwtAuthConf, JwtAuthCredentialConf};
use crate::auth::key_auth::{KeyAuthConf, KeyAuthCredentialConf};
use crate::auth::multi_auth::MultiAuthConf;
use limit_count::{LimitCountConf, LimitCountPlugin};
use shape::Side;

/// The registry: every plugin built on the one plugin shape ([`shape::Plugin`]), one line each:
/// `"name" => module [sides]`, the sides it may be configured on (`route`: routes, services,
/// plugin configs, global rules; `consumer`: consumers, consumer groups). The macro writes its
/// conf slot into the `plugins:` maps of those sides and its compile call. (Its `mod` line stays
/// above, outside the macro, so that rustfmt and clippy see the module.)
macro_rules! registry {
    ($($name:literal => $module:ident [$($side:ident)+]),* $(,)?) => {
        registry!(@split [] [] $($name $module [$($side)+])*);
    };
    // Sorts the lines into the route-side and consumer-side lists.
    (@split [$($r:tt)*] [$($c:tt)*]) => {
        registry!(@emit route: [$($r)*], consumer: [$($c)*]);
    };
    (@split [$($r:tt)*] [$($c:tt)*] $name:literal $module:ident [route consumer] $($rest:tt)*) => {
        registry!(@split [$($r)* $name => $module,] [$($c)* $name => $module,] $($rest)*);
    };
    (@split [$($r:tt)*] [$($c:tt)*] $name:literal $module:ident [route] $($rest:tt)*) => {
        registry!(@split [$($r)* $name => $module,] [$($c)*] $($rest)*);
    };
    (@split [$($r:tt)*] [$($c:tt)*] $name:literal $module:ident [consumer] $($rest:tt)*) => {
        registry!(@split [$($r)*] [$($c)* $name => $module,] $($rest)*);
    };
    (
        @emit
        route: [$($rname:literal => $rmod:ident),* $(,)?],
        consumer: [$($cname:literal => $cmod:ident),* $(,)?] $(,)?
    ) => {
        /// Plugins on a route, service, plugin config or global rule.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RoutePluginsConf {
            #[serde(rename = "key-auth", default, deserialize_with = "null_is_default")]
            pub key_auth: Option<KeyAuthConf>,
            #[serde(rename = "basic-auth", default, deserialize_with = "null_is_default")]
            pub basic_auth: Option<BasicAuthConf>,
            #[serde(rename = "hmac-auth", default, deserialize_with = "null_is_default")]
            pub hmac_auth: Option<HmacAuthConf>,
            #[serde(rename = "jwt-auth", default, deserialize_with = "null_is_default")]
            pub jwt_auth: Option<JwtAuthConf>,
            #[serde(rename = "multi-auth", default, deserialize_with = "null_is_default")]
            pub multi_auth: Option<MultiAuthConf>,
            #[serde(rename = "limit-count", default, deserialize_with = "null_is_default")]
            pub limit_count: Option<Box<LimitCountConf>>,
            $(
                #[serde(rename = $rname, default, deserialize_with = "null_is_default")]
                pub $rmod: Option<Box<$rmod::Conf>>,
            )*
            /// The plugins `_meta.disable: true` turned off here (the loader removes their
            /// confs and lists them; see `config::DISABLED_KEY`): a route does not inherit them.
            #[serde(rename = "_meta.disabled", default)]
            pub disabled: Vec<String>,
        }

        /// Plugins on a consumer, a consumer group or a credential: the consumer side of each
        /// auth plugin (the credential itself) plus the plugins that apply per identity.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ConsumerPluginsConf {
            #[serde(rename = "key-auth", default, deserialize_with = "null_is_default")]
            pub key_auth: Option<KeyAuthCredentialConf>,
            #[serde(rename = "basic-auth", default, deserialize_with = "null_is_default")]
            pub basic_auth: Option<BasicAuthCredentialConf>,
            #[serde(rename = "hmac-auth", default, deserialize_with = "null_is_default")]
            pub hmac_auth: Option<HmacAuthCredentialConf>,
            #[serde(rename = "jwt-auth", default, deserialize_with = "null_is_default")]
            pub jwt_auth: Option<JwtAuthCredentialConf>,
            #[serde(rename = "limit-count", default, deserialize_with = "null_is_default")]
            pub limit_count: Option<Box<LimitCountConf>>,
            $(
                #[serde(rename = $cname, default, deserialize_with = "null_is_default")]
                pub $cmod: Option<Box<$cmod::Conf>>,
            )*
        }

        /// Whether tollgate has a plugin of this name (a top-level `plugins:` list may name it).
        pub(crate) fn is_known(name: &str) -> bool {
            const BUILT_IN: [&str; 6] = [
                "key-auth",
                "basic-auth",
                "hmac-auth",
                "jwt-auth",
                "multi-auth",
                "limit-count",
            ];
            BUILT_IN.contains(&name) $(|| name == $rname)* $(|| name == $cname)*
        }

        impl RoutePluginsConf {
            /// Compiles the registry plugins set here, by name.
            #[allow(unused_mut, unused_variables)]
            fn compile_registry(
                &self,
                cx: &shape::CompileCx<'_>,
                place: &Place,
                base: &str,
                errs: &mut Errs,
            ) -> Vec<(&'static str, shape::Instance)> {
                let mut out = Vec::new();
                $(
                    if let Some(c) = &self.$rmod {
                        match $rmod::compile(c, cx) {
                            Ok(p) => out.push(($rname, p)),
                            Err((f, m)) => errs.push(place, &join(&format!("{base}.{}", $rname), &f), m),
                        }
                    }
                )*
                out
            }
        }

        impl ConsumerPluginsConf {
            /// Compiles the registry plugins set here, by name.
            #[allow(unused_mut, unused_variables)]
            fn compile_registry(
                &self,
                cx: &shape::CompileCx<'_>,
                place: &Place,
                base: &str,
                errs: &mut Errs,
            ) -> Vec<(&'static str, shape::Instance)> {
                let mut out = Vec::new();
                $(
                    if let Some(c) = &self.$cmod {
                        match $cmod::compile(c, cx) {
                            Ok(p) => out.push(($cname, p)),
                            Err((f, m)) => errs.push(place, &join(&format!("{base}.{}", $cname), &f), m),
                        }
                    }
                )*
                out
            }

            /// Names of the registry plugins set here.
            #[allow(unused_mut)]
            fn registry_names(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(
                    if self.$cmod.is_some() {
                        v.push($cname);
                    }
                )*
                v
            }
        }
    };
}

registry! {
    "consumer-restriction" => consumer_restriction [route consumer],
    "attach-consumer-label" => attach_consumer_label [route consumer],
    "request-id" => request_id [route],
    "forward-auth" => forward_auth [route],
    "cors" => cors [route],
    "ip-restriction" => ip_restriction [route consumer],
    "limit-conn" => limit_conn [route consumer],
    "limit-req" => limit_req [route consumer],
    "proxy-rewrite" => proxy_rewrite [route consumer],
    "response-rewrite" => response_rewrite [route consumer],
}

impl ConsumerPluginsConf {
    /// Names of the auth plugins set here (a credential must hold exactly one).
    pub fn auth_plugin_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.key_auth.is_some() {
            v.push("key-auth");
        }
        if self.basic_auth.is_some() {
            v.push("basic-auth");
        }
        if self.hmac_auth.is_some() {
            v.push("hmac-auth");
        }
        if self.jwt_auth.is_some() {
            v.push("jwt-auth");
        }
        v
    }

    /// Names of the non-auth plugins set here.
    pub fn other_plugin_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.limit_count.is_some() {
            v.push("limit-count");
        }
        v.extend(self.registry_names());
        v
    }
}

/// The compiled non-auth plugins of one resource, or of several merged per slot.
#[derive(Debug, Default, Clone)]
pub struct PluginSet {
    /// Registry plugins by name, in priority order (highest first).
    pub extra: Arc<[(&'static str, shape::Instance)]>,
}

/// `upper`'s instances, plus `lower`'s of a name `upper` lacks, highest priority first.
fn merge_extra(
    upper: &[(&'static str, shape::Instance)],
    lower: &[(&'static str, shape::Instance)],
) -> Arc<[(&'static str, shape::Instance)]> {
    let mut v: Vec<(&'static str, shape::Instance)> = upper.to_vec();
    for (n, p) in lower {
        if !v.iter().any(|(m, _)| m == n) {
            v.push((n, p.clone()));
        }
    }
    v.sort_by_key(|(_, p)| std::cmp::Reverse(p.priority()));
    v.into()
}

impl PluginSet {
    /// Every header its instances set upstream from the identity (see
    /// [`shape::Plugin::identity_headers`]).
    pub fn identity_headers(&self) -> impl Iterator<Item = &http::HeaderName> {
        self.extra.iter().flat_map(|(_, p)| p.identity_headers())
    }

    /// Each slot from `self`, else from `lower`.
    pub fn over(&self, lower: &PluginSet) -> PluginSet {
        PluginSet {
            extra: merge_extra(&self.extra, &lower.extra),
        }
    }
}

/// The compiled plugins of one route-side resource (route, service, plugin config, global rule).
#[derive(Debug, Default, Clone)]
pub(crate) struct RoutePlugins {
    pub multi: Option<Arc<AuthPlugin>>,
    pub hmac: Option<Arc<AuthPlugin>>,
    pub basic: Option<Arc<AuthPlugin>>,
    pub jwt: Option<Arc<AuthPlugin>>,
    pub key: Option<Arc<AuthPlugin>>,
    pub set: PluginSet,
    /// Names turned off by `_meta.disable` here or above: not taken from a lower level.
    pub disabled: Arc<[String]>,
}

impl RoutePlugins {
    /// Each slot from `self`, else from `lower` (route over plugin config over service), unless
    /// `self` turned that plugin off with `_meta.disable`.
    pub(crate) fn over(&self, lower: &RoutePlugins) -> RoutePlugins {
        let off = |name: &str| self.disabled.iter().any(|d| d == name);
        let pick = |name: &str, a: &Option<Arc<AuthPlugin>>, b: &Option<Arc<AuthPlugin>>| {
            a.clone().or_else(|| b.clone().filter(|_| !off(name)))
        };
        let lower_set = PluginSet {
            extra: lower
                .set
                .extra
                .iter()
                .filter(|(n, _)| !off(n))
                .cloned()
                .collect(),
        };
        let mut disabled = self.disabled.to_vec();
        disabled.extend(lower.disabled.iter().cloned());
        RoutePlugins {
            multi: pick("multi-auth", &self.multi, &lower.multi),
            hmac: pick("hmac-auth", &self.hmac, &lower.hmac),
            basic: pick("basic-auth", &self.basic, &lower.basic),
            jwt: pick("jwt-auth", &self.jwt, &lower.jwt),
            key: pick("key-auth", &self.key, &lower.key),
            set: self.set.over(&lower_set),
            disabled: disabled.into(),
        }
    }

    /// The auth plugins in APISIX priority order.
    pub(crate) fn auth_chain(&self) -> Box<[Arc<AuthPlugin>]> {
        [&self.multi, &self.hmac, &self.basic, &self.jwt, &self.key]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Compiles the plugins of a route, service, plugin config or global rule, at its place.
/// `consumer` finds a consumer by name (for `anonymous_consumer`).
pub(crate) fn compile_route_plugins(
    conf: &RoutePluginsConf,
    place: &Place,
    owner: &str,
    consumer: &dyn Fn(&str) -> Option<ConsumerId>,
    errs: &mut Errs,
) -> RoutePlugins {
    let mut out = RoutePlugins::default();
    let anonymous = |a: &Option<String>| -> Result<Option<ConsumerId>, String> {
        match a {
            None => Ok(None),
            Some(name) if name.is_empty() => Err("must not be empty".into()),
            Some(name) => consumer(name)
                .map(Some)
                .ok_or_else(|| format!("consumer `{name}` does not exist")),
        }
    };
    macro_rules! auth {
        ($slot:ident, $field:ident, $name:literal, $module:ident, $variant:ident) => {
            if let Some(c) = &conf.$field {
                let field = concat!("plugins.", $name);
                match anonymous(&c.anonymous_consumer) {
                    Err(m) => errs.push(place, &format!("{field}.anonymous_consumer"), m),
                    Ok(anon) => match crate::auth::$module::compile(c, anon) {
                        Ok(p) => out.$slot = Some(Arc::new(AuthPlugin::$variant(p))),
                        Err((f, m)) => errs.push(place, &format!("{field}.{f}"), m),
                    },
                }
            }
        };
    }
    auth!(key, key_auth, "key-auth", key_auth, Key);
    auth!(basic, basic_auth, "basic-auth", basic_auth, Basic);
    auth!(hmac, hmac_auth, "hmac-auth", hmac_auth, Hmac);
    auth!(jwt, jwt_auth, "jwt-auth", jwt_auth, Jwt);
    if let Some(m) = &conf.multi_auth {
        match crate::auth::multi_auth::compile(m, &anonymous) {
            Ok(p) => out.multi = Some(Arc::new(p)),
            Err((f, msg)) => errs.push(place, &format!("plugins.multi-auth.{f}"), msg),
        }
    }
    let cx = shape::CompileCx {
        owner,
        side: Side::Route,
    };
    let mut instances = conf.compile_registry(&cx, place, "plugins", errs);
    if let Some(l) = &conf.limit_count {
        instances.extend(compile_limit(l, place, "plugins.limit-count", owner, errs));
    }
    out.set.extra = merge_extra(&instances, &[]);
    out.disabled = conf.disabled.iter().cloned().collect();
    out
}

/// Compiles the non-auth plugins of a consumer or consumer group (`owner` names the counter
/// owner, `consumer:<name>` or `consumer_group:<id>`).
pub(crate) fn compile_consumer_plugins(
    conf: &ConsumerPluginsConf,
    place: &Place,
    base: &str,
    owner: &str,
    errs: &mut Errs,
) -> PluginSet {
    let mut out = PluginSet::default();
    let cx = shape::CompileCx {
        owner,
        side: Side::Consumer,
    };
    let mut instances = conf.compile_registry(&cx, place, base, errs);
    if let Some(l) = &conf.limit_count {
        let field = format!("{base}.limit-count");
        instances.extend(compile_limit(l, place, &field, owner, errs));
    }
    out.extra = merge_extra(&instances, &[]);
    out
}

/// Compiles a limit-count conf for `owner`; confs naming one `group` must be identical.
fn compile_limit(
    conf: &LimitCountConf,
    place: &Place,
    field: &str,
    owner: &str,
    errs: &mut Errs,
) -> Option<shape::Named> {
    match limit_count::compile_limit_count(conf) {
        Ok(lc) => {
            if let Some(g) = &lc.group {
                let here = format!("{}: {}", place.file, place.at(field));
                match errs.1.get(g) {
                    Some((hash, first)) if *hash != lc.conf_hash => {
                        errs.push(
                            place,
                            &format!("{field}.group"),
                            format!("group `{g}` conf mismatched with {first}"),
                        );
                        return None;
                    }
                    Some(_) => {}
                    None => {
                        errs.1.insert(g.clone(), (lc.conf_hash, here));
                    }
                }
            }
            Some(("limit-count", Arc::new(LimitCountPlugin::new(owner, lc))))
        }
        Err(list) => {
            for (f, m) in list {
                errs.push(place, &join(field, &f), m);
            }
            None
        }
    }
}

fn join(base: &str, field: &str) -> String {
    if field.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_plugin_is_on_with_defaults() {
        let p: RoutePluginsConf = serde_yaml::from_str("key-auth:\nbasic-auth: {}\n").unwrap();
        assert!(p.key_auth.is_some());
        assert!(p.basic_auth.is_some());
        assert!(p.jwt_auth.is_none());
        let c: ConsumerPluginsConf = serde_yaml::from_str("jwt-auth:\n").unwrap();
        assert!(c.jwt_auth.is_some());
    }

    #[test]
    fn unknown_plugin_is_refused() {
        let e = serde_yaml::from_str::<RoutePluginsConf>("fault-injection: {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `fault-injection`"));
    }
}

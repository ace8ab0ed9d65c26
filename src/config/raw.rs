//! Serde mirror of the resource files (APISIX standalone YAML). No logic here: every struct
//! denies unknown fields, and APISIX fields tollgate does not implement are read as
//! `Unsupported` so `compile` can refuse them by name.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::plugins::{ConsumerPluginsConf, RoutePluginsConf};

/// A field APISIX has and tollgate refuses; present means "not supported by tollgate".
pub(crate) type Unsupported = Option<IgnoredAny>;

/// One resource file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConf {
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    #[serde(default)]
    pub services: Vec<ServiceConf>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamConf>,
    #[serde(default)]
    pub consumers: Vec<ConsumerConf>,
    #[serde(default)]
    pub consumer_groups: Vec<ConsumerGroupConf>,
    #[serde(default)]
    pub plugin_configs: Vec<PluginConfigConf>,
    #[serde(default)]
    pub global_rules: Vec<GlobalRuleConf>,
    /// a7 config-sync keys, accepted and ignored.
    pub version: Option<IgnoredAny>,
    pub gateway_group: Option<IgnoredAny>,
    /// Accepted when empty (`[]`); any entry is "not supported by tollgate".
    pub ssls: Option<Vec<IgnoredAny>>,
    pub stream_routes: Option<Vec<IgnoredAny>>,
    pub protos: Option<Vec<IgnoredAny>>,
    pub secrets: Option<Vec<IgnoredAny>>,
    pub plugin_metadata: Option<Vec<IgnoredAny>>,
    /// The plugins the file uses (`- name: key-auth` or `- key-auth`): each must be one tollgate
    /// has.
    pub plugins: Option<Vec<serde_yaml::Value>>,
    /// Where each item of a list above stands in the file, by list name, when items that failed
    /// to parse were left out (a list not named here: item i is at i).
    #[serde(skip)]
    pub positions: BTreeMap<&'static str, Vec<u32>>,
}

/// An APISIX id: a string, or an integer that is read as its decimal string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a positive integer id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// HTTP methods APISIX routes accept, spelt as in its files (the variant names are the YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodConf {
    GET,
    POST,
    PUT,
    DELETE,
    PATCH,
    HEAD,
    OPTIONS,
    CONNECT,
    TRACE,
    PURGE,
}

impl MethodConf {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GET => "GET",
            Self::POST => "POST",
            Self::PUT => "PUT",
            Self::DELETE => "DELETE",
            Self::PATCH => "PATCH",
            Self::HEAD => "HEAD",
            Self::OPTIONS => "OPTIONS",
            Self::CONNECT => "CONNECT",
            Self::TRACE => "TRACE",
            Self::PURGE => "PURGE",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    pub id: Option<Id>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub uri: Option<String>,
    pub uris: Option<Vec<String>>,
    pub methods: Option<Vec<MethodConf>>,
    pub host: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub remote_addr: Option<String>,
    pub remote_addrs: Option<Vec<String>>,
    #[serde(default)]
    pub priority: i64,
    pub status: Option<u8>,
    pub service_id: Option<Id>,
    pub upstream_id: Option<Id>,
    pub upstream: Option<UpstreamConf>,
    pub plugin_config_id: Option<Id>,
    #[serde(default)]
    pub plugins: RoutePluginsConf,
    pub timeout: Option<TimeoutConf>,
    /// Pingora proxies WebSocket upgrades on every route, so this is accepted.
    pub enable_websocket: Option<bool>,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
    pub vars: Unsupported,
    pub filter_func: Option<IgnoredAny>,
    pub script: Unsupported,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConf {
    pub id: Option<Id>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plugins: RoutePluginsConf,
    pub upstream: Option<UpstreamConf>,
    pub upstream_id: Option<Id>,
    pub hosts: Option<Vec<String>>,
    pub enable_websocket: Option<bool>,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
    pub script: Unsupported,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConf {
    pub connect: f64,
    pub send: f64,
    pub read: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerType {
    #[default]
    Roundrobin,
    Chash,
    Ewma,
    LeastConn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    #[default]
    Vars,
    Header,
    Cookie,
    Consumer,
    VarsCombinations,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemeConf {
    #[default]
    Http,
    Https,
    Grpc,
    Grpcs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassHost {
    #[default]
    Pass,
    Node,
    Rewrite,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConf {
    pub id: Option<Id>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "type")]
    pub kind: BalancerType,
    #[serde(default)]
    pub nodes: NodesConf,
    pub hash_on: Option<HashOn>,
    pub key: Option<String>,
    #[serde(default)]
    pub scheme: SchemeConf,
    #[serde(default)]
    pub pass_host: PassHost,
    pub upstream_host: Option<String>,
    pub timeout: Option<TimeoutConf>,
    pub retries: Option<u32>,
    pub retry_timeout: Option<f64>,
    pub keepalive_pool: Option<KeepalivePoolConf>,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
    pub checks: Unsupported,
    pub tls: Unsupported,
    pub discovery_type: Unsupported,
    pub service_name: Unsupported,
    pub discovery_args: Unsupported,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepalivePoolConf {
    pub size: Option<u32>,
    pub idle_timeout: Option<f64>,
    pub requests: Option<u32>,
}

/// One upstream node as written, before name resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConf {
    pub host: String,
    pub port: Option<u16>,
    pub weight: u32,
    pub priority: i64,
}

/// `nodes` in both APISIX forms: `{"host:port": weight}` or `[{host, port, weight}]`.
#[derive(Debug, Clone, Default)]
pub struct NodesConf(pub Vec<NodeConf>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeItemConf {
    host: String,
    port: Option<u16>,
    weight: u32,
    #[serde(default)]
    priority: i64,
    #[allow(dead_code)]
    metadata: Option<IgnoredAny>,
}

impl<'de> Deserialize<'de> for NodesConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NodesConf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of \"host:port\" to weight, or a list of {host, port, weight}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodesConf, A::Error> {
                let mut nodes = Vec::new();
                while let Some((addr, weight)) = map.next_entry::<String, u32>()? {
                    let (host, port) =
                        crate::addr::split_host_port(&addr).map_err(de::Error::custom)?;
                    nodes.push(NodeConf {
                        host,
                        port,
                        weight,
                        priority: 0,
                    });
                }
                Ok(NodesConf(nodes))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodesConf, A::Error> {
                let mut nodes = Vec::new();
                while let Some(n) = seq.next_element::<NodeItemConf>()? {
                    nodes.push(NodeConf {
                        host: n.host,
                        port: n.port,
                        weight: n.weight,
                        priority: n.priority,
                    });
                }
                Ok(NodesConf(nodes))
            }
        }
        d.deserialize_any(V)
    }
}

/// An entry of `consumers:`: a consumer (`username`), or a credential in APISIX's id form
/// (`id: <username>/credentials/<name>`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConf {
    pub username: Option<String>,
    pub id: Option<Id>,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub group_id: Option<Id>,
    #[serde(default)]
    pub plugins: ConsumerPluginsConf,
    #[serde(default)]
    pub credentials: Vec<CredentialConf>,
    pub expires_at: Option<String>,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
}

/// A credential nested under a consumer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConf {
    pub name: String,
    pub id: Option<Id>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub plugins: ConsumerPluginsConf,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupConf {
    pub id: Id,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plugins: ConsumerPluginsConf,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfigConf {
    pub id: Id,
    pub name: Option<String>,
    pub desc: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plugins: RoutePluginsConf,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRuleConf {
    pub id: Id,
    #[serde(default)]
    pub plugins: RoutePluginsConf,
    pub create_time: Option<IgnoredAny>,
    pub update_time: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_both_forms() {
        let m: NodesConf = serde_yaml::from_str("{\"127.0.0.1:1980\": 2}").unwrap();
        assert_eq!(
            m.0[0],
            NodeConf {
                host: "127.0.0.1".into(),
                port: Some(1980),
                weight: 2,
                priority: 0
            }
        );
        let l: NodesConf =
            serde_yaml::from_str("[{host: 127.0.0.1, port: 1980, weight: 3}]").unwrap();
        assert_eq!(l.0[0].weight, 3);
    }
}

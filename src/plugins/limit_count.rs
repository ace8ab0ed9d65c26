//! limit-count: fixed-window request quotas, counted locally or in Redis.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    #[default]
    Var,
    VarCombination,
    Constant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    Local,
    Redis,
    RedisCluster,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitCountConf {
    pub count: Option<u64>,
    pub time_window: Option<u64>,
    pub key_type: Option<KeyType>,
    pub key: Option<String>,
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
    pub show_limit_quota_header: Option<bool>,
    pub group: Option<String>,
    pub policy: Option<Policy>,
    pub allow_degradation: Option<bool>,
    pub sync_interval: Option<f64>,
    pub redis_host: Option<String>,
    pub redis_port: Option<u16>,
    pub redis_username: Option<String>,
    pub redis_password: Option<String>,
    pub redis_database: Option<u32>,
    pub redis_timeout: Option<u64>,
    pub redis_ssl: Option<bool>,
    pub redis_ssl_verify: Option<bool>,
    pub redis_keepalive_timeout: Option<u64>,
    pub redis_keepalive_pool: Option<u32>,
    pub redis_cluster_nodes: Option<Vec<String>>,
    pub redis_cluster_name: Option<String>,
    pub redis_cluster_ssl: Option<bool>,
    pub redis_cluster_ssl_verify: Option<bool>,
}

//! consumer-restriction: allow or deny by consumer name, consumer group, service or route id.

use serde::Deserialize;

use crate::config::raw::MethodConf;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionType {
    #[default]
    ConsumerName,
    ConsumerGroupId,
    ServiceId,
    RouteId,
}

impl RestrictionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsumerName => "consumer_name",
            Self::ConsumerGroupId => "consumer_group_id",
            Self::ServiceId => "service_id",
            Self::RouteId => "route_id",
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerRestrictionConf {
    #[serde(default, rename = "type")]
    pub kind: RestrictionType,
    pub whitelist: Option<Vec<String>>,
    pub blacklist: Option<Vec<String>>,
    pub allowed_by_methods: Option<Vec<AllowedByMethodsConf>>,
    pub rejected_code: Option<u16>,
    pub rejected_msg: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedByMethodsConf {
    pub user: Option<String>,
    #[serde(default)]
    pub methods: Vec<MethodConf>,
}

//! attach-consumer-label: consumer labels to upstream request headers (`X-Dept: $department`).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachConsumerLabelConf {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

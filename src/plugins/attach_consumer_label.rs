//! attach-consumer-label: consumer labels to upstream request headers (`X-Dept: $department`).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachConsumerLabelConf {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

use http::HeaderName;

/// Compiled: (header, label name) pairs.
#[derive(Debug)]
pub struct AttachConsumerLabel {
    pub headers: Box<[(HeaderName, Box<str>)]>,
}

pub fn compile(conf: &AttachConsumerLabelConf) -> Result<AttachConsumerLabel, (String, String)> {
    if conf.headers.is_empty() {
        return Err(("headers".into(), "must have at least 1 entry".into()));
    }
    let mut out = Vec::new();
    for (h, v) in &conf.headers {
        let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).map_err(|_| {
            (
                format!("headers.{h}"),
                "not a valid header name".to_string(),
            )
        })?;
        let Some(label) = v.strip_prefix('$') else {
            return Err((
                format!("headers.{h}"),
                format!("failed to match pattern \"^\\\\$.*\" with \"{v}\""),
            ));
        };
        out.push((name, label.into()));
    }
    Ok(AttachConsumerLabel {
        headers: out.into_boxed_slice(),
    })
}

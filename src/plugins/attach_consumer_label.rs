//! attach-consumer-label: consumer labels to upstream request headers (`X-Dept: $department`).
//! A client's copy of every header named here (anywhere in the config) is removed from every
//! request, so an upstream never sees a forged label.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderName;
use pingora_http::{ParsedHeaderName, RequestHeader};
use serde::Deserialize;

use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, State};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Compiled: (header, label name) pairs; headers are written with the case the file gives.
#[derive(Debug)]
pub(crate) struct AttachConsumerLabel {
    headers: Box<[(ParsedHeaderName, Box<str>)]>,
    names: Box<[HeaderName]>,
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf { headers } = conf;
    if headers.is_empty() {
        return Err(("headers".into(), "must have at least 1 entry".into()));
    }
    let mut out = Vec::new();
    for (h, v) in headers {
        let name = ParsedHeaderName::from_bytes(h.as_bytes()).map_err(|_| {
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
    Ok(Arc::new(AttachConsumerLabel {
        names: out.iter().map(|(n, _)| n.name().clone()).collect(),
        headers: out.into_boxed_slice(),
    }))
}

impl Plugin for AttachConsumerLabel {
    fn name(&self) -> &'static str {
        "attach-consumer-label"
    }

    fn priority(&self) -> i32 {
        2399
    }

    fn identity_headers(&self) -> &[HeaderName] {
        &self.names
    }

    /// Each label the consumer has, as its header; a label it lacks sends nothing.
    fn edits_upstream_request(&self) -> bool {
        true
    }

    fn upstream_request(
        &self,
        req: &mut RequestHeader,
        r: &LazyView<'_>,
        _state: &State,
    ) -> pingora_core::Result<()> {
        let r = r.get();
        for (name, label) in self.headers.iter() {
            if let Some((_, v)) = r.consumer_labels.iter().find(|(k, _)| **k == **label) {
                req.insert_parsed_header(name, v.clone())?;
            }
        }
        Ok(())
    }
}

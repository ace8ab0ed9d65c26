//! request-id (APISIX priority 12015): gives each request an id in `header_name` (a client's own
//! value is kept), sends it upstream, and back in the response when `include_in_response`.
//! Only `algorithm: uuid` (v4) is built; `nanoid` and `range_id` are refused by name.

use std::sync::Arc;

use http::HeaderValue;
use pingora_http::{ParsedHeaderName, RequestHeader, ResponseHeader};
use serde::Deserialize;

use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, RequestView, State, Step};
use crate::headers::Head;

/// The APISIX conf.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    #[serde(default = "default_header")]
    pub header_name: String,
    #[serde(default = "yes")]
    pub include_in_response: bool,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    pub range_id: Option<serde_yaml::Value>,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            header_name: default_header(),
            include_in_response: true,
            algorithm: default_algorithm(),
            range_id: None,
        }
    }
}

fn default_header() -> String {
    "X-Request-Id".into()
}
fn default_algorithm() -> String {
    "uuid".into()
}
fn yes() -> bool {
    true
}

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct RequestId {
    /// Parsed once; written with the case the file gives.
    header: ParsedHeaderName,
    include_in_response: bool,
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        header_name,
        include_in_response,
        algorithm,
        range_id,
    } = conf;
    if algorithm != "uuid" {
        return Err((
            "algorithm".into(),
            format!("`{algorithm}` is not supported by tollgate (only `uuid`)"),
        ));
    }
    if range_id.is_some() {
        return Err(("range_id".into(), "not supported by tollgate".into()));
    }
    let header = ParsedHeaderName::from_bytes(header_name.as_bytes()).map_err(|_| {
        (
            "header_name".into(),
            format!("`{header_name}` is not a valid header name"),
        )
    })?;
    Ok(Arc::new(RequestId {
        header,
        include_in_response: *include_in_response,
    }))
}

impl Plugin for RequestId {
    fn name(&self) -> &'static str {
        "request-id"
    }

    fn priority(&self) -> i32 {
        12015
    }

    fn request_id<'s>(&self, state: &'s State) -> Option<&'s str> {
        state
            .as_ref()
            .and_then(|s| s.downcast_ref::<HeaderValue>())
            .and_then(|v| v.to_str().ok())
    }

    fn request(&self, r: &RequestView<'_>, state: &mut State) -> Option<Step> {
        let id = match r.req.headers.get(self.header.name()) {
            Some(v) => v.clone(),
            None => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("0")),
        };
        *state = Some(Box::new(id));
        Some(Step::Continue)
    }

    fn edits_upstream_request(&self) -> bool {
        true
    }

    fn upstream_request(
        &self,
        req: &mut RequestHeader,
        _r: &LazyView<'_>,
        state: &State,
    ) -> pingora_core::Result<()> {
        if let Some(id) = state.as_ref().and_then(|s| s.downcast_ref::<HeaderValue>()) {
            req.insert_parsed_header(&self.header, id.clone())?;
        }
        Ok(())
    }

    fn edits_response(&self) -> bool {
        true
    }

    fn response(
        &self,
        resp: &mut Head<'_, ResponseHeader>,
        _r: &LazyView<'_>,
        state: &mut State,
    ) -> pingora_core::Result<()> {
        if !self.include_in_response {
            return Ok(());
        }
        if let Some(id) = state.as_ref().and_then(|s| s.downcast_ref::<HeaderValue>()) {
            resp.insert_parsed_header(&self.header, id.clone())?;
        }
        Ok(())
    }
}

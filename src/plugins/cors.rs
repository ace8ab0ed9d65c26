//! cors (APISIX priority 4000, route side): Cross-Origin Resource Sharing headers.
//!
//! Every `OPTIONS` request on the route is answered by the gateway itself (APISIX's `rewrite`
//! returns 200 for any `OPTIONS`): status 200, empty body, the CORS headers; nothing reaches the
//! upstream. Every other response, the gateway's own answers included (a 401 from an auth plugin,
//! a 429 from limit-req), gets the CORS headers in the `response` hook, as APISIX's
//! `header_filter` does.
//!
//! The allowed origin is decided as APISIX 3.x does: with `allow_origins_by_regex`, only the
//! regexes count (`allow_origins` is ignored); otherwise `*` allows any origin (and a request
//! without `Origin`), `**` echoes the request's `Origin` (or `*` without one), a comma list or a
//! single origin must match exactly. A request whose origin is not allowed gets no CORS headers
//! (only `Vary: Origin`). `timing_allow_origins` and `timing_allow_origins_by_regex` set
//! `Timing-Allow-Origin` the same way. `allow_origins_by_metadata` needs plugin metadata and is
//! refused. Header values and regexes are built at load; a request only compares and copies.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header};
use pingora_http::ResponseHeader;
use regex::RegexSet;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, RequestView, State, Step};
use crate::headers::Head;
use crate::reject::Reject;

/// The APISIX conf.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    /// Default `*`.
    pub allow_origins: Option<String>,
    /// Default `*`.
    pub allow_methods: Option<String>,
    /// Default `*`.
    pub allow_headers: Option<String>,
    /// Unset: no `Access-Control-Expose-Headers`.
    pub expose_headers: Option<String>,
    /// Default 5.
    pub max_age: Option<i64>,
    /// Default false.
    pub allow_credential: Option<bool>,
    pub allow_origins_by_regex: Option<Vec<String>>,
    /// Needs `plugin_metadata`: refused.
    pub allow_origins_by_metadata: Option<IgnoredAny>,
    pub timing_allow_origins: Option<String>,
    pub timing_allow_origins_by_regex: Option<Vec<String>>,
}

/// `allow_methods: "**"`.
const ALL_METHODS: &str = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";

/// Which origins a conf allows, compiled.
#[derive(Debug)]
enum Origins {
    /// `*`: every request, `*` sent.
    Any,
    /// `**`: the request's origin echoed (`*` without one).
    Echo,
    /// One origin or a comma list: exact matches.
    List(Box<[Box<[u8]>]>),
    /// `*_by_regex`: the request's origin when any regex finds a match in it.
    Regex(RegexSet),
}

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct Cors {
    origins: Origins,
    /// `Vary: Origin` is added (the answer depends on the origin).
    vary: bool,
    allow_methods: HeaderValue,
    /// `None`: `**`, the request's `Access-Control-Request-Headers` echoed.
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    allow_credential: bool,
    timing: Option<Origins>,
}

/// What the request step saw, for the response hook.
#[derive(Debug)]
struct Seen {
    origin: Option<HeaderValue>,
    request_headers: Option<HeaderValue>,
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        allow_origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credential,
        allow_origins_by_regex,
        allow_origins_by_metadata,
        timing_allow_origins,
        timing_allow_origins_by_regex,
    } = conf;
    if allow_origins_by_metadata.is_some() {
        return Err((
            "allow_origins_by_metadata".into(),
            "not supported by tollgate (plugin_metadata is not loaded); list the origins in \
             allow_origins or allow_origins_by_regex"
                .into(),
        ));
    }
    let allow_origins = allow_origins.as_deref().unwrap_or("*");
    let allow_methods = allow_methods.as_deref().unwrap_or("*");
    let allow_headers = allow_headers.as_deref().unwrap_or("*");
    let allow_credential = allow_credential.unwrap_or(false);
    if allow_credential {
        for (field, v) in [
            ("allow_origins", Some(allow_origins)),
            ("allow_methods", Some(allow_methods)),
            ("allow_headers", Some(allow_headers)),
            ("expose_headers", expose_headers.as_deref()),
            ("timing_allow_origins", timing_allow_origins.as_deref()),
        ] {
            if v == Some("*") {
                return Err((
                    field.into(),
                    "you can not set '*' for other option when 'allow_credential' is true \
                     (set the values explicitly; the default of allow_origins, allow_methods \
                     and allow_headers is '*')"
                        .into(),
                ));
            }
        }
    }
    check_origins("allow_origins", allow_origins)?;
    if let Some(t) = timing_allow_origins {
        check_origins("timing_allow_origins", t)?;
    }
    let origins = match allow_origins_by_regex {
        Some(list) => Origins::Regex(compile_regexes("allow_origins_by_regex", list)?),
        None => literal_origins(allow_origins),
    };
    let timing = match (timing_allow_origins_by_regex, timing_allow_origins) {
        (Some(list), _) => Some(Origins::Regex(compile_regexes(
            "timing_allow_origins_by_regex",
            list,
        )?)),
        (None, Some(t)) => Some(literal_origins(t)),
        (None, None) => None,
    };
    let value = |field: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| {
            (
                field.to_owned(),
                format!("`{v}` is not a valid header value"),
            )
        })
    };
    let allow_methods = value(
        "allow_methods",
        if allow_methods == "**" {
            ALL_METHODS
        } else {
            allow_methods
        },
    )?;
    let allow_headers = if allow_headers == "**" {
        None
    } else {
        Some(value("allow_headers", allow_headers)?)
    };
    let expose_headers = match expose_headers.as_deref() {
        None | Some("") => None,
        Some(e) => Some(value("expose_headers", e)?),
    };
    Ok(Arc::new(Cors {
        vary: !matches!(origins, Origins::Any),
        origins,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age: HeaderValue::from(max_age.unwrap_or(5)),
        allow_credential,
        timing,
    }))
}

/// APISIX's pattern for `allow_origins`: `*`, `**`, `null`, or `scheme://host[:port]` items
/// separated by commas.
fn check_origins(field: &str, v: &str) -> Result<(), CompileError> {
    if matches!(v, "*" | "**" | "null") {
        return Ok(());
    }
    let ok = v.split(',').all(|o| {
        o.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !rest.is_empty()
        }) && HeaderValue::from_str(o).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err((
            field.into(),
            format!(
                "`{v}` is not `*`, `**`, `null` or a comma-separated list of scheme://host[:port]"
            ),
        ))
    }
}

fn literal_origins(v: &str) -> Origins {
    match v {
        "*" => Origins::Any,
        "**" => Origins::Echo,
        _ => Origins::List(v.split(',').map(|o| o.as_bytes().into()).collect()),
    }
}

fn compile_regexes(field: &str, list: &[String]) -> Result<RegexSet, CompileError> {
    if list.is_empty() {
        return Err((field.into(), "must hold at least one regex".into()));
    }
    for (i, re) in list.iter().enumerate() {
        if re.is_empty() || re.len() > 4096 {
            return Err((
                format!("{field}[{i}]"),
                "must be 1 to 4096 characters".into(),
            ));
        }
        if list[..i].contains(re) {
            return Err((format!("{field}[{i}]"), format!("`{re}` is listed twice")));
        }
        if let Err(e) = regex::Regex::new(re) {
            return Err((
                format!("{field}[{i}]"),
                format!(
                    "`{re}` is not a regex tollgate can compile (Rust regex syntax; no look-around or backreferences): {e}"
                ),
            ));
        }
    }
    RegexSet::new(list).map_err(|e| (field.into(), e.to_string()))
}

impl Origins {
    /// The `Access-Control-Allow-Origin` (or `Timing-Allow-Origin`) value for a request, or
    /// `None` when its origin is not allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::Echo => Some(origin.cloned().unwrap_or(HeaderValue::from_static("*"))),
            Origins::List(list) => {
                let o = origin?;
                list.iter().any(|a| **a == *o.as_bytes()).then(|| o.clone())
            }
            Origins::Regex(set) => {
                let o = origin?;
                let s = o.to_str().ok()?;
                set.is_match(s).then(|| o.clone())
            }
        }
    }
}

impl Plugin for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }

    fn priority(&self) -> i32 {
        4000
    }

    fn request(&self, r: &RequestView<'_>, state: &mut State) -> Option<Step> {
        *state = Some(Box::new(Seen {
            origin: r.req.headers.get(header::ORIGIN).cloned(),
            request_headers: r
                .req
                .headers
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned(),
        }));
        if r.req.method == http::Method::OPTIONS {
            return Some(Step::Respond(preflight()));
        }
        Some(Step::Continue)
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
        let Some(seen) = state.as_ref().and_then(|s| s.downcast_ref::<Seen>()) else {
            return Ok(());
        };
        if self.vary {
            resp.append_header(header::VARY, HeaderValue::from_static("Origin"))?;
        }
        if let Some(origin) = self.origins.allow(seen.origin.as_ref()) {
            resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
            resp.insert_header(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            )?;
            resp.insert_header(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone())?;
            if let Some(e) = &self.expose_headers {
                resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone())?;
            }
            match (&self.allow_headers, &seen.request_headers) {
                (Some(h), _) | (None, Some(h)) => {
                    resp.insert_header(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone())?;
                }
                (None, None) => {
                    resp.remove_header(&header::ACCESS_CONTROL_ALLOW_HEADERS);
                }
            }
            if self.allow_credential {
                resp.insert_header(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                )?;
            }
        }
        if let Some(timing) = &self.timing
            && let Some(t) = timing.allow(seen.origin.as_ref())
        {
            resp.insert_header(TIMING_ALLOW_ORIGIN, t)?;
        }
        Ok(())
    }
}

const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// APISIX's answer to an `OPTIONS` request: 200, empty body (the CORS headers are added by the
/// response hook).
fn preflight() -> Reject {
    Reject::new(200, Bytes::new()).with_header(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shape::Side;

    fn build(yaml: &str) -> Result<Instance, CompileError> {
        let conf: Conf = serde_yaml::from_str(yaml).unwrap();
        compile(
            &conf,
            &CompileCx {
                owner: "route:r",
                side: Side::Route,
            },
        )
    }

    fn origins(yaml: &str) -> Origins {
        let conf: Conf = serde_yaml::from_str(yaml).unwrap();
        match &conf.allow_origins_by_regex {
            Some(l) => Origins::Regex(compile_regexes("x", l).unwrap()),
            None => literal_origins(conf.allow_origins.as_deref().unwrap_or("*")),
        }
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn star_with_credentials_is_refused_as_apisix_does() {
        let e = build("allow_credential: true").unwrap_err();
        assert_eq!(e.0, "allow_origins");
        assert!(e.1.contains("can not set '*'"), "{}", e.1);
        let e = build(
            "{allow_credential: true, allow_origins: 'http://a.com', allow_methods: GET, allow_headers: x, expose_headers: '*'}",
        )
        .unwrap_err();
        assert_eq!(e.0, "expose_headers");
        // `**` is APISIX's explicit "force" value and is accepted with credentials.
        build("{allow_credential: true, allow_origins: '**', allow_methods: '**', allow_headers: '**'}")
            .unwrap();
    }

    #[test]
    fn metadata_and_bad_values_are_refused() {
        assert_eq!(
            build("allow_origins_by_metadata: [EXAMPLE]").unwrap_err().0,
            "allow_origins_by_metadata"
        );
        assert_eq!(
            build("allow_origins: 'example.com'").unwrap_err().0,
            "allow_origins"
        );
        let e = build("allow_origins_by_regex: ['(?<=a)b']").unwrap_err();
        assert_eq!(e.0, "allow_origins_by_regex[0]");
        assert_eq!(
            build("allow_origins_by_regex: []").unwrap_err().0,
            "allow_origins_by_regex"
        );
        assert!(serde_yaml::from_str::<Conf>("allow_origin: x").is_err());
    }

    #[test]
    fn origins_as_apisix_decides_them() {
        let any = origins("{}");
        assert_eq!(any.allow(None), Some(hv("*")));
        assert_eq!(any.allow(Some(&hv("http://x"))), Some(hv("*")));
        let echo = origins("allow_origins: '**'");
        assert_eq!(echo.allow(None), Some(hv("*")));
        assert_eq!(echo.allow(Some(&hv("http://x"))), Some(hv("http://x")));
        let list = origins("allow_origins: 'http://sub.domain.com,http://sub2.domain.com'");
        assert_eq!(
            list.allow(Some(&hv("http://sub2.domain.com"))),
            Some(hv("http://sub2.domain.com"))
        );
        assert_eq!(list.allow(Some(&hv("http://sub3.domain.com"))), None);
        assert_eq!(list.allow(None), None);
        let one = origins("allow_origins: 'http://a.com'");
        assert_eq!(
            one.allow(Some(&hv("http://a.com"))),
            Some(hv("http://a.com"))
        );
        assert_eq!(one.allow(Some(&hv("http://a.com.evil"))), None);
        let re = origins(r"allow_origins_by_regex: ['.*\.test.com$']");
        assert_eq!(
            re.allow(Some(&hv("http://a.test.com"))),
            Some(hv("http://a.test.com"))
        );
        assert_eq!(re.allow(Some(&hv("http://a.test2.com"))), None);
        assert_eq!(re.allow(None), None);
    }
}

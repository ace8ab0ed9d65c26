//! APISIX variables (`$uri`, `${http_x}`, `$arg_page`...) in plugin values: the closed set
//! tollgate can resolve, parsed once at load into a [`Template`], and read per request from the
//! [`RequestView`] (and the response head, for response-time plugins). A name outside the set is
//! a load error, never an empty string: APISIX would read any nginx variable.
//!
//! Syntax, as APISIX's `core.utils.resolve_var`: `$name` (letters, digits, `_`, `.`) or
//! `${name}`, not after a backslash; `${name ?? default}` gives `default` when the variable is
//! unset. With captures on (proxy-rewrite's header values), `$1` / `${1}` are `regex_uri`
//! capture groups.

use std::borrow::Cow;
use std::io::Write as _;

use http::HeaderName;
use pingora_http::ResponseHeader;

use super::shape::RequestView;

/// One variable tollgate can resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    /// The normalised, decoded path (nginx `$uri`).
    Uri,
    /// The request target as the client sent it, query included.
    RequestUri,
    /// The `Host` header without port, lower case.
    Host,
    RemoteAddr,
    RequestMethod,
    /// The raw query (`$args`, `$query_string`).
    Args,
    /// `?` when the request has a query, else empty.
    IsArgs,
    ConsumerName,
    ConsumerGroupId,
    RouteId,
    ServiceId,
    /// `arg_<name>`: the first value of that query argument, decoded (name matched exactly).
    Arg(Box<str>),
    /// `http_<name>`: the first value of that request header.
    Header(HeaderName),
    /// `cookie_<name>`.
    Cookie(Box<str>),
    /// Response time only: the response status.
    Status,
    /// Response time only: `sent_http_<name>` / `upstream_http_<name>`, a response header.
    RespHeader(HeaderName),
    /// Response time only: the upstream node's IP and port.
    BalancerIp,
    BalancerPort,
    /// `$1`: a `regex_uri` capture group (proxy-rewrite header values).
    Capture(usize),
}

/// Where a variable may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Before the request goes upstream.
    Request,
    /// With the response head.
    Response,
}

pub(crate) const KNOWN: &str = "uri, request_uri, host, remote_addr, request_method, args, \
                         query_string, is_args, consumer_name, consumer_group_id, route_id, \
                         service_id, arg_<name>, http_<name>, cookie_<name>; with the response: \
                         status, upstream_status, sent_http_<name>, upstream_http_<name>, \
                         balancer_ip, balancer_port";

fn header_name(suffix: &str, full: &str) -> Result<HeaderName, String> {
    let lower: String = suffix
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(n) if !suffix.is_empty() => Ok(n),
        _ => Err(format!("`${full}` names no valid header")),
    }
}

impl Var {
    /// Parses a variable name (without `$`).
    pub(crate) fn parse(name: &str, when: When) -> Result<Var, String> {
        let response_only = |v: Var| {
            if when == When::Response {
                Ok(v)
            } else {
                Err(format!(
                    "`${name}` is only known with the response, not in this plugin"
                ))
            }
        };
        Ok(match name {
            "uri" => Var::Uri,
            "request_uri" => Var::RequestUri,
            "host" => Var::Host,
            "remote_addr" => Var::RemoteAddr,
            "request_method" => Var::RequestMethod,
            "args" | "query_string" => Var::Args,
            "is_args" => Var::IsArgs,
            "consumer_name" => Var::ConsumerName,
            "consumer_group_id" => Var::ConsumerGroupId,
            "route_id" => Var::RouteId,
            "service_id" => Var::ServiceId,
            "status" | "upstream_status" => return response_only(Var::Status),
            "balancer_ip" => return response_only(Var::BalancerIp),
            "balancer_port" => return response_only(Var::BalancerPort),
            _ => {
                if let Some(h) = name.strip_prefix("http_") {
                    Var::Header(header_name(h, name)?)
                } else if let Some(h) = name
                    .strip_prefix("sent_http_")
                    .or_else(|| name.strip_prefix("upstream_http_"))
                {
                    return response_only(Var::RespHeader(header_name(h, name)?));
                } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Var::Arg(a.into())
                } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    Var::Cookie(c.into())
                } else {
                    return Err(format!(
                        "variable `${name}` is not supported by tollgate (it knows {KNOWN})"
                    ));
                }
            }
        })
    }
}

/// What variables are read from.
pub(crate) struct VarCx<'a> {
    pub view: &'a RequestView<'a>,
    pub resp: Option<&'a ResponseHeader>,
    /// `regex_uri` captures, as byte strings (index 0 the whole match).
    pub captures: &'a [Option<Vec<u8>>],
}

impl<'a> VarCx<'a> {
    /// The variable's value; `None` when unset (as APISIX's `nil`).
    pub(crate) fn get(&self, var: &Var) -> Option<Cow<'a, [u8]>> {
        let req = self.view.req;
        let b = |s: &'a str| Some(Cow::Borrowed(s.as_bytes()));
        match var {
            Var::Uri => Some(Cow::Borrowed(self.view.path)),
            Var::RequestUri => Some(Cow::Borrowed(req.raw_path())),
            Var::Host => {
                let h = req.headers.get(http::header::HOST)?.to_str().ok()?;
                Some(Cow::Owned(
                    crate::router::request_host(h).into_owned().into_bytes(),
                ))
            }
            Var::RemoteAddr => Some(Cow::Owned(self.view.remote?.to_string().into_bytes())),
            Var::RequestMethod => b(req.method.as_str()),
            Var::Args => b(req.uri.query().unwrap_or("")),
            Var::IsArgs => b(if req.uri.query().is_some_and(|q| !q.is_empty()) {
                "?"
            } else {
                ""
            }),
            Var::ConsumerName => b(self.view.consumer?),
            Var::ConsumerGroupId => b(self.view.consumer_group?),
            Var::RouteId => b(self.view.route_id),
            Var::ServiceId => b(self.view.service_id?),
            Var::Arg(name) => match crate::query::first(req.uri.query(), name)? {
                Cow::Borrowed(v) => b(v),
                Cow::Owned(v) => Some(Cow::Owned(v.into_bytes())),
            },
            Var::Header(name) => Some(Cow::Borrowed(req.headers.get(name)?.as_bytes())),
            Var::Cookie(name) => b(crate::auth::cookie(req, name)?),
            Var::Status => Some(Cow::Owned(self.resp?.status.as_str().as_bytes().to_vec())),
            Var::RespHeader(name) => Some(Cow::Owned(
                self.resp?.headers.get(name)?.as_bytes().to_vec(),
            )),
            Var::BalancerIp => Some(Cow::Owned(
                self.view.upstream?.ip().to_string().into_bytes(),
            )),
            Var::BalancerPort => Some(Cow::Owned(
                self.view.upstream?.port().to_string().into_bytes(),
            )),
            Var::Capture(i) => self
                .captures
                .get(*i)
                .and_then(Option::as_ref)
                .map(|c| Cow::Owned(c.clone())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<[u8]>),
    Var(Var, Option<Box<[u8]>>),
}

/// A value with variables, parsed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Box<[Part]>,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

impl Template {
    /// Parses `tpl`; `captures` lets `$1` name a `regex_uri` group.
    pub(crate) fn parse(tpl: &str, when: When, captures: bool) -> Result<Template, String> {
        let s = tpl.as_bytes();
        let mut parts = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            if c != b'$' || (i > 0 && s[i - 1] == b'\\') {
                lit.push(c);
                i += 1;
                continue;
            }
            let braced = s.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            // `$1`, `${1}`: a capture group, digits only.
            if captures && s.get(start).is_some_and(u8::is_ascii_digit) {
                let end = start + s[start..].iter().take_while(|b| b.is_ascii_digit()).count();
                let n: usize = tpl[start..end]
                    .parse()
                    .map_err(|_| format!("bad capture group in `{tpl}`"))?;
                let next = if braced && s.get(end) == Some(&b'}') {
                    end + 1
                } else {
                    end
                };
                flush(&mut parts, &mut lit);
                parts.push(Part::Var(Var::Capture(n), None));
                i = next;
                continue;
            }
            let (inner, next) = if braced {
                match s[start..].iter().position(|&b| b == b'}') {
                    Some(p) if p > 0 => (tpl[start..start + p].trim(), start + p + 1),
                    _ => {
                        lit.push(c);
                        i += 1;
                        continue;
                    }
                }
            } else {
                let n = s[start..].iter().take_while(|&&b| is_name_byte(b)).count();
                if n == 0 {
                    lit.push(c);
                    i += 1;
                    continue;
                }
                (&tpl[start..start + n], start + n)
            };
            let (name, default) = match inner.split_once("??") {
                Some((n, d)) if braced => (n.trim(), Some(d.trim().as_bytes().into())),
                _ => (inner, None),
            };
            if name.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`${name}` in `{tpl}`: capture groups are only known in proxy-rewrite header \
                     values after regex_uri"
                ));
            }
            flush(&mut parts, &mut lit);
            parts.push(Part::Var(Var::parse(name, when)?, default));
            i = next;
        }
        flush(&mut parts, &mut lit);
        Ok(Template {
            parts: parts.into_boxed_slice(),
        })
    }

    /// The value when it has no variable.
    pub(crate) fn constant(&self) -> Option<&[u8]> {
        match &*self.parts {
            [] => Some(b""),
            [Part::Lit(l)] => Some(l),
            _ => None,
        }
    }

    /// Feeds the value to `f` piece by piece: literal text with `false`, a variable's value
    /// (or its default, or nothing when unset) with `true`.
    pub(crate) fn for_each(&self, cx: &VarCx<'_>, f: &mut dyn FnMut(&[u8], bool)) {
        for p in &*self.parts {
            match p {
                Part::Lit(l) => f(l, false),
                Part::Var(v, default) => match (cx.get(v), default) {
                    (Some(v), _) => f(&v, true),
                    (None, Some(d)) => f(d, true),
                    (None, None) => {}
                },
            }
        }
    }

    /// Writes the value.
    pub(crate) fn render(&self, cx: &VarCx<'_>, out: &mut Vec<u8>) {
        self.for_each(cx, &mut |b, _| out.extend_from_slice(b));
    }
}

fn flush(parts: &mut Vec<Part>, lit: &mut Vec<u8>) {
    if !lit.is_empty() {
        parts.push(Part::Lit(std::mem::take(lit).into_boxed_slice()));
    }
}

/// A YAML string or number as text (header values may be numbers, as in APISIX); else None.
pub(crate) fn yaml_scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => {
            let mut out = Vec::new();
            let _ = write!(out, "{n}");
            String::from_utf8(out).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::RequestHeader;

    fn view<'a>(req: &'a RequestHeader, path: &'a [u8]) -> RequestView<'a> {
        RequestView {
            local: None,
            consumer_labels: &[],
            limiter: crate::plugins::shape::test_limiter(),
            req,
            path,
            remote: Some("10.0.0.7".parse().unwrap()),
            tls: false,
            upstream: None,
            route_id: "r1",
            service_id: None,
            consumer: Some("jack"),
            consumer_group: None,
        }
    }

    fn render(tpl: &str, req: &RequestHeader, caps: &[Option<Vec<u8>>]) -> String {
        let t = Template::parse(tpl, When::Request, true).unwrap();
        let v = view(req, b"/a b");
        let cx = VarCx {
            view: &v,
            resp: None,
            captures: caps,
        };
        let mut out = Vec::new();
        t.render(&cx, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resolves_like_apisix() {
        let mut req = RequestHeader::build("GET", b"/a%20b?x=1&name=j%C3%B6&x=2", None).unwrap();
        req.insert_header("Host", "Example.COM:8080").unwrap();
        req.insert_header("X-User-Id", "42").unwrap();
        req.insert_header("Cookie", "a=1; sid=abc").unwrap();
        let caps = [Some(b"/t/u".to_vec()), Some(b"u".to_vec())];
        assert_eq!(
            render(
                "$uri|${request_uri}|$host|$remote_addr|$consumer_name",
                &req,
                &caps
            ),
            "/a b|/a%20b?x=1&name=j%C3%B6&x=2|example.com|10.0.0.7|jack"
        );
        assert_eq!(
            render(
                "$arg_x-$arg_name-$http_x_user_id-$cookie_sid-$1-${1}z-$2",
                &req,
                &caps
            ),
            "1-jö-42-abc-u-uz-"
        );
        assert_eq!(
            render("${service_id ?? none}/$args$is_args", &req, &caps),
            "none/x=1&name=j%C3%B6&x=2?"
        );
        assert_eq!(render(r"\$uri $ ${", &req, &caps), r"\$uri $ ${");
        assert_eq!(render("$arg_missing.", &req, &caps), "");
    }

    #[test]
    fn unknown_and_misplaced_variables_are_refused() {
        let e = Template::parse("$server_name", When::Request, false).unwrap_err();
        assert!(
            e.contains("`$server_name` is not supported by tollgate"),
            "{e}"
        );
        let e = Template::parse("$status", When::Request, false).unwrap_err();
        assert!(e.contains("only known with the response"), "{e}");
        let e = Template::parse("/x/$1", When::Request, false).unwrap_err();
        assert!(e.contains("capture groups"), "{e}");
        assert!(Template::parse("$status $sent_http_x_a", When::Response, false).is_ok());
        assert_eq!(
            Template::parse("plain", When::Request, false)
                .unwrap()
                .constant(),
            Some(&b"plain"[..])
        );
    }
}

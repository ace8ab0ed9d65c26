//! proxy-rewrite (APISIX priority 1008): rewrites what goes upstream: the path (`uri` with
//! variables, or `regex_uri` pairs with capture groups), `host`, `method` and `headers`
//! (`add` / `set` / `remove`, or the flat form meaning `set`). Everything is compiled at load;
//! per request it runs in the upstream-request hook only.
//!
//! As APISIX 3.x: the path starts from `$uri` (the normalised, decoded path); `uri` wins over
//! `regex_uri`; the first `regex_uri` pattern that matches is substituted once; the new path is
//! re-encoded up to its first `?` (variable values inside it escape their own `?`), and the
//! client's query is appended (`&` when the new uri carries one, `?` otherwise). Header
//! operations run add, then set, then remove; `host` overrides `pass_host`.
//! `use_real_request_uri_unsafe: true` is refused: the gateway and the upstream must agree on the
//! path (CONTRACT "Requests").

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use pingora_http::RequestHeader;
use regex::bytes::Regex;
use serde::Deserialize;
use serde_yaml::Value;

use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, RequestView, State};
use super::vars::{Template, VarCx, When, yaml_scalar};

/// The APISIX conf.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    pub uri: Option<String>,
    pub regex_uri: Option<Vec<String>>,
    pub host: Option<String>,
    pub method: Option<String>,
    /// `{add: {..}, set: {..}, remove: [..]}` or the flat `{Name: value}` (set); read by hand
    /// because the two forms share one key.
    pub headers: Option<Value>,
    #[serde(default)]
    pub use_real_request_uri_unsafe: bool,
}

/// The methods APISIX accepts for `method`.
const METHODS: [&str; 14] = [
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND", "LOCK",
    "UNLOCK", "PATCH", "TRACE",
];

/// A piece of a `regex_uri` replacement, as ngx.re.sub reads it (`$0`, `$1`, `${1}`, `$$`).
#[derive(Debug)]
pub(crate) enum Repl {
    Lit(Box<[u8]>),
    Group(usize),
}

/// Parses an ngx.re.sub replacement; every group it names must exist in `re`.
pub(crate) fn parse_replacement(s: &str, re: &Regex) -> Result<Box<[Repl]>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            lit.push(b[i]);
            i += 1;
            continue;
        }
        let (digits, next) = if b.get(i + 1) == Some(&b'$') {
            lit.push(b'$');
            i += 2;
            continue;
        } else if b.get(i + 1) == Some(&b'{') {
            let n = b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || b.get(i + 2 + n) != Some(&b'}') {
                return Err(format!(
                    "bad capture reference in `{s}` (use $1, ${{1}} or $$)"
                ));
            }
            (&s[i + 2..i + 2 + n], i + 3 + n)
        } else {
            let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return Err(format!(
                    "bad capture reference in `{s}` (use $1, ${{1}} or $$)"
                ));
            }
            (&s[i + 1..i + 1 + n], i + 1 + n)
        };
        let g: usize = digits
            .parse()
            .map_err(|_| format!("bad capture reference in `{s}`"))?;
        if g >= re.captures_len() {
            return Err(format!(
                "`${g}` in `{s}`: the pattern has {} capture group(s)",
                re.captures_len() - 1
            ));
        }
        if !lit.is_empty() {
            out.push(Repl::Lit(std::mem::take(&mut lit).into_boxed_slice()));
        }
        out.push(Repl::Group(g));
        i = next;
    }
    if !lit.is_empty() {
        out.push(Repl::Lit(lit.into_boxed_slice()));
    }
    Ok(out.into_boxed_slice())
}

/// Writes a replacement for one match.
pub(crate) fn expand(repl: &[Repl], caps: &regex::bytes::Captures<'_>, out: &mut Vec<u8>) {
    for p in repl {
        match p {
            Repl::Lit(l) => out.extend_from_slice(l),
            Repl::Group(g) => {
                if let Some(m) = caps.get(*g) {
                    out.extend_from_slice(m.as_bytes());
                }
            }
        }
    }
}

/// Header operations, compiled.
#[derive(Debug, Default)]
struct HeaderOps {
    add: Vec<(HeaderName, Vec<Template>)>,
    set: Vec<(HeaderName, Vec<Template>)>,
    remove: Vec<HeaderName>,
}

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct ProxyRewrite {
    uri: Option<Template>,
    regex_uri: Box<[(Regex, Box<[Repl]>)]>,
    host: Option<HeaderValue>,
    method: Option<Method>,
    headers: HeaderOps,
}

fn err<T>(field: impl Into<String>, msg: impl Into<String>) -> Result<T, CompileError> {
    Err((field.into(), msg.into()))
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, CompileError> {
    if name.contains(':') {
        return err(field, format!("`{name}` is not a valid header name"));
    }
    HeaderName::from_bytes(name.as_bytes())
        .or_else(|_| err(field, format!("`{name}` is not a valid header name")))
}

/// A header value: a string or number, with variables and `regex_uri` captures.
fn value_template(v: &Value, field: &str) -> Result<Template, CompileError> {
    let Some(s) = yaml_scalar(v) else {
        return err(field, "a header value must be a string or a number");
    };
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return err(
            field,
            "control characters are not allowed in a header value",
        );
    }
    Template::parse(&s, When::Request, true).map_err(|m| (field.to_owned(), m))
}

/// `{Name: value | [values]}` for `add` and `set` (arrays only in the new form).
fn header_map(
    v: &Value,
    field: &str,
    arrays: bool,
) -> Result<Vec<(HeaderName, Vec<Template>)>, CompileError> {
    let Value::Mapping(m) = v else {
        return err(field, "must be an object of header names to values");
    };
    if m.is_empty() {
        return err(field, "must name at least one header");
    }
    let mut out = Vec::new();
    for (k, v) in m {
        let Value::String(k) = k else {
            return err(field, "header names must be strings");
        };
        let f = format!("{field}.{k}");
        let name = header_name(k, &f)?;
        let values = match v {
            Value::Sequence(list) if arrays => {
                if list.is_empty() {
                    return err(f, "needs at least one value");
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| value_template(v, &format!("{f}[{i}]")))
                    .collect::<Result<_, _>>()?
            }
            v => vec![value_template(v, &f)?],
        };
        out.push((name, values));
    }
    Ok(out)
}

fn compile_headers(v: &Value) -> Result<HeaderOps, CompileError> {
    let Value::Mapping(m) = v else {
        return err("headers", "must be an object");
    };
    if m.is_empty() {
        return err("headers", "must name at least one header");
    }
    let verb = |k: &str| {
        m.get(k)
            .is_some_and(|v| matches!(v, Value::Mapping(_) | Value::Sequence(_)))
    };
    if !(verb("add") || verb("set") || verb("remove")) {
        // The flat form: every entry is set.
        return Ok(HeaderOps {
            set: header_map(v, "headers", false)?,
            ..HeaderOps::default()
        });
    }
    let mut ops = HeaderOps::default();
    for (k, v) in m {
        match k.as_str() {
            Some("add") => ops.add = header_map(v, "headers.add", true)?,
            Some("set") => ops.set = header_map(v, "headers.set", true)?,
            Some("remove") => {
                let Value::Sequence(list) = v else {
                    return err("headers.remove", "must be a list of header names");
                };
                if list.is_empty() {
                    return err("headers.remove", "must name at least one header");
                }
                for (i, n) in list.iter().enumerate() {
                    let f = format!("headers.remove[{i}]");
                    let Value::String(n) = n else {
                        return err(f, "must be a header name");
                    };
                    ops.remove.push(header_name(n, &f)?);
                }
            }
            _ => {
                return err(
                    "headers",
                    format!(
                        "unknown field `{}` beside add/set/remove (APISIX 3 does not allow it)",
                        yaml_scalar(k).unwrap_or_default()
                    ),
                );
            }
        }
    }
    Ok(ops)
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        uri,
        regex_uri,
        host,
        method,
        headers,
        use_real_request_uri_unsafe,
    } = conf;
    if *use_real_request_uri_unsafe {
        return err(
            "use_real_request_uri_unsafe",
            "not supported by tollgate: the upstream always receives the normalised path \
             that routes matched",
        );
    }
    if uri.is_none()
        && regex_uri.is_none()
        && host.is_none()
        && method.is_none()
        && headers.is_none()
    {
        return err(
            "",
            "needs at least one of uri, regex_uri, host, method, headers",
        );
    }
    let uri = match uri {
        None => None,
        Some(u) if !u.starts_with('/') || u.len() > 4096 => {
            return err("uri", "must start with `/` and be at most 4096 bytes");
        }
        Some(u) => Some(Template::parse(u, When::Request, false).map_err(|m| ("uri".into(), m))?),
    };
    let mut pairs = Vec::new();
    if let Some(list) = regex_uri {
        if list.is_empty() || list.len() % 2 != 0 {
            return err(
                "regex_uri",
                "needs pairs of [regex, replacement] (an even, non-zero number of strings)",
            );
        }
        for (i, pair) in list.chunks(2).enumerate() {
            let re = Regex::new(&pair[0]).or_else(|e| {
                err(
                    format!("regex_uri[{}]", 2 * i),
                    format!("invalid regex `{}`: {e}", pair[0]),
                )
            })?;
            let repl = parse_replacement(&pair[1], &re)
                .map_err(|m| (format!("regex_uri[{}]", 2 * i + 1), m))?;
            pairs.push((re, repl));
        }
    }
    let host = match host {
        None => None,
        Some(h) => {
            let (name, port) = h.rsplit_once(':').unwrap_or((h, "1"));
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                return err(
                    "host",
                    format!("`{h}` is not a host name with an optional port"),
                );
            }
            Some(HeaderValue::from_str(h).or_else(|_| err("host", "not a valid header value"))?)
        }
    };
    let method = match method {
        None => None,
        Some(m) if METHODS.contains(&m.as_str()) => {
            Some(Method::from_bytes(m.as_bytes()).or_else(|_| err("method", "invalid"))?)
        }
        Some(m) => {
            return err(
                "method",
                format!("`{m}` is not one of {}", METHODS.join(", ")),
            );
        }
    };
    let headers = match headers {
        None => HeaderOps::default(),
        Some(h) => compile_headers(h)?,
    };
    Ok(Arc::new(ProxyRewrite {
        uri,
        regex_uri: pairs.into_boxed_slice(),
        host,
        method,
        headers,
    }))
}

/// Bytes written `%XX` in the path: what nginx escapes there (controls, space, `#`, `%`, `?`,
/// DEL, non-ASCII) and what a request target cannot carry raw.
fn path_escape(b: u8) -> bool {
    b <= b' '
        || b >= 0x7f
        || matches!(
            b,
            b'#' | b'%' | b'?' | b'<' | b'>' | b'`' | b'"' | b'\\' | b'^' | b'{' | b'|' | b'}'
        )
}

/// Bytes written `%XX` in the query: controls (as APISIX), and what a request target cannot
/// carry raw; `?` too inside a variable's value.
fn query_escape(b: u8, value: bool) -> bool {
    b <= b' '
        || b >= 0x7f
        || matches!(
            b,
            b'#' | b'<' | b'>' | b'`' | b'"' | b'\\' | b'^' | b'{' | b'|' | b'}'
        )
        || (value && b == b'?')
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Writes the target: the path escaped up to the first `?` when `split` (after it the query
/// keeps its delimiters), every byte of a variable's value escaped in the path.
struct TargetWriter {
    out: Vec<u8>,
    split: bool,
    in_query: bool,
}

impl TargetWriter {
    fn push(&mut self, bytes: &[u8], value: bool) {
        for &b in bytes {
            if !self.in_query && self.split && !value && b == b'?' {
                self.in_query = true;
                self.out.push(b);
            } else if if self.in_query {
                query_escape(b, value)
            } else {
                path_escape(b)
            } {
                push_escaped(&mut self.out, b);
            } else {
                self.out.push(b);
            }
        }
    }
}

impl ProxyRewrite {
    /// The new request target (before the client's query), and the `regex_uri` captures.
    fn new_target(&self, r: &RequestView<'_>) -> (Option<TargetWriter>, Vec<Option<Vec<u8>>>) {
        let mut captures = Vec::new();
        if let Some(t) = &self.uri {
            let cx = VarCx {
                view: r,
                resp: None,
                captures: &[],
            };
            let mut w = TargetWriter {
                out: Vec::with_capacity(r.path.len() + 16),
                split: true,
                in_query: false,
            };
            t.for_each(&cx, &mut |b, value| w.push(b, value));
            return (Some(w), captures);
        }
        for (re, repl) in &*self.regex_uri {
            let Some(caps) = re.captures(r.path) else {
                continue;
            };
            captures = caps
                .iter()
                .map(|m| m.map(|m| m.as_bytes().to_vec()))
                .collect();
            let mut s = Vec::with_capacity(r.path.len() + 16);
            let whole = caps.get(0).map_or(0..0, |m| m.range());
            s.extend_from_slice(&r.path[..whole.start]);
            expand(repl, &caps, &mut s);
            s.extend_from_slice(&r.path[whole.end..]);
            let mut w = TargetWriter {
                out: Vec::with_capacity(s.len() + 8),
                // A `?` decoded from the client's `%3F` is path, not a query separator.
                split: !r.path.contains(&b'?'),
                in_query: false,
            };
            w.push(&s, false);
            return (Some(w), captures);
        }
        (None, captures)
    }
}

fn header_value(t: &Template, cx: &VarCx<'_>) -> Option<HeaderValue> {
    if let Some(c) = t.constant() {
        return HeaderValue::from_bytes(c).ok();
    }
    let mut out = Vec::new();
    t.render(cx, &mut out);
    let v = HeaderValue::from_bytes(&out).ok();
    if v.is_none() {
        log::debug!("proxy-rewrite: a header value resolved to bytes a header cannot carry");
    }
    v
}

impl Plugin for ProxyRewrite {
    fn name(&self) -> &'static str {
        "proxy-rewrite"
    }

    fn priority(&self) -> i32 {
        1008
    }

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
        let (target, captures) = self.new_target(r);
        if let Some(w) = target {
            let mut t = w.out;
            if let Some(q) = req.uri.query().filter(|q| !q.is_empty()) {
                t.push(if w.in_query { b'&' } else { b'?' });
                t.extend_from_slice(q.as_bytes());
            }
            req.set_raw_path(&t)?;
        }
        let cx = VarCx {
            view: r,
            resp: None,
            captures: &captures,
        };
        let h = &self.headers;
        for (name, values) in &h.add {
            for v in values {
                if let Some(v) = header_value(v, &cx) {
                    req.append_header(name.clone(), v)?;
                }
            }
        }
        for (name, values) in &h.set {
            req.remove_header(name);
            for v in values {
                if let Some(v) = header_value(v, &cx) {
                    req.append_header(name.clone(), v)?;
                }
            }
        }
        for name in &h.remove {
            req.remove_header(name);
        }
        if let Some(host) = &self.host {
            req.insert_header(http::header::HOST, host.clone())?;
        }
        if let Some(m) = &self.method {
            req.set_method(m.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shape::Side;

    fn conf(yaml: &str) -> Conf {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn compile_err(yaml: &str) -> CompileError {
        let cx = CompileCx {
            owner: "route:r",
            side: Side::Route,
        };
        compile(&conf(yaml), &cx).unwrap_err()
    }

    fn rewrite(yaml: &str, target: &str, path: &[u8]) -> RequestHeader {
        let cx = CompileCx {
            owner: "route:r",
            side: Side::Route,
        };
        let p = compile(&conf(yaml), &cx).unwrap();
        let client = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        let mut up = client.clone();
        let view = RequestView {
            local: None,
            consumer_labels: &[],
            limiter: crate::plugins::shape::test_limiter(),
            req: &client,
            path,
            remote: None,
            tls: false,
            upstream: None,
            route_id: "r",
            service_id: None,
            consumer: Some("jack"),
            consumer_group: None,
        };
        p.upstream_request(&mut up, &view.into(), &None).unwrap();
        up
    }

    fn target(h: &RequestHeader) -> String {
        String::from_utf8(h.raw_path().to_vec()).unwrap()
    }

    #[test]
    fn uri_keeps_or_merges_the_query() {
        assert_eq!(
            target(&rewrite("uri: /anything", "/?a=1", b"/")),
            "/anything?a=1"
        );
        assert_eq!(
            target(&rewrite("uri: /get?arg1=apisix", "/get?a=1", b"/get")),
            "/get?arg1=apisix&a=1"
        );
        assert_eq!(
            target(&rewrite("uri: /get?x=1", "/get", b"/get")),
            "/get?x=1"
        );
        // Variables: a value's `?` and `%` stay path; literal spaces are escaped.
        assert_eq!(
            target(&rewrite("uri: '/u/$arg_id/a b'", "/x?id=a%3Fb", b"/x")),
            "/u/a%3Fb/a%20b?id=a%3Fb"
        );
        assert_eq!(
            target(&rewrite(
                "uri: '/q?who=$consumer_name&p=$uri'",
                "/x",
                b"/a?b"
            )),
            "/q?who=jack&p=/a%3Fb"
        );
    }

    #[test]
    fn regex_uri_first_matching_pair_once() {
        let y = r#"regex_uri: ["^/test/(.*)/(.*)", "/$1-$2", "^/other/.*", "/theothers"]"#;
        assert_eq!(
            target(&rewrite(y, "/test/user/agent", b"/test/user/agent")),
            "/user-agent"
        );
        assert_eq!(
            target(&rewrite(y, "/other/x?q=1", b"/other/x")),
            "/theothers?q=1"
        );
        assert_eq!(target(&rewrite(y, "/none", b"/none")), "/none");
        let y = r#"regex_uri: ["^/a/(\\w+)", "/b?id=${1}$$"]"#;
        assert_eq!(target(&rewrite(y, "/a/x7?z=1", b"/a/x7")), "/b?id=x7$&z=1");
    }

    #[test]
    fn headers_add_set_remove_with_captures() {
        let y = r#"
regex_uri: ["^/u/(\\d+)", "/user"]
headers:
  add: {X-Api-Version: [v1, 2]}
  set: {X-User: "$1", X-Who: "$consumer_name", Accept: [a, b]}
  remove: [User-Agent]
host: myapisix.demo
method: POST
"#;
        let cx = CompileCx {
            owner: "route:r",
            side: Side::Route,
        };
        let p = compile(&conf(y), &cx).unwrap();
        let mut client = RequestHeader::build("GET", b"/u/42", None).unwrap();
        client.insert_header("X-Api-Version", "v0").unwrap();
        client.insert_header("User-Agent", "curl").unwrap();
        client.insert_header("Accept", "*/*").unwrap();
        let mut up = client.clone();
        let view = RequestView {
            local: None,
            consumer_labels: &[],
            limiter: crate::plugins::shape::test_limiter(),
            req: &client,
            path: b"/u/42",
            remote: None,
            tls: false,
            upstream: None,
            route_id: "r",
            service_id: None,
            consumer: Some("jack"),
            consumer_group: None,
        };
        p.upstream_request(&mut up, &view.into(), &None).unwrap();
        let all = |n: &str| -> Vec<&str> {
            up.headers
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-api-version"), ["v0", "v1", "2"]);
        assert_eq!(all("x-user"), ["42"]);
        assert_eq!(all("x-who"), ["jack"]);
        assert_eq!(all("accept"), ["a", "b"]);
        assert!(all("user-agent").is_empty());
        assert_eq!(all("host"), ["myapisix.demo"]);
        assert_eq!(up.method, Method::POST);
        assert_eq!(target(&up), "/user");
        // The flat form means set.
        let up = rewrite("headers: {X-A: 1}", "/", b"/");
        assert_eq!(up.headers.get("x-a").unwrap(), "1");
    }

    #[test]
    fn refusals_name_the_field() {
        let e = compile_err("use_real_request_uri_unsafe: true");
        assert_eq!(e.0, "use_real_request_uri_unsafe");
        assert!(e.1.contains("not supported by tollgate"));
        assert!(serde_yaml::from_str::<Conf>("scheme: https").is_err());
        assert_eq!(compile_err("uri: x").0, "uri");
        assert_eq!(compile_err("uri: /$server_name").0, "uri");
        assert_eq!(compile_err("regex_uri: ['^/(a']").0, "regex_uri");
        assert_eq!(compile_err("regex_uri: ['^/(a)', '/$2']").0, "regex_uri[1]");
        assert_eq!(compile_err("host: 'a b'").0, "host");
        assert_eq!(compile_err("method: FETCH").0, "method");
        assert_eq!(compile_err("headers: {set: {X-A: 1}, X-B: 2}").0, "headers");
        assert_eq!(
            compile_err("headers: {set: {X-A: {a: 1}}}").0,
            "headers.set.X-A"
        );
        assert_eq!(compile_err("headers: {X-A: [1]}").0, "headers.X-A");
        assert_eq!(
            compile_err("headers: {remove: ['a:b']}").0,
            "headers.remove[0]"
        );
        assert_eq!(compile_err("{}").0, "");
    }
}

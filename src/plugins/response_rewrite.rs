//! response-rewrite (APISIX priority 899): rewrites the upstream's response: `status_code`,
//! `headers` (`add` / `set` / `remove`, or the flat form meaning `set`), and the body, replaced
//! (`body`, `body_base64`) or filtered (`filters`: regex substitutions on the whole body), when
//! the `vars` conditions (lua-resty-expr) hold on the response and the request.
//!
//! The body: a new body drops `Content-Encoding`, `ETag` and `Last-Modified` and sets its own
//! `Content-Length`. Filters hold the body back up to `max_resp_body_size` (tollgate's default
//! 1 MiB; APISIX buffers 64 MiB and truncates beyond it): a larger body is sent unchanged. A
//! compressed body (`Content-Encoding` other than `identity`) is sent unchanged too: tollgate
//! does not decode it (APISIX decodes gzip and brotli). An upstream response that has no body
//! (HEAD, 204, 304, `Content-Length: 0`) keeps none.
//!
//! `vars` operators: `==`, `~=`, `>`, `>=`, `<`, `<=`, `~~`, `~*`, `in` (string elements), the
//! `!` negation and `AND` / `OR` / `!AND` / `!OR`; `has` and `ipmatch` are refused by name.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use pingora_http::ResponseHeader;
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;
use serde_yaml::Value;

use super::proxy_rewrite::{Repl, expand, parse_replacement};
use super::shape::{CompileCx, CompileError, Instance, LazyView, Plugin, State};
use super::vars::{Template, Var, VarCx, When, yaml_scalar};
use crate::headers::Head;

/// tollgate's default for `max_resp_body_size`: the most a filtered body may hold in memory.
pub(crate) const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// The APISIX conf.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conf {
    pub status_code: Option<i64>,
    pub body: Option<String>,
    #[serde(default)]
    pub body_base64: bool,
    /// `{add: [..], set: {..}, remove: [..]}` or the flat `{Name: value}` (set).
    pub headers: Option<Value>,
    /// lua-resty-expr rules.
    pub vars: Option<Value>,
    pub filters: Option<Vec<FilterConf>>,
    pub max_resp_body_size: Option<u64>,
}

/// One body filter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConf {
    pub regex: String,
    #[serde(default = "once")]
    pub scope: String,
    pub replace: String,
    #[serde(default = "jo")]
    pub options: String,
}

fn once() -> String {
    "once".into()
}
fn jo() -> String {
    "jo".into()
}

fn err<T>(field: impl Into<String>, msg: impl Into<String>) -> Result<T, CompileError> {
    Err((field.into(), msg.into()))
}

// ---- vars: lua-resty-expr ----

/// The right-hand side of `==` / `~=`.
#[derive(Debug)]
enum Rhs {
    Str(Box<[u8]>),
    Num(f64),
    Nil,
}

#[derive(Debug)]
enum Op {
    Eq(Rhs),
    Ne(Rhs),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    /// `~~` and `~*` (compiled case-insensitive).
    Match(Regex),
    In(Box<[Box<[u8]>]>),
}

/// A compiled lua-resty-expr rule.
#[derive(Debug)]
enum Expr {
    All(Box<[Expr]>),
    Any(Box<[Expr]>),
    Not(Box<Expr>),
    Cmp { var: Var, op: Op, negate: bool },
}

const OPERATORS: &str = "==, ~=, >, >=, <, <=, ~~, ~*, in, and ! before the operator";

/// Lua's `tonumber` on a variable's text (decimal and hex, surrounding spaces allowed).
fn to_number(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok()? as f64,
        None if body
            .bytes()
            .all(|c| c.is_ascii_alphabetic() && c != b'e' && c != b'E') =>
        {
            return None; // "inf", "nan"
        }
        None => body.parse::<f64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

fn yaml_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => to_number(s.as_bytes()),
        _ => None,
    }
}

fn compile_cmp(rule: &[Value], path: &str) -> Result<Expr, CompileError> {
    let (l, op, r, negate) = match rule {
        [l, bang, op, r] => {
            if bang.as_str() != Some("!") {
                return err(
                    path,
                    "bad 'not' expression: a rule of four needs `!` second",
                );
            }
            (l, Some(op), Some(r), true)
        }
        [l, op, r] => (l, Some(op), Some(r), false),
        [l, op] => (l, Some(op), None, false),
        _ => return err(path, "invalid expression: [var, operator, value]"),
    };
    let Some(name) = l.as_str() else {
        return err(path, "the first element must be a variable name");
    };
    let var = Var::parse(name, When::Response).map_err(|m| (path.to_owned(), m))?;
    let op_name = op.and_then(Value::as_str).map(str::to_ascii_lowercase);
    let known = |o: &str| {
        matches!(
            o,
            "==" | "~=" | ">" | ">=" | "<" | "<=" | "~~" | "~*" | "in" | "has" | "ipmatch"
        )
    };
    // `[var, value]`: equality, for compatibility (as lua-resty-expr).
    let (op_name, r) = match (op_name, r) {
        (Some(o), Some(r)) => (o, r),
        (Some(o), None) if !known(&o) => ("==".to_owned(), op.unwrap_or(&Value::Null)),
        (None, None) => ("==".to_owned(), op.unwrap_or(&Value::Null)),
        _ => return err(path, "invalid expression: [var, operator, value]"),
    };
    let rhs = |r: &Value| -> Result<Rhs, CompileError> {
        Ok(match r {
            Value::Null => Rhs::Nil,
            Value::Number(n) => Rhs::Num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Rhs::Str(s.as_bytes().into()),
            _ => return err(path, "the value must be a string, a number or null"),
        })
    };
    let num = |r: &Value| {
        yaml_number(r).ok_or_else(|| (path.to_owned(), format!("`{op_name}` needs a number")))
    };
    let op = match op_name.as_str() {
        "==" => Op::Eq(rhs(r)?),
        "~=" => Op::Ne(rhs(r)?),
        ">" => Op::Gt(num(r)?),
        ">=" => Op::Ge(num(r)?),
        "<" => Op::Lt(num(r)?),
        "<=" => Op::Le(num(r)?),
        "~~" | "~*" => {
            let Some(re) = r.as_str() else {
                return err(path, format!("`{op_name}` needs a regex string"));
            };
            Op::Match(
                RegexBuilder::new(re)
                    .case_insensitive(op_name == "~*")
                    .build()
                    .or_else(|e| err(path, format!("invalid regex `{re}`: {e}")))?,
            )
        }
        "in" => {
            let Value::Sequence(list) = r else {
                return err(path, "`in` needs a list");
            };
            let mut out = Vec::new();
            for v in list {
                let Value::String(s) = v else {
                    return err(
                        path,
                        "`in` compares text: write each element as a string (in APISIX a \
                         number never equals a variable's text)",
                    );
                };
                out.push(s.as_bytes().into());
            }
            Op::In(out.into_boxed_slice())
        }
        o => {
            return err(
                path,
                format!("operator `{o}` is not supported by tollgate (it knows {OPERATORS})"),
            );
        }
    };
    Ok(Expr::Cmp { var, op, negate })
}

fn compile_rules(rules: &Value, path: &str) -> Result<Expr, CompileError> {
    let Value::Sequence(list) = rules else {
        return err(path, "a rule must be a list");
    };
    match list.first() {
        None => err(path, "rule too short"),
        Some(Value::Sequence(_)) => Ok(Expr::All(
            list.iter()
                .enumerate()
                .map(|(i, r)| compile_rules(r, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        Some(Value::String(s))
            if matches!(
                s.to_ascii_uppercase().as_str(),
                "AND" | "OR" | "!AND" | "!OR"
            ) =>
        {
            if list.len() <= 2 {
                return err(
                    path,
                    "rule too short: a logic operator needs two rules or more",
                );
            }
            let subs: Box<[Expr]> = list[1..]
                .iter()
                .enumerate()
                .map(|(i, r)| compile_rules(r, &format!("{path}[{}]", i + 1)))
                .collect::<Result<_, _>>()?;
            Ok(match s.to_ascii_uppercase().as_str() {
                "AND" => Expr::All(subs),
                "OR" => Expr::Any(subs),
                "!AND" => Expr::Not(Box::new(Expr::All(subs))),
                _ => Expr::Not(Box::new(Expr::Any(subs))),
            })
        }
        Some(_) => compile_cmp(list, path),
    }
}

/// `vars`: an empty list always holds; otherwise a list of rules (all must hold) or one rule
/// that starts with a logic operator.
fn compile_vars(v: &Value) -> Result<Option<Expr>, CompileError> {
    let Value::Sequence(list) = v else {
        return err("vars", "must be a list of rules");
    };
    match list.first() {
        None => Ok(None),
        Some(Value::Sequence(_)) => compile_rules(v, "vars").map(Some),
        Some(Value::String(s))
            if matches!(
                s.to_ascii_uppercase().as_str(),
                "AND" | "OR" | "!AND" | "!OR"
            ) =>
        {
            compile_rules(v, "vars").map(Some)
        }
        Some(_) => err(
            "vars",
            "rule should be wrapped inside brackets: [[var, op, value]]",
        ),
    }
}

impl Expr {
    fn eval(&self, cx: &VarCx<'_>) -> bool {
        match self {
            Expr::All(l) => l.iter().all(|e| e.eval(cx)),
            Expr::Any(l) => l.iter().any(|e| e.eval(cx)),
            Expr::Not(e) => !e.eval(cx),
            Expr::Cmp { var, op, negate } => {
                let v = cx.get(var);
                let v = v.as_deref();
                let n = || v.and_then(to_number);
                let hit = match op {
                    Op::Eq(Rhs::Str(s)) => v == Some(&**s),
                    Op::Eq(Rhs::Num(x)) => n() == Some(*x),
                    Op::Eq(Rhs::Nil) => v.is_none(),
                    Op::Ne(Rhs::Str(s)) => v != Some(&**s),
                    Op::Ne(Rhs::Num(x)) => n() != Some(*x),
                    Op::Ne(Rhs::Nil) => v.is_some(),
                    Op::Gt(x) => n().is_some_and(|n| n > *x),
                    Op::Ge(x) => n().is_some_and(|n| n >= *x),
                    Op::Lt(x) => n().is_some_and(|n| n < *x),
                    Op::Le(x) => n().is_some_and(|n| n <= *x),
                    Op::Match(re) => v.is_some_and(|v| re.is_match(v)),
                    Op::In(list) => v.is_some_and(|v| list.iter().any(|e| **e == *v)),
                };
                hit != *negate
            }
        }
    }
}

// ---- headers ----

#[derive(Debug, Default)]
struct HeaderOps {
    add: Vec<(HeaderName, Template)>,
    set: Vec<(HeaderName, Template)>,
    remove: Vec<HeaderName>,
}

fn header_name(name: &str, field: &str) -> Result<HeaderName, CompileError> {
    HeaderName::from_bytes(name.as_bytes())
        .or_else(|_| err(field, format!("`{name}` is not a valid header name")))
}

fn value_template(s: &str, field: &str) -> Result<Template, CompileError> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return err(
            field,
            "control characters are not allowed in a header value",
        );
    }
    Template::parse(s, When::Response, false).map_err(|m| (field.to_owned(), m))
}

fn set_map(v: &Value, field: &str) -> Result<Vec<(HeaderName, Template)>, CompileError> {
    let Value::Mapping(m) = v else {
        return err(field, "must be an object of header names to values");
    };
    if m.is_empty() {
        return err(field, "must name at least one header");
    }
    let mut out = Vec::new();
    for (k, v) in m {
        let Some(k) = k.as_str() else {
            return err(field, "header names must be strings");
        };
        let f = format!("{field}.{k}");
        let Some(s) = yaml_scalar(v) else {
            return err(f, "a header value must be a string or a number");
        };
        out.push((header_name(k, &f)?, value_template(&s, &f)?));
    }
    Ok(out)
}

fn compile_headers(v: &Value) -> Result<HeaderOps, CompileError> {
    let Value::Mapping(m) = v else {
        return err("headers", "must be an object");
    };
    let verb = |k: &str| {
        m.get(k)
            .is_some_and(|v| matches!(v, Value::Mapping(_) | Value::Sequence(_)))
    };
    if !(verb("add") || verb("set") || verb("remove")) {
        return Ok(HeaderOps {
            set: set_map(v, "headers")?,
            ..HeaderOps::default()
        });
    }
    let mut ops = HeaderOps::default();
    let list = |v: &Value, field: &str| -> Result<Vec<String>, CompileError> {
        let Value::Sequence(l) = v else {
            return err(field, "must be a list");
        };
        if l.is_empty() {
            return err(field, "must not be empty");
        }
        l.iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| (format!("{field}[{i}]"), "must be a string".to_owned()))
            })
            .collect()
    };
    for (k, v) in m {
        match k.as_str() {
            Some("add") => {
                for (i, s) in list(v, "headers.add")?.iter().enumerate() {
                    let f = format!("headers.add[{i}]");
                    // APISIX: `Name: value`, one colon, not ending in `/`.
                    let parsed = s.split_once(':').filter(|(n, val)| {
                        let n = n.trim_end();
                        !n.is_empty()
                            && !n.contains(char::is_whitespace)
                            && !val.contains(':')
                            && !s.ends_with('/')
                            && !val.trim().is_empty()
                    });
                    let Some((n, val)) = parsed else {
                        return err(
                            f,
                            format!(
                                "`{s}` is not `Name: value` (one colon, not ending in `/`, as \
                                 APISIX requires)"
                            ),
                        );
                    };
                    ops.add.push((
                        header_name(n.trim_end(), &f)?,
                        value_template(val.trim(), &f)?,
                    ));
                }
            }
            Some("set") => ops.set = set_map(v, "headers.set")?,
            Some("remove") => {
                for (i, n) in list(v, "headers.remove")?.iter().enumerate() {
                    ops.remove
                        .push(header_name(n, &format!("headers.remove[{i}]"))?);
                }
            }
            _ => {
                return err(
                    "headers",
                    format!(
                        "unknown field `{}` beside add/set/remove: not supported by tollgate \
                         (APISIX ignores it)",
                        yaml_scalar(k).unwrap_or_default()
                    ),
                );
            }
        }
    }
    Ok(ops)
}

// ---- filters ----

#[derive(Debug)]
struct Filter {
    re: Regex,
    global: bool,
    replace: Box<[Repl]>,
}

fn compile_filter(f: &FilterConf, i: usize) -> Result<Filter, CompileError> {
    let FilterConf {
        regex,
        scope,
        replace,
        options,
    } = f;
    let field = |s: &str| format!("filters[{i}].{s}");
    if regex.is_empty() {
        return err(field("regex"), "must not be empty");
    }
    let global = match scope.as_str() {
        "once" => false,
        "global" => true,
        s => return err(field("scope"), format!("`{s}` is not `once` or `global`")),
    };
    let mut b = RegexBuilder::new(regex);
    for c in options.chars() {
        match c {
            // JIT and compile-once change nothing here; `u` is how this engine reads anyway.
            'j' | 'o' | 'u' => {}
            'i' => {
                b.case_insensitive(true);
            }
            'm' => {
                b.multi_line(true);
            }
            's' => {
                b.dot_matches_new_line(true);
            }
            'x' => {
                b.ignore_whitespace(true);
            }
            c => {
                return err(
                    field("options"),
                    format!(
                        "option `{c}` is not supported by tollgate (it knows j, o, u, i, m, s, x)"
                    ),
                );
            }
        }
    }
    let re = b
        .build()
        .or_else(|e| err(field("regex"), format!("invalid regex `{regex}`: {e}")))?;
    let replace = parse_replacement(replace, &re).map_err(|m| (field("replace"), m))?;
    Ok(Filter {
        re,
        global,
        replace,
    })
}

// ---- the plugin ----

/// The compiled plugin.
#[derive(Debug)]
pub(crate) struct ResponseRewrite {
    vars: Option<Expr>,
    status: Option<StatusCode>,
    body: Option<Bytes>,
    filters: Box<[Filter]>,
    max_body: usize,
    headers: HeaderOps,
}

pub(crate) fn compile(conf: &Conf, _cx: &CompileCx<'_>) -> Result<Instance, CompileError> {
    let Conf {
        status_code,
        body,
        body_base64,
        headers,
        vars,
        filters,
        max_resp_body_size,
    } = conf;
    let status = match status_code {
        None => None,
        Some(c) => match u16::try_from(*c).ok().filter(|c| (200..=598).contains(c)) {
            Some(c) => {
                Some(StatusCode::from_u16(c).or_else(|_| err("status_code", "not a status code"))?)
            }
            None => return err("status_code", format!("{c} is not in 200..=598")),
        },
    };
    if body.is_some() && filters.is_some() {
        return err("", "`body` and `filters` cannot both be set");
    }
    let body = match (body, body_base64) {
        (None, false) => None,
        (None, true) => return err("body_base64", "needs a `body` to decode"),
        (Some(b), false) => Some(Bytes::from(b.clone())),
        (Some(b), true) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .filter(|_| !b.is_empty())
                .ok_or_else(|| ("body".to_owned(), "invalid base64 content".to_owned()))?,
        )),
    };
    let filters: Box<[Filter]> = match filters {
        None => Box::new([]),
        Some(l) if l.is_empty() => return err("filters", "needs at least one filter"),
        Some(l) => l
            .iter()
            .enumerate()
            .map(|(i, f)| compile_filter(f, i))
            .collect::<Result<_, _>>()?,
    };
    let max_body = match max_resp_body_size {
        Some(0) => return err("max_resp_body_size", "must be at least 1"),
        Some(n) => *n,
        None => DEFAULT_MAX_BODY,
    };
    let vars = match vars {
        None => None,
        Some(v) => compile_vars(v)?,
    };
    let headers = match headers {
        None => HeaderOps::default(),
        Some(h) => compile_headers(h)?,
    };
    Ok(Arc::new(ResponseRewrite {
        vars,
        status,
        body,
        filters,
        max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        headers,
    }))
}

/// What the body hook does for this response.
enum BodyState {
    /// Drop the upstream's body, send ours at the end.
    Replace,
    /// Hold the body back (up to the limit), filter it at the end.
    Filter(Vec<u8>),
    /// Over the limit: what was held went out, the rest passes unchanged.
    Passing,
}

impl ResponseRewrite {
    fn filter(&self, body: Vec<u8>) -> Vec<u8> {
        let mut body = body;
        for f in &*self.filters {
            let mut out = Vec::with_capacity(body.len());
            let mut last = 0;
            for caps in f.re.captures_iter(&body) {
                let Some(m) = caps.get(0) else { continue };
                out.extend_from_slice(&body[last..m.start()]);
                expand(&f.replace, &caps, &mut out);
                last = m.end();
                if !f.global {
                    break;
                }
            }
            out.extend_from_slice(&body[last..]);
            body = out;
        }
        body
    }
}

fn header_value(t: &Template, cx: &VarCx<'_>) -> Option<HeaderValue> {
    match t.constant() {
        Some(c) => HeaderValue::from_bytes(c).ok(),
        None => {
            let mut out = Vec::new();
            t.render(cx, &mut out);
            HeaderValue::from_bytes(&out).ok()
        }
    }
}

impl Plugin for ResponseRewrite {
    fn name(&self) -> &'static str {
        "response-rewrite"
    }

    fn priority(&self) -> i32 {
        899
    }

    fn edits_response(&self) -> bool {
        true
    }

    fn response(
        &self,
        resp: &mut Head<'_, ResponseHeader>,
        r: &LazyView<'_>,
        state: &mut State,
    ) -> pingora_core::Result<()> {
        let r = r.get();
        if let Some(e) = &self.vars {
            let cx = VarCx {
                view: r,
                resp: Some(resp),
                captures: &[],
            };
            if !e.eval(&cx) {
                return Ok(());
            }
        }
        let head = r.req.method == http::Method::HEAD;
        // The upstream sends no body after this head: none can be added or filtered.
        let no_body = head
            || matches!(resp.status.as_u16(), 204 | 304)
            || resp
                .headers
                .get(http::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() == b"0");
        if let Some(s) = self.status {
            resp.set_status(s)?;
        }
        let encoded = resp
            .headers
            .get(http::header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if let Some(b) = &self.body {
            if no_body && !head {
                log::debug!("response-rewrite: the upstream response has no body to replace");
            } else {
                for h in [
                    http::header::CONTENT_ENCODING,
                    http::header::TRANSFER_ENCODING,
                    http::header::ETAG,
                    http::header::LAST_MODIFIED,
                ] {
                    resp.remove_header(&h);
                }
                resp.insert_header(http::header::CONTENT_LENGTH, b.len())?;
                *state = Some(Box::new(BodyState::Replace));
            }
        } else if !self.filters.is_empty() {
            if encoded {
                log::debug!("response-rewrite: a compressed body is not filtered");
            } else if !no_body || head {
                for h in [
                    http::header::CONTENT_LENGTH,
                    http::header::ETAG,
                    http::header::LAST_MODIFIED,
                ] {
                    resp.remove_header(&h);
                }
                if !head && r.req.version != http::Version::HTTP_10 {
                    resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
                }
                *state = Some(Box::new(BodyState::Filter(Vec::new())));
            }
        }
        let h = &self.headers;
        if h.add.is_empty() && h.set.is_empty() && h.remove.is_empty() {
            return Ok(());
        }
        let (add, set): (Vec<_>, Vec<_>) = {
            let cx = VarCx {
                view: r,
                resp: Some(resp),
                captures: &[],
            };
            let resolve = |l: &[(HeaderName, Template)]| -> Vec<(HeaderName, Option<HeaderValue>)> {
                l.iter()
                    .map(|(n, t)| (n.clone(), header_value(t, &cx)))
                    .collect()
            };
            (resolve(&h.add), resolve(&h.set))
        };
        for (n, v) in add {
            if let Some(v) = v {
                resp.append_header(n, v)?;
            }
        }
        for (n, v) in set {
            match v {
                Some(v) => resp.insert_header(n, v)?,
                None => {
                    resp.remove_header(&n);
                }
            }
        }
        for n in &h.remove {
            resp.remove_header(n);
        }
        Ok(())
    }

    fn filters_body(&self) -> bool {
        self.body.is_some() || !self.filters.is_empty()
    }

    fn response_body(&self, body: &mut Option<Bytes>, end: bool, state: &mut State) {
        let Some(s) = state.as_mut().and_then(|s| s.downcast_mut::<BodyState>()) else {
            return;
        };
        match s {
            BodyState::Replace => *body = if end { self.body.clone() } else { None },
            BodyState::Passing => {}
            BodyState::Filter(buf) => {
                if let Some(b) = body.take() {
                    buf.extend_from_slice(&b);
                }
                if buf.len() > self.max_body {
                    log::debug!(
                        "response-rewrite: body over max_resp_body_size ({}), sent unfiltered",
                        self.max_body
                    );
                    *body = Some(Bytes::from(std::mem::take(buf)));
                    *s = BodyState::Passing;
                } else if end {
                    *body = Some(Bytes::from(self.filter(std::mem::take(buf))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::shape::{RequestView, Side};
    use pingora_http::RequestHeader;

    fn cx() -> CompileCx<'static> {
        CompileCx {
            owner: "route:r",
            side: Side::Route,
        }
    }

    fn plugin(yaml: &str) -> Instance {
        compile(&serde_yaml::from_str(yaml).unwrap(), &cx()).unwrap()
    }

    fn compile_err(yaml: &str) -> CompileError {
        compile(&serde_yaml::from_str(yaml).unwrap(), &cx()).unwrap_err()
    }

    /// Runs the response hook on a 200 (or `status`) response to `req`, then the body in
    /// `chunks`; returns the head and the body sent.
    fn run(
        p: &Instance,
        req: &RequestHeader,
        status: u16,
        chunks: &[&str],
    ) -> (ResponseHeader, String) {
        let view = RequestView {
            local: None,
            consumer_labels: &[],
            limiter: crate::plugins::shape::test_limiter(),
            req,
            path: b"/get",
            remote: None,
            tls: false,
            upstream: Some("127.0.0.1:8080".parse().unwrap()),
            route_id: "r",
            service_id: None,
            consumer: None,
            consumer_group: None,
        };
        let mut resp = ResponseHeader::build(status, None).unwrap();
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        resp.insert_header("Content-Length", len).unwrap();
        resp.insert_header("ETag", "\"x\"").unwrap();
        let mut state = None;
        p.response(&mut Head::new(&mut resp, false), &view.into(), &mut state)
            .unwrap();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(c.as_bytes()));
            p.response_body(&mut b, i + 1 == chunks.len(), &mut state);
            out.extend_from_slice(b.as_deref().unwrap_or_default());
        }
        (resp, String::from_utf8(out).unwrap())
    }

    fn get() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/get?x=1", None).unwrap();
        r.insert_header("X-Env", "prod").unwrap();
        r
    }

    #[test]
    fn body_and_headers_when_vars_hold() {
        let p = plugin(
            r#"
body: '{"code":"ok","message":"new json body"}'
headers:
  set: {X-Server-id: 3, X-Server-status: "on", X-Server-balancer-addr: "$balancer_ip:$balancer_port"}
vars: [["status", "==", 200]]
"#,
        );
        let (h, body) = run(&p, &get(), 200, &["up", "stream"]);
        assert_eq!(body, r#"{"code":"ok","message":"new json body"}"#);
        assert_eq!(h.headers["content-length"], body.len().to_string().as_str());
        assert!(h.headers.get("etag").is_none());
        assert_eq!(h.headers["x-server-id"], "3");
        assert_eq!(h.headers["x-server-balancer-addr"], "127.0.0.1:8080");
        // A 404 does not match: untouched.
        let (h, body) = run(&p, &get(), 404, &["nope"]);
        assert_eq!(body, "nope");
        assert!(h.headers.get("x-server-id").is_none());
    }

    #[test]
    fn filters_once_global_and_the_limit() {
        let p = plugin(
            r#"filters:
  - {regex: "X-Amzn-Trace-Id", scope: global, replace: "X-Amzn-Trace-Id-Replace"}
  - {regex: '(\d+)-(\d+)', replace: '$2-$1'}
"#,
        );
        let (h, body) = run(
            &p,
            &get(),
            200,
            &["X-Amzn-Tr", "ace-Id 1-2 X-Amzn-Trace-Id 3-4"],
        );
        assert_eq!(
            body,
            "X-Amzn-Trace-Id-Replace 2-1 X-Amzn-Trace-Id-Replace 3-4"
        );
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers["transfer-encoding"], "chunked");
        let p = plugin("{filters: [{regex: a, replace: b, scope: global}], max_resp_body_size: 4}");
        let (_, body) = run(&p, &get(), 200, &["aaa", "aaa", "a"]);
        assert_eq!(body, "aaaaaaa", "over the limit: unchanged");
        let p = plugin("{filters: [{regex: A, replace: b, options: ji}]}");
        assert_eq!(run(&p, &get(), 200, &["xa"]).1, "xb");
    }

    #[test]
    fn expressions() {
        let t = |vars: &str, status: u16| {
            let p = plugin(&format!("{{vars: {vars}, headers: {{X-Hit: y}}}}"));
            run(&p, &get(), status, &["b"])
                .0
                .headers
                .get("x-hit")
                .is_some()
        };
        assert!(t(r#"[["status", ">=", 500]]"#, 502));
        assert!(!t(r#"[["status", ">=", 500]]"#, 200));
        assert!(t(r#"[["status", "!", "==", 200]]"#, 201));
        assert!(t(
            r#"[["status", "in", ["200", "201"]], ["http_x_env", "~~", "^pr"]]"#,
            201
        ));
        assert!(!t(
            r#"[["status", "in", ["200"]], ["http_x_env", "==", "dev"]]"#,
            200
        ));
        assert!(t(
            r#"["OR", ["http_x_env", "==", "dev"], ["arg_x", "==", 1]]"#,
            200
        ));
        assert!(t(
            r#"["!AND", ["http_x_env", "==", "dev"], ["arg_x", "==", 1]]"#,
            200
        ));
        assert!(t(
            r#"[["http_x_none", "==", null], ["http_x_env", "~*", "PROD"]]"#,
            200
        ));
        assert!(t(r#"[["http_x_env", "prod"]]"#, 200));
        assert!(t("[]", 200));
    }

    #[test]
    fn refusals_name_the_field() {
        let e = compile_err(r#"{vars: [["status", "has", 200]]}"#);
        assert_eq!(e.0, "vars[0]");
        assert!(
            e.1.contains("`has` is not supported by tollgate"),
            "{}",
            e.1
        );
        assert!(
            compile_err(r#"{vars: [["remote_addr", "ipmatch", ["10.0.0.0/8"]]]}"#)
                .1
                .contains("ipmatch")
        );
        assert!(
            compile_err(r#"{vars: [["status", "in", [200]]]}"#)
                .1
                .contains("string")
        );
        assert_eq!(compile_err(r#"{vars: ["status", "==", 200]}"#).0, "vars");
        assert!(
            compile_err(r#"{vars: [["server_name", "==", "a"]]}"#)
                .1
                .contains("not supported")
        );
        assert_eq!(compile_err("{status_code: 100}").0, "status_code");
        assert_eq!(
            compile_err("{body: x, filters: [{regex: a, replace: b}]}").0,
            ""
        );
        assert_eq!(compile_err("{body: '!!', body_base64: true}").0, "body");
        assert_eq!(
            compile_err("{filters: [{regex: a, replace: b, options: D}]}").0,
            "filters[0].options"
        );
        assert_eq!(
            compile_err("{filters: [{regex: a, replace: '$1'}]}").0,
            "filters[0].replace"
        );
        assert_eq!(
            compile_err("{headers: {add: ['X-A: http://x']}}").0,
            "headers.add[0]"
        );
        assert_eq!(
            compile_err("{headers: {set: {X-A: 1}, X-B: 2}}").0,
            "headers"
        );
        assert!(serde_yaml::from_str::<Conf>("{status: 200}").is_err());
        let p = plugin("{body: SGVsbG8gV29ybGQ=, body_base64: true}");
        assert_eq!(run(&p, &get(), 200, &["x"]).1, "Hello World");
    }
}

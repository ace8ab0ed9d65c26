//! Query strings, with one set of rules everywhere (auth plugins, `vars`, limit-count keys):
//! arguments split on `&`, name and value percent-decoded with `+` as a space, as APISIX's
//! `core.request.get_uri_args` (and so `ctx.var.arg_<name>`) reads them; names compared exactly.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// A query argument as an auth plugin sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arg<'a> {
    Missing,
    /// `?name` with no `=`: APISIX reads it as `true`, which matches no credential.
    Bare,
    One(Cow<'a, str>),
    /// Repeated: a list, which matches no credential.
    Many,
}

/// Percent-decodes a query component, `+` as a space; invalid `%` sequences stay as written,
/// invalid UTF-8 becomes U+FFFD.
pub(crate) fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let plus_free: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    Cow::Owned(
        percent_decode(plus_free.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Each argument as (raw name, raw value); the value is None for a bare `name`.
fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
}

/// Argument `name`, telling a missing, bare, single and repeated argument apart.
pub(crate) fn arg<'a>(query: Option<&'a str>, name: &str) -> Arg<'a> {
    let mut found = Arg::Missing;
    for (k, v) in pairs(query.unwrap_or_default()) {
        if decode(k) != name {
            continue;
        }
        found = match (found, v) {
            (Arg::Missing, Some(v)) => Arg::One(decode(v)),
            (Arg::Missing, None) => Arg::Bare,
            _ => Arg::Many,
        };
    }
    found
}

/// The first value of argument `name` (`ctx.var.arg_<name>`); a bare `name` has the value "".
pub(crate) fn first<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    pairs(query?).find_map(|(k, v)| (decode(k) == name).then(|| decode(v.unwrap_or_default())))
}

/// The query string without argument `name` (for `hide_credentials`).
pub(crate) fn without(query: &str, name: &str) -> String {
    pairs(query)
        .filter(|(k, _)| decode(k) != name)
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("a+b%2Bc"), "a b+c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn args() {
        assert_eq!(
            arg(Some("a=1&apikey=k%2B1"), "apikey"),
            Arg::One("k+1".into())
        );
        assert_eq!(arg(Some("api%6Bey=k"), "apikey"), Arg::One("k".into()));
        assert_eq!(arg(Some("apikey"), "apikey"), Arg::Bare);
        assert_eq!(arg(Some("apikey=1&apikey=2"), "apikey"), Arg::Many);
        assert_eq!(arg(None, "apikey"), Arg::Missing);
        assert_eq!(
            arg(Some("APIKEY=1"), "apikey"),
            Arg::Missing,
            "names are exact"
        );
        assert_eq!(first(Some("p=1&p=2"), "p").as_deref(), Some("1"));
        assert_eq!(first(Some("p&q=2"), "p").as_deref(), Some(""));
        assert_eq!(first(Some("q=a+b"), "q").as_deref(), Some("a b"));
        assert_eq!(first(Some("q=1"), "p"), None);
        assert_eq!(without("a=1&apikey=x&b=2&&c", "apikey"), "a=1&b=2&c");
    }
}

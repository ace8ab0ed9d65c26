//! Every header name tollgate reads or writes.

use http::header::HeaderName;

pub(crate) const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub(crate) const X_CREDENTIAL_IDENTIFIER: HeaderName =
    HeaderName::from_static("x-credential-identifier");
pub(crate) const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const WWW_AUTHENTICATE: HeaderName = HeaderName::from_static("www-authenticate");
pub(crate) const DATE: HeaderName = HeaderName::from_static("date");
pub(crate) const DIGEST: HeaderName = HeaderName::from_static("digest");

/// Names tollgate writes, parsed once with their wire spelling (lower case): inserting one with
/// `insert_parsed_header` neither parses nor allocates the name (vendor/pingora-http/PATCH.md).
pub(crate) mod write {
    use pingora_http::ParsedHeaderName;

    pub(crate) static X_CONSUMER_USERNAME: ParsedHeaderName =
        ParsedHeaderName::from_static("x-consumer-username");
    pub(crate) static X_CREDENTIAL_IDENTIFIER: ParsedHeaderName =
        ParsedHeaderName::from_static("x-credential-identifier");
    pub(crate) static X_CONSUMER_CUSTOM_ID: ParsedHeaderName =
        ParsedHeaderName::from_static("x-consumer-custom-id");
    pub(crate) static X_FORWARDED_FOR: ParsedHeaderName =
        ParsedHeaderName::from_static("x-forwarded-for");
    pub(crate) static X_REAL_IP: ParsedHeaderName = ParsedHeaderName::from_static("x-real-ip");
    pub(crate) static X_FORWARDED_PROTO: ParsedHeaderName =
        ParsedHeaderName::from_static("x-forwarded-proto");
    pub(crate) static X_FORWARDED_PORT: ParsedHeaderName =
        ParsedHeaderName::from_static("x-forwarded-port");
    pub(crate) static X_FORWARDED_HOST: ParsedHeaderName =
        ParsedHeaderName::from_static("x-forwarded-host");
    pub(crate) static X_RATELIMIT_LIMIT: ParsedHeaderName =
        ParsedHeaderName::from_static("x-ratelimit-limit");
    pub(crate) static X_RATELIMIT_REMAINING: ParsedHeaderName =
        ParsedHeaderName::from_static("x-ratelimit-remaining");
    pub(crate) static X_RATELIMIT_RESET: ParsedHeaderName =
        ParsedHeaderName::from_static("x-ratelimit-reset");
}

/// The identity headers set by authentication and removed from every client request.
pub(crate) const IDENTITY: [HeaderName; 3] = [
    X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
    X_CONSUMER_CUSTOM_ID,
];

/// A number as a header value (`X-RateLimit-Remaining`, `-Reset`): below 4,096 a value made
/// once, cloned without formatting, allocating or counting references; above, formatted.
pub(crate) fn number_value(n: u64) -> http::HeaderValue {
    const SMALL: usize = 4096;
    static VALUES: std::sync::LazyLock<Box<[http::HeaderValue]>> = std::sync::LazyLock::new(|| {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(SMALL);
        for n in 0..SMALL {
            text.push_str(&n.to_string());
            ends.push(text.len());
        }
        // 15 KB for the process's life: the values point into it.
        let text: &'static str = Box::leak(text.into_boxed_str());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let v = http::HeaderValue::from_static(&text[start..end]);
                start = end;
                v
            })
            .collect()
    });
    match VALUES.get(n as usize) {
        Some(v) => v.clone(),
        None => http::HeaderValue::from(n),
    }
}

/// `name` in its dash spelling (`x_consumer_username` → `x-consumer-username`), the form the
/// strip list holds.
pub(crate) fn dash_spelling(name: &HeaderName) -> HeaderName {
    if !name.as_str().contains('_') {
        return name.clone();
    }
    HeaderName::from_bytes(name.as_str().replace('_', "-").as_bytes()).unwrap_or(name.clone())
}

/// Removes every header whose name, in any case and with `_` read as `-`, is in `strip` (held in
/// dash spelling), and `Forwarded` (APISIX 3.18 clears it; X-Forwarded-* carry our view): many
/// upstream stacks (CGI, WSGI, PHP) treat `X_Consumer_Username` and `X-Consumer-Username` alike,
/// so a client must not be able to send either.
///
/// Hot path: one pass over the request's names finds whether any is to go (usually none), instead
/// of a hash probe per name to remove; a name compares unequal to a stripped one at its
/// representation or length, so the pass costs a few instructions per client header.
pub(crate) fn remove_all_spellings(req: &mut pingora_http::RequestHeader, strip: &[HeaderName]) {
    let (mut exact, mut underscore) = (false, false);
    for k in req.headers.keys() {
        exact |= *k == http::header::FORWARDED || strip.contains(k);
        underscore |= k.as_str().contains('_');
    }
    if exact {
        for name in strip {
            req.remove_header(name);
        }
        req.remove_header(&http::header::FORWARDED);
    }
    // Rare: only a request with `_` in a header name pays for the second pass.
    if !underscore {
        return;
    }
    let forged: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().contains('_') && strip.contains(&dash_spelling(k)))
        .cloned()
        .collect();
    for name in &forged {
        req.remove_header(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_values_read_as_their_numbers() {
        for n in [0u64, 7, 10, 99, 100, 4095, 4096, 123_456, u64::MAX] {
            assert_eq!(number_value(n).to_str().ok(), Some(n.to_string().as_str()));
        }
    }
    use pingora_http::RequestHeader;

    fn names(req: &RequestHeader) -> Vec<String> {
        let mut v = Vec::new();
        req.map(|n, _| {
            v.push(match n {
                pingora_http::HeaderNameVariant::Case(c) => {
                    String::from_utf8_lossy(c.as_slice()).into_owned()
                }
                pingora_http::HeaderNameVariant::Titled(t) => t.to_string(),
            });
            Ok(())
        })
        .unwrap();
        v
    }

    /// The patched pingora-http (vendor/pingora-http/PATCH.md): a parsed name replaces every
    /// value under that name whatever its client spelling, goes on the wire as parsed, and the
    /// two maps Pingora keeps stay in step (a wire line per value, none lost) after a reserve.
    #[test]
    fn parsed_names_replace_any_spelling_and_keep_the_maps_in_step() {
        let mut req = RequestHeader::build("GET", b"/", Some(2)).unwrap();
        req.append_header("Host", "a").unwrap();
        req.append_header("X-Forwarded-For", "1.2.3.4").unwrap();
        req.append_header("x-FORWARDED-for", "5.6.7.8").unwrap();
        req.reserve_headers(8).unwrap();
        req.insert_parsed_header(&write::X_FORWARDED_FOR, "9.9.9.9".parse().unwrap())
            .unwrap();
        let label = pingora_http::ParsedHeaderName::from_bytes(b"X-Dept").unwrap();
        req.insert_parsed_header(&label, "ops".parse().unwrap())
            .unwrap();
        req.append_parsed_header(&label, "dev".parse().unwrap())
            .unwrap();
        assert_eq!(names(&req), ["Host", "x-forwarded-for", "X-Dept", "X-Dept"]);
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "Host: a\r\nx-forwarded-for: 9.9.9.9\r\nX-Dept: ops\r\nX-Dept: dev\r\n"
        );
        assert!(pingora_http::ParsedHeaderName::from_bytes(b"bad name").is_err());
    }

    /// A hostile upstream's head with more headers than Pingora's map cap still takes the
    /// rate-limit headers: the patched headroom stays under the cap and nothing panics.
    #[test]
    fn a_response_at_the_header_cap_still_takes_our_headers() {
        for n in [0, 5, 4096, 40_000] {
            let mut resp = pingora_http::ResponseHeader::build(200, Some(n)).unwrap();
            resp.reserve_headers(3).unwrap();
            resp.insert_parsed_header(&write::X_RATELIMIT_LIMIT, 10.into())
                .unwrap();
            resp.append_parsed_header(&write::X_RATELIMIT_REMAINING, 9.into())
                .unwrap();
            assert_eq!(resp.headers.len(), 2, "{n}");
        }
    }

    #[test]
    fn removes_every_spelling_and_forwarded_only() {
        let strip = IDENTITY.to_vec();
        let cases: [(&[&str], &[&str]); 6] = [
            (&["Host", "apikey"], &["Host", "apikey"]),
            (
                &["Host", "X-Consumer-Username", "Forwarded", "Accept"],
                &["Host", "Accept"],
            ),
            (&["forwarded", "User-Agent"], &["User-Agent"]),
            (
                &["X_Consumer_Custom_ID", "x-credential-identifier", "X_Other"],
                &["X_Other"],
            ),
            (&["x_consumer_username", "Host"], &["Host"]),
            (
                &["X-Forwarded-For", "X-Consumer-Usernames"],
                &["X-Forwarded-For", "X-Consumer-Usernames"],
            ),
        ];
        for (sent, kept) in cases {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            for n in sent {
                req.append_header(n.to_string(), "v").unwrap();
            }
            remove_all_spellings(&mut req, &strip);
            assert_eq!(names(&req), *kept, "{sent:?}");
            assert_eq!(req.headers.len(), kept.len(), "{sent:?}");
        }
    }
}

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

/// The identity headers set by authentication and removed from every client request.
pub(crate) const IDENTITY: [HeaderName; 3] = [
    X_CONSUMER_USERNAME,
    X_CREDENTIAL_IDENTIFIER,
    X_CONSUMER_CUSTOM_ID,
];

/// `name` in its dash spelling (`x_consumer_username` → `x-consumer-username`), the form the
/// strip list holds.
pub(crate) fn dash_spelling(name: &HeaderName) -> HeaderName {
    if !name.as_str().contains('_') {
        return name.clone();
    }
    HeaderName::from_bytes(name.as_str().replace('_', "-").as_bytes()).unwrap_or(name.clone())
}

/// Removes every header whose name, in any case and with `_` read as `-`, is in `strip` (held in
/// dash spelling): many upstream stacks (CGI, WSGI, PHP) treat `X_Consumer_Username` and
/// `X-Consumer-Username` alike, so a client must not be able to send either.
pub(crate) fn remove_all_spellings(req: &mut pingora_http::RequestHeader, strip: &[HeaderName]) {
    for name in strip {
        req.remove_header(name);
    }
    // Rare: only a request with `_` in a header name pays for the second pass.
    if !req.headers.keys().any(|k| k.as_str().contains('_')) {
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
